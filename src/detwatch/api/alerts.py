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

With ``DETWATCH_GRAFANA_URL`` (and ``DETWATCH_GRAFANA_TOKEN``) set, the Grafana
alerting objects are also pushed to that Grafana (:mod:`detwatch.alerting.grafana_push`); the
answer's ``grafana`` says whether that worked, the alert is stored either way.

Alerts live as one JSON file each under ``<data_dir>/alerts/`` (written atomically),
so every gunicorn worker sees the same set; replicas on several machines need the
data dir on shared storage. Storing an alert, regenerating the artifacts and pushing
to Grafana happen under one lock (``<data_dir>/alerts/.lock``, ``flock``): two
alerts created at once by two workers would otherwise each write artifacts from a set
read before the other was stored, and the last writer's files (and Grafana push)
would lack the other alert.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, cast

from flask import Blueprint, Flask, Response, jsonify

from detwatch.alerting import grafana as grafana_provisioning
from detwatch.alerting import rules
from detwatch.alerting.definitions import AlertDefinition, AlertDefinitionError, parse_alert, parse_alerts
from detwatch.alerting.generate import GenerateConfig, artifacts, write_artifacts
from detwatch.alerting.grafana_push import GrafanaPushError, push
from detwatch.alerting.stack import StackSettingsError, parse_stack
from detwatch.api._context import bearer_ok, settings
from detwatch.api._openapi_alerts import MODEL_ID_PATTERN
from detwatch.api._request import object_body
from detwatch.api.errors import APIError, data_dir_unavailable
from detwatch.contract.shapes import Alert, AlertArtifacts, AlertCreated, AlertList

__all__ = [
    "GRAFANA_TOKEN_VARIABLE",
    "GRAFANA_URL_VARIABLE",
    "bp",
    "init_app",
]

bp = Blueprint("alerts", __name__, url_prefix="/v1")
_log = logging.getLogger(__name__)

GRAFANA_URL_VARIABLE: Final = "DETWATCH_GRAFANA_URL"
GRAFANA_TOKEN_VARIABLE: Final = "DETWATCH_GRAFANA_TOKEN"
_BODY_KEYS: Final = frozenset({"name", "condition", "notify", "per", "version", "arm", "severity"})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    with app.app_context():
        _write_missing_artifacts()


def _write_missing_artifacts() -> None:
    """Write the artifacts when the data dir has none yet (best effort).

    A vmalert that reads ``<data_dir>/generated/rules`` (the compose stack's does, and
    re-reads it when it changes) then starts with detwatch.yaml's alerts, before any
    alert is created through the API.
    """
    target = settings().data_dir / "generated"
    if (target / "rules" / rules.RULES_FILE).exists():
        return
    try:
        with _alerts_locked():
            if not (target / "rules" / rules.RULES_FILE).exists():
                write_artifacts(_config(), target)
    except (OSError, APIError) as exc:  # a read-only data dir, an invalid detwatch.yaml: reported where used
        _log.warning("the generated alert rules could not be written at start: %s", exc)


@bp.before_request
def _authenticate() -> None:
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")


def _alerts_dir() -> Path:
    return settings().data_dir / "alerts"


# path -> (its stat signature, the definition read from it): a file is read and validated again
# only when it changed, so that listing the alerts costs a stat per file, not a parse.
_parsed: dict[str, tuple[tuple[int, int, int], AlertDefinition | None]] = {}
_parsed_lock = threading.Lock()


def _stored() -> list[AlertDefinition]:
    found: list[AlertDefinition] = []
    directory = _alerts_dir()
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue  # the lock, temporary files
        try:
            stat = entry.stat()
        except OSError:
            continue  # replaced or removed meanwhile
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with _parsed_lock:
            cached = _parsed.get(entry.path)
        if cached is None or cached[0] != signature:
            alert: AlertDefinition | None = None
            try:
                alert = parse_alert(json.loads(Path(entry.path).read_text()))
            except (OSError, ValueError) as exc:  # a hand-edited or half-copied file must not stop the others
                _log.warning("skipping alert file %s: %s", entry.path, exc)
            cached = (signature, alert)
            with _parsed_lock:
                _parsed[entry.path] = cached
        if cached[1] is not None:
            found.append(cached[1])
    return found


@contextlib.contextmanager
def _alerts_locked() -> Iterator[None]:
    """Hold the alerts' lock (every process of this data dir): one change of the set and its artifacts at a time."""
    directory = _alerts_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _save(alert: AlertDefinition) -> bool:
    """Write the alert's file atomically; True when it replaced one. A failed write leaves no file behind."""
    directory = _alerts_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{alert.slug}.json"
    existed = path.exists()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(alert.to_json(), handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return existed


def _config() -> GenerateConfig:
    """detwatch.yaml's alerts and stack, with the stored alerts (stored ones win by name)."""
    extra = settings().extra
    try:
        configured = parse_alerts(extra.get("alerts"))
        stack = parse_stack(extra.get("stack"))
    except (AlertDefinitionError, StackSettingsError) as exc:
        raise APIError(503, "configuration_invalid", f"detwatch.yaml: {exc}") from None
    merged = {a.slug: a for a in configured}
    merged.update({a.slug: a for a in _stored()})
    return GenerateConfig(alerts=tuple(merged.values()), stack=stack)


def _alert_json(alert: AlertDefinition) -> Alert:
    out = cast(Alert, {"id": alert.slug, **alert.to_json()})
    if alert.resolution is not None:  # a latency quantile read between bucket bounds
        out["resolution"] = alert.resolution
    return out


def _grafana(config: GenerateConfig) -> dict[str, Any] | None:
    url = os.environ.get(GRAFANA_URL_VARIABLE) or str(settings().extra.get("grafana_url") or "")
    if not url:
        return None
    try:
        counts = push(
            grafana_provisioning.api_payloads(config.alerts, config.stack),
            url=url,
            token=os.environ.get(GRAFANA_TOKEN_VARIABLE),
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


def _refuse_another_models(alert: AlertDefinition) -> None:
    """409 when the name is taken by another model's alert: replacing it would silently drop that one.

    Names are global, as in ``detwatch.yaml`` (where a repeated name is refused too): they
    name the Prometheus rules and Grafana uids and route notifications.
    """
    taken = next((a for a in _config().alerts if a.slug == alert.slug), None)
    if taken is not None and taken.model_id != alert.model_id:
        raise APIError(
            409,
            "conflict",
            f"an alert named {taken.name!r} exists for model {taken.model_id!r}; alert names are global"
            " (they name the rules and route notifications): choose another name",
            "name",
        )


@bp.post("/models/<model_id>/alerts")
def create_alert(model_id: str) -> tuple[Response, int]:
    model_id = _model_id(model_id)
    data = object_body()
    unknown = sorted(set(data) - _BODY_KEYS)
    if unknown:
        valid = ", ".join(sorted(_BODY_KEYS))
        raise APIError(400, "invalid_field", f"unknown key; valid keys: {valid}", unknown[0] or "body")
    try:
        alert = parse_alert({**data, "model_id": model_id})
    except AlertDefinitionError as exc:
        raise APIError(400, "invalid_field", exc.message, exc.field) from None
    try:
        with _alerts_locked():
            _refuse_another_models(alert)
            replaced = _save(alert)
            config = _config()
            try:
                write_artifacts(config, settings().data_dir / "generated")
            except OSError as exc:
                raise data_dir_unavailable(exc, "the alert is stored, its rules are not; retry") from None
            pushed = _grafana(config)
    except OSError as exc:  # the lock or the alert's file
        raise data_dir_unavailable(exc, "the alert is not stored; retry") from None
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
    return jsonify(body), 200 if replaced else 201


@bp.get("/models/<model_id>/alerts")
def list_alerts(model_id: str) -> Response:
    model_id = _model_id(model_id)
    return jsonify(AlertList(alerts=[_alert_json(a) for a in _config().alerts if a.model_id == model_id]))


@bp.get("/alerts/artifacts")
def get_artifacts() -> Response:
    files: Mapping[str, str] = artifacts(_config())
    return jsonify(AlertArtifacts(files=dict(files)))
