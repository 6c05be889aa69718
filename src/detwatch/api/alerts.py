"""The companion's alert routes (a blueprint registered by :func:`detwatch.api.init_app`).

- ``POST /v1/models/{model_id}/alerts``: the seed's ``create_alert`` body
  (``name``, ``condition``, ``notify``; optionally ``per``, ``version``, ``arm``,
  ``severity``). The definition is validated (400 naming the field, with what would be
  valid), stored (an alert with the same name is replaced: names route
  notifications), and every artifact is regenerated from ``detwatch.yaml``'s alerts
  plus the stored ones into ``<data_dir>/generated/``. Answers 201 (200 when it
  replaced one) with the alert, its Prometheus rules and its Grafana rule uid.
- ``GET /v1/models/{model_id}/alerts``: the model's alerts.
- ``GET /v1/alerts/artifacts``: every generated file (``rules/``, ``grafana/``,
  ``collector/``) by relative path, as ``detwatch generate`` would write them.

With a Grafana configured (``Settings.grafana_url``/``grafana_token``, from
``DETWATCH_GRAFANA_URL``/``DETWATCH_GRAFANA_TOKEN``), the Grafana alerting objects are
also pushed to it (:mod:`detwatch.alerting.grafana_push`); the answer's ``grafana`` says
whether that worked, the alert is stored either way.

Alerts live in the database (:class:`detwatch.storage.AlertStore`), so every worker
and every replica sharing it sees the same set at once. Alert files written by older
versions under ``<data_dir>/alerts/`` are imported once at start-up, then the folder
is renamed ``alerts.imported`` (kept as a backup, never read again).

The set has one revision, raised by every write. What is derived from it (the merged
configuration, the generated files) is kept per app for one revision and rebuilt
only when the database's revision differs: after a write on any replica, each
replica's next alert request rebuilds, and rewrites that replica's
``<data_dir>/generated/``. No lock spans the regeneration: a writer that wrote files from a set that has
meanwhile changed writes them again from the newer one, so the files last written
are always those of the latest set.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from flask import Blueprint, Flask, Response, current_app, jsonify

from detwatch.alerting import grafana as grafana_provisioning
from detwatch.alerting import rules
from detwatch.alerting.definitions import AlertDefinition, AlertDefinitionError, parse_alert, parse_alerts
from detwatch.alerting.generate import GenerateConfig, artifacts, write_artifacts
from detwatch.alerting.grafana_push import GrafanaPushError, push
from detwatch.alerting.stack import StackSettingsError, parse_stack
from detwatch.api._context import bearer_ok, get_storage, settings
from detwatch.api._openapi_alerts import MODEL_ID_PATTERN
from detwatch.api._request import check_shape, object_body
from detwatch.api.errors import APIError, data_dir_unavailable
from detwatch.contract.shapes import Alert, AlertArtifacts, AlertCreate, AlertCreated, AlertList
from detwatch.storage import AlertNameTaken, AlertRecord, StorageError

__all__ = ["bp", "init_app"]

bp = Blueprint("alerts", __name__, url_prefix="/v1")
_log = logging.getLogger(__name__)

_BODY_KEYS: Final = frozenset({"name", "condition", "notify", "per", "version", "arm", "severity"})
_EXTENSION: Final = "detwatch.alerts"
_IMPORTED_SUFFIX: Final = ".imported"


@dataclass
class _Derived:
    """What one app derived from one revision of the set; replaced whole, never changed in place."""

    revision: int
    config: GenerateConfig
    files: dict[str, str] | None = None
    """The generated files, built on first ask (a list request needs only the config)."""


@dataclass
class _AlertCache:
    """Per app: the parsed stored rows and the configuration of the last revision seen.

    Rows are parsed again only when their own revision changed, so that a new revision
    costs one parse (the changed alert), not one per alert.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    parsed: dict[str, tuple[int, AlertDefinition | None]] = field(default_factory=dict)
    derived: _Derived | None = None
    written: int | None = None
    """The revision this process last wrote ``<data_dir>/generated/`` from."""


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions[_EXTENSION] = _AlertCache()
    with app.app_context():
        _import_alert_files()
        _write_missing_artifacts()


def _import_alert_files() -> None:
    """Store the alert files of an older version (``<data_dir>/alerts/*.json``) once, then set them aside.

    Stored alerts of the same name win, so that a second start (or a second replica
    on a copy of the data dir) changes nothing; the folder is renamed only after the
    import committed, and an import interrupted before is simply done again.
    """
    directory = settings().data_dir / "alerts"
    if not directory.is_dir():
        return
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):
            continue  # the old lock and temporary files
        try:
            alert = parse_alert(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:  # a hand-edited or half-copied file must not stop the others
            _log.warning("not importing alert file %s: %s", path, exc)
            continue
        rows.append((alert.slug, alert.name, alert.model_id, alert.to_json()))
    try:
        imported = get_storage().import_alerts(rows)
        directory.rename(directory.with_name(directory.name + _IMPORTED_SUFFIX))
    except (OSError, StorageError) as exc:  # retried at the next start
        _log.warning("the alert files under %s could not be imported yet: %s", directory, exc)
        return
    _log.info("imported %d of %d alert files from %s into the database", imported, len(rows), directory)


def _write_missing_artifacts() -> None:
    """Write the artifacts when the data dir has none yet (best effort).

    A vmalert that reads ``<data_dir>/generated/rules`` (the compose stack's does, and
    re-reads it when it changes) then starts with detwatch.yaml's alerts, before any
    alert is created through the API. The database is not opened for it (storage opens
    on first use, after a gunicorn fork): the stored alerts join the files at the first
    alert request of the process, which finds its revision not yet written here. Only an
    import at this start has opened it already; then the files hold the imported alerts.
    """
    target = settings().data_dir / "generated"
    if (target / "rules" / rules.RULES_FILE).exists():
        return
    try:
        if current_app.extensions.get("detwatch.storage") is not None:
            _write_generated(_current())
        else:
            write_artifacts(_configured(), target)
    except (OSError, APIError, StorageError) as exc:  # read-only data dir, invalid detwatch.yaml, database down
        _log.warning("the generated alert rules could not be written at start: %s", exc)


@bp.before_request
def _authenticate() -> None:
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")


def _cache() -> _AlertCache:
    cache: _AlertCache = current_app.extensions[_EXTENSION]
    return cache


def _stored(cache: _AlertCache, records: list[AlertRecord]) -> list[AlertDefinition]:
    """The stored rows as definitions; a row is parsed again only when its revision changed."""
    found: list[AlertDefinition] = []
    for record in records:
        cached = cache.parsed.get(record.slug)
        if cached is None or cached[0] != record.revision:
            alert: AlertDefinition | None = None
            try:
                alert = parse_alert(record.definition)
            except AlertDefinitionError as exc:  # stored by a version that validated differently
                _log.warning("skipping stored alert %s: %s", record.slug, exc)
            cached = (record.revision, alert)
            cache.parsed[record.slug] = cached
        if cached[1] is not None:
            found.append(cached[1])
    return found


def _configured() -> GenerateConfig:
    """detwatch.yaml's alerts and stack; 503 when they are invalid (reported where used, never hidden)."""
    extra = settings().extra
    try:
        return GenerateConfig(alerts=parse_alerts(extra.get("alerts")), stack=parse_stack(extra.get("stack")))
    except (AlertDefinitionError, StackSettingsError) as exc:
        raise APIError(503, "configuration_invalid", f"detwatch.yaml: {exc}") from None


def _current() -> _Derived:
    """The configuration of the database's current revision, rebuilt only when that revision changed."""
    cache = _cache()
    storage = get_storage()
    revision = storage.alerts_revision()
    derived = cache.derived
    if derived is not None and derived.revision == revision:
        return derived
    with cache.lock:
        derived = cache.derived
        if derived is not None and derived.revision == revision:
            return derived
        # Read the set and its revision apart: a write in between makes the revision read
        # here older than the rows, and the next request rebuilds once more (never the reverse).
        stored = _stored(cache, storage.list_alerts())
        configured = _configured()
        merged = {a.slug: a for a in configured.alerts}
        merged.update({a.slug: a for a in stored})  # stored ones win by name
        config = GenerateConfig(alerts=tuple(merged.values()), stack=configured.stack)
        derived = _Derived(revision=revision, config=config)
        cache.derived = derived
    return derived


def _config() -> GenerateConfig:
    """detwatch.yaml's alerts and stack, with the stored alerts (stored ones win by name)."""
    return _current().config


def _files(derived: _Derived) -> dict[str, str]:
    if derived.files is None:
        derived.files = artifacts(derived.config)
    return derived.files


def _write_generated(derived: _Derived) -> None:
    """Write ``<data_dir>/generated/`` from ``derived``, again from a newer set if one was stored meanwhile.

    The last files written are then those of the latest revision whatever the order in
    which concurrent writers finish: a writer checks the revision after writing, and
    one that stored later writes later.
    """
    target = settings().data_dir / "generated"
    while True:
        write_artifacts(derived.config, target)
        latest = _current()
        if latest.revision == derived.revision:
            _cache().written = derived.revision
            return
        derived = latest


def _publish(derived: _Derived) -> dict[str, Any] | None:
    """Write the files and push to Grafana from ``derived``, again from a newer set if one was stored meanwhile.

    The Grafana push replaces the notification policies whole: as with the files, the
    last push must be of the latest set, so a writer checks the revision after pushing.
    """
    while True:
        _write_generated(derived)
        pushed = _grafana(derived.config)
        latest = _current()
        if latest.revision == derived.revision:
            return pushed
        derived = latest


def _refresh_generated(derived: _Derived) -> None:
    """After a read found a revision this process has not written (another replica wrote): update the files."""
    if _cache().written == derived.revision:
        return
    try:
        _write_generated(derived)
    except OSError as exc:  # a read must not fail for it; the next write reports it
        _log.warning("the generated alert files could not be refreshed: %s", exc)


def _alert_json(alert: AlertDefinition) -> Alert:
    out = cast(Alert, {"id": alert.slug, **alert.to_json()})
    if alert.resolution is not None:  # a latency quantile read between bucket bounds
        out["resolution"] = alert.resolution
    return out


def _grafana(config: GenerateConfig) -> dict[str, Any] | None:
    url = settings().grafana_url
    if not url:
        return None
    try:
        counts = push(
            grafana_provisioning.api_payloads(config.alerts, config.stack),
            url=url,
            token=settings().grafana_token,
            folder_uid=config.stack.grafana_folder,
        )
    except GrafanaPushError as exc:
        _log.warning("Grafana push failed: %s", exc)
        return {"url": url, "pushed": False, "error": str(exc)}
    return {"url": url, "pushed": True, **counts}


def _model_id(model_id: str) -> str:
    if re.fullmatch(MODEL_ID_PATTERN, model_id) is None:
        raise APIError(
            400, "invalid_field", "expected 1-128 letters, digits or _ . : + - (not starting with a dot)", "model_id"
        )
    return model_id


def _name_taken(taken: AlertDefinition | AlertRecord) -> APIError:
    """409 when the name is taken by another model's alert: replacing it would silently drop that one.

    Names are global, as in ``detwatch.yaml`` (where a repeated name is refused too): they
    name the Prometheus rules and Grafana uids and route notifications.
    """
    return APIError(
        409,
        "conflict",
        f"an alert named {taken.name!r} exists for model {taken.model_id!r}; alert names are global"
        " (they name the rules and route notifications): choose another name",
        "name",
    )


def _refuse_another_models(alert: AlertDefinition) -> None:
    """Refuse a name of another model's alert in detwatch.yaml (the database refuses stored ones atomically)."""
    taken = next((a for a in _config().alerts if a.slug == alert.slug), None)
    if taken is not None and taken.model_id != alert.model_id:
        raise _name_taken(taken)


@bp.post("/models/<model_id>/alerts")
def create_alert(model_id: str) -> tuple[Response, int]:
    model_id = _model_id(model_id)
    data = object_body()
    unknown = sorted(set(data) - _BODY_KEYS)
    if unknown:
        valid = ", ".join(sorted(_BODY_KEYS))
        raise APIError(400, "invalid_field", f"unknown key; valid keys: {valid}", unknown[0] or "body")
    check_shape(data, AlertCreate)  # types and bounds; the definition's parser reads the rest
    try:
        alert = parse_alert({**data, "model_id": model_id})
    except AlertDefinitionError as exc:
        raise APIError(400, "invalid_field", exc.message, exc.field) from None
    _refuse_another_models(alert)
    try:
        written = get_storage().put_alert(
            slug=alert.slug, name=alert.name, model_id=alert.model_id, definition=alert.to_json()
        )
    except AlertNameTaken as exc:
        raise _name_taken(exc.existing) from None
    try:
        pushed = _publish(_current())
    except OSError as exc:
        raise data_dir_unavailable(exc, "the alert is stored, its rules are not; retry") from None
    body = AlertCreated(
        **_alert_json(alert),
        prometheus_rules={
            "record": rules.recording_name(alert),
            "alert": rules.alert_name(alert),
            "file": f"rules/{rules.RULES_FILE}",
        },
        grafana_rule_uid=grafana_provisioning.rule_uid(alert),
        grafana=pushed,
    )
    return jsonify(body), 200 if written.replaced else 201


@bp.get("/models/<model_id>/alerts")
def list_alerts(model_id: str) -> Response:
    model_id = _model_id(model_id)
    derived = _current()
    _refresh_generated(derived)
    return jsonify(AlertList(alerts=[_alert_json(a) for a in derived.config.alerts if a.model_id == model_id]))


@bp.get("/alerts/artifacts")
def get_artifacts() -> Response:
    derived = _current()
    _refresh_generated(derived)
    files: Mapping[str, str] = _files(derived)
    return jsonify(AlertArtifacts(files=dict(files)))
