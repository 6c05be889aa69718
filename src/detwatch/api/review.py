"""The data engine's ``/v1`` routes (a blueprint registered by :func:`detwatch.api.init_app`).

- ``PUT/GET /v1/models/{id}/data-engine``: the flagging policy and its target dataset
  (GET also returns the effective ``policy`` with learned size ranges: what the
  decorator's ``DataEngine`` polls). PUT also applies the policy to the retained
  predictions of the last ``since`` (24 h by default) and answers how many it flagged
  (``backfill``): a policy configured after the first predictions and feedback arrived
  (the user guide's order) still fills the review queue.
- ``GET /v1/datasets/{id}/items?status=needs_review&limit=100&cursor=...``: the review
  queue, oldest first, with ``next_cursor``; ``GET .../items/{item_id}``.
- ``POST /v1/datasets/{id}/claims`` ``{"reviewer", "limit"}``: items for one
  reviewer (``in_review``); ``POST .../items/{item_id}/label`` ``{"annotations":
  [{"class", "box"}], "reviewer"}``; ``POST .../items/{item_id}/reject``.
- ``GET /v1/datasets/{id}/versions/{vid}`` and ``.../export?format=coco|yolo``
  (``POST /v1/datasets/{id}/versions`` is in :mod:`detwatch.api` and snapshots here).
- ``POST /v1/training-jobs``, ``GET /v1/training-jobs/{id}``, ``POST
  /v1/training-jobs/{id}/status`` (the trainer's callback: the API token or the job's
  own callback token), ``POST /v1/training-jobs/{id}/predictions`` (a gated job's
  candidate detections on the base model's labelled images, same tokens).

Authentication is the companion's bearer token, as on every ``/v1`` route.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast

from flask import Blueprint, Flask, Response, jsonify, request

from detwatch.api._context import bearer_ok, settings, trust_own_authentication, wake_training_dispatcher
from detwatch.api._context import review_store as store
from detwatch.api._lookups import dataset_or_404, item_or_404
from detwatch.api._request import check_shape, json_body
from detwatch.api.errors import APIError
from detwatch.contract.predictions import MAX_DETECTIONS, PredictionError, format_time, parse_box
from detwatch.contract.shapes import (
    CandidatePredictions,
    Claim,
    DataEngine,
    DataEngineConfig,
    FlaggedItem,
    FlaggedItemPage,
    Label,
    Reject,
    TrainingGate,
    TrainingJob,
    TrainingJobCreate,
    TrainingJobStatus,
)
from detwatch.contract.shapes.review import FINISHED_JOB_STATUSES, REPORTED_JOB_STATUSES
from detwatch.contract.textfields import NUL_MESSAGE, holds_nul, name_problem
from detwatch.quality import base_image_keys, judge_job_gate
from detwatch.review import ITEM_STATUSES, ConflictError, DataEngineStore, decode_cursor
from detwatch.review.documents import item_json, job_json, version_json
from detwatch.review.export import to_coco, to_yolo_zip
from detwatch.review.training import Trainer, trainer_from
from detwatch.storage import StorageUnavailable
from detwatch.storage.records import DatasetSnapshotRecord, TrainingJobRecord
from detwatch_instrumentation.flagging import FlaggingPolicy, PolicyError

__all__ = ["JOB_TOKEN_ENDPOINTS", "bp", "init_app", "store"]

_logger = logging.getLogger(__name__)
bp = Blueprint("data_engine", __name__, url_prefix="/v1")

MAX_PAGE: Final = 1000
DEFAULT_LEASE_S: Final = 1800.0


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    trust_own_authentication(app, *JOB_TOKEN_ENDPOINTS)


def _trainer() -> Trainer:
    return trainer_from(settings().trainer, settings().public_url)


JOB_TOKEN_ENDPOINTS: Final = frozenset(
    {"data_engine.post_job_status", "data_engine.get_job_dataset", "data_engine.export_job_dataset",
     "data_engine.post_job_predictions"}
)  # fmt: skip
"""Routes that take the job's callback token instead of the API token (each checks it)."""


@bp.before_request
def _authenticate() -> None:
    if request.endpoint in JOB_TOKEN_ENDPOINTS:
        return  # the job's own callback token is accepted there (checked by the route)
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")


def _text(data: Mapping[str, Any], key: str, *, required: bool, limit: int = 256) -> str | None:
    """A name (the rule of :mod:`detwatch.contract.textfields`), at most ``limit`` characters."""
    value = data.get(key)
    if value is None:
        if required:
            raise APIError(400, "invalid_field", "is required", key)
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise APIError(400, "invalid_field", f"must be a non-blank string of at most {limit} characters", key)
    problem = name_problem(value)
    if problem is not None:
        raise APIError(400, "invalid_field", problem, key)
    return value


def _object() -> Mapping[str, Any]:
    data = json_body()
    if not isinstance(data, Mapping):
        raise APIError(400, "invalid_json", "expected a JSON object", "body")
    return data


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, "invalid_field", f"must be an integer from {low} to {high}", name) from None
    if not low <= value <= high:
        raise APIError(400, "invalid_field", f"must be an integer from {low} to {high}", name)
    return value


# ------------------------------------------------------------------ policy


@bp.put("/models/<model_id>/data-engine")
def configure_data_engine(model_id: str) -> Response:
    data = _object()
    check_shape(data, DataEngineConfig)  # types and bounds; the policy's parser reads the strategies
    dataset_id = _text(data, "target_dataset_id", required=True)
    assert dataset_id is not None
    if "config" not in data:
        raise APIError(400, "invalid_field", "is required", "config")
    try:
        policy = FlaggingPolicy.from_config(data["config"], "config")
    except PolicyError as exc:
        raise APIError(400, "invalid_field", exc.message, exc.field) from None
    now = time.time_ns()
    since = _since(data.get("since", DEFAULT_SINCE), now)
    engine = store()
    try:
        record = engine.set_policy(model_id, policy, dataset_id)
    except LookupError:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "target_dataset_id") from None
    done = None if since is None else engine.backfill(model_id, since_unix_nano=since, until_unix_nano=now)
    return jsonify(
        DataEngine(
            id=model_id,
            model_id=model_id,
            config=record.config,
            target_dataset_id=record.target_dataset_id,
            updated_unix_nano=record.updated_unix_nano,
            backfill={
                "since": None if done is None else format_time(done.since_unix_nano),
                "until": format_time(now),
                "examined": 0 if done is None else done.examined,
                "flagged": 0 if done is None else done.flagged,
                "complete": True if done is None else done.complete,
            },
        )
    )


DEFAULT_SINCE: Final = "24h"
"""How far back a new or changed policy is applied to the retained predictions by default."""
_AGO: Final = re.compile(r"([0-9]{1,6}) *(m|min|h|d|w)")
_AGO_S: Final = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _since(value: Any, now_unix_nano: int) -> int | None:
    """The start of the window a policy is applied to (``None``: none, only new predictions).

    ``"24h"``, ``"30m"``, ``"7d"``, ``"2w"`` back from now; an RFC 3339 time; ``"none"``.
    The window is of the predictions' own time, like retention: older ones are gone anyway.
    """
    if value == "none":
        return None
    message = 'must be a duration back from now ("24h", "30m", "7d"), an RFC 3339 time, or "none"'
    if not isinstance(value, str):
        raise APIError(400, "invalid_field", message, "since")
    match = _AGO.fullmatch(value.strip())
    if match:
        return max(0, now_unix_nano - int(match.group(1)) * _AGO_S[match.group(2)] * 1_000_000_000)
    try:
        # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not.
        moment = datetime.fromisoformat(value.upper() if value.isascii() else value)
    except ValueError:
        raise APIError(400, "invalid_field", message, "since") from None
    if moment.tzinfo is None:
        raise APIError(400, "invalid_field", "needs a time zone (e.g. a trailing Z)", "since")
    delta = moment - _EPOCH  # exact, unlike the float of moment.timestamp()
    since = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return min(max(since, 0), now_unix_nano)  # before 1970 nothing is stored; after now, nothing yet


@bp.get("/models/<model_id>/data-engine")
def get_data_engine(model_id: str) -> Response:
    found = store().get_policy(model_id)
    if found is None:
        raise APIError(404, "data_engine_not_found", f"no data engine configured for {model_id!r}", "model_id")
    record, policy = found
    return jsonify(
        DataEngine(
            id=model_id,
            model_id=model_id,
            config=record.config,
            policy=policy.to_config(),
            target_dataset_id=record.target_dataset_id,
            updated_unix_nano=record.updated_unix_nano,
        )
    )


# ------------------------------------------------------------------ review queue


@bp.get("/datasets/<dataset_id>/items")
def list_items(dataset_id: str) -> Response:
    status: str | None = request.args.get("status", "needs_review")
    if status == "all":
        status = None
    elif status not in ITEM_STATUSES:
        raise APIError(400, "invalid_field", f"must be one of: {', '.join(ITEM_STATUSES)}, all", "status")
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    cursor = None
    if request.args.get("cursor"):
        try:
            cursor = decode_cursor(request.args["cursor"])
        except ValueError as exc:
            raise APIError(400, "invalid_field", str(exc), "cursor") from None
    engine = dataset_or_404(dataset_id)
    items, next_cursor = engine.list_items(dataset_id, status=status, limit=limit, cursor=cursor)
    page: FlaggedItemPage = {
        "items": cast(list[FlaggedItem], [item_json(i) for i in items]),
        "next_cursor": next_cursor,
    }
    return jsonify(page)


@bp.get("/datasets/<dataset_id>/items/<item_id>")
def get_item(dataset_id: str, item_id: str) -> Response:
    return jsonify(item_json(item_or_404(dataset_id, item_id)))


@bp.post("/datasets/<dataset_id>/claims")
def claim_items(dataset_id: str) -> Response:
    data = _object()
    reviewer = _text(data, "reviewer", required=True)
    assert reviewer is not None
    check_shape(data, Claim)  # limit from 1 to MAX_CLAIM (the shape says), lease_s from 1 s to a week
    limit = int(data.get("limit", 10))  # JSON Schema's integer: 5.0 is one
    lease = float(data.get("lease_s", DEFAULT_LEASE_S))
    engine = dataset_or_404(dataset_id)
    items = engine.claim_items(dataset_id, reviewer=reviewer, limit=limit, lease_s=float(lease))
    page: FlaggedItemPage = {"items": cast(list[FlaggedItem], [item_json(i) for i in items])}
    return jsonify(page)


def _annotations(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_DETECTIONS:
        raise APIError(400, "invalid_field", f"must be a list of at most {MAX_DETECTIONS} boxes", "annotations")
    out = []
    for i, a in enumerate(value):
        where = f"annotations[{i}]"
        if not isinstance(a, Mapping):
            raise APIError(400, "invalid_field", 'must be {"class": ..., "box": [x1, y1, x2, y2]}', where)
        name = a.get("class", a.get("label"))
        if not isinstance(name, str) or not name or len(name) > 256:
            raise APIError(400, "invalid_field", "must be a non-empty string", f"{where}.class")
        problem = name_problem(name)
        if problem is not None:
            raise APIError(400, "invalid_field", problem, f"{where}.class")
        try:
            box = parse_box(a.get("box", a.get("bbox")), f"{where}.box")
        except PredictionError as exc:
            raise APIError(400, "invalid_field", exc.message, exc.field) from None
        out.append({"class": name, "box": list(box)})
    return out


def _review(dataset_id: str, item_id: str, outcome: Literal["labeled", "rejected"]) -> Response:
    engine = store()
    if engine.get_item(dataset_id, item_id) is None:  # the item first: what to fix comes after
        raise APIError(404, "item_not_found", f"no item {item_id!r} in dataset {dataset_id!r}", "item_id")
    data = _object()
    check_shape(data, Label if outcome == "labeled" else Reject)
    reviewer = _text(data, "reviewer", required=False)
    annotations = _annotations(data.get("annotations")) if outcome == "labeled" else None
    try:
        item = engine.review_item(dataset_id, item_id, outcome=outcome, annotations=annotations, reviewer=reviewer)
    except ConflictError as exc:
        raise APIError(409, "conflict", str(exc), exc.field) from None
    if item is None:
        raise APIError(404, "item_not_found", f"no item {item_id!r} in dataset {dataset_id!r}", "item_id")
    return jsonify(item_json(item))


@bp.post("/datasets/<dataset_id>/items/<item_id>/label")
def label_item(dataset_id: str, item_id: str) -> Response:
    return _review(dataset_id, item_id, "labeled")


@bp.post("/datasets/<dataset_id>/items/<item_id>/reject")
def reject_item(dataset_id: str, item_id: str) -> Response:
    return _review(dataset_id, item_id, "rejected")


# ------------------------------------------------------------------ dataset versions


@bp.get("/datasets/<dataset_id>/versions/<version_id>")
def get_version(dataset_id: str, version_id: str) -> Response:
    version = store().get_version(dataset_id, version_id)
    if version is None:
        raise APIError(404, "version_not_found", f"no version {version_id!r} of dataset {dataset_id!r}", "version_id")
    return jsonify(version_json(version))


@bp.get("/datasets/<dataset_id>/versions/<version_id>/export")
def export_version(dataset_id: str, version_id: str) -> Response:
    form = _export_format()
    engine = store()
    version = engine.get_version(dataset_id, version_id)
    if version is None:
        raise APIError(404, "version_not_found", f"no version {version_id!r} of dataset {dataset_id!r}", "version_id")
    return _export(engine, version, form)


def _export_format() -> str:
    form = request.args.get("format", "coco")
    if form not in ("coco", "yolo"):
        raise APIError(400, "invalid_field", "must be coco or yolo", "format")
    return form


def _export(engine: DataEngineStore, version: DatasetSnapshotRecord, form: str) -> Response:
    version_id = version.id
    items = engine.version_items(version_id)
    if form == "coco":
        document = to_coco(items, description=f"{version.name} ({version.content_hash})")
        return jsonify(document)
    response = Response(to_yolo_zip(items), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{version_id}-yolo.zip"'
    return response


# ------------------------------------------------------------------ training jobs


_JOB_KEYS: Final = frozenset({"name", "dataset_id", "version_id", "base_model_id", "options", "gate"})
_GATE_KEYS: Final = frozenset(TrainingGate.__annotations__)


def _gate(data: Mapping[str, Any], base_model_id: str | None) -> dict[str, Any] | None:
    """The job's gate (already of the ``TrainingGate`` shape), or ``None``; 400 naming ``gate...``."""
    gate = data.get("gate")
    if gate is None:
        return None
    unknown = sorted(set(gate) - _GATE_KEYS)
    if unknown:
        raise APIError(400, "invalid_field", "unknown key of the gate (metric, max_drop)", f"gate.{unknown[0]}")
    if base_model_id is None:
        raise APIError(400, "invalid_field", "a gate compares with the base model: give base_model_id", "gate")
    return {"metric": gate["metric"], "max_drop": float(gate["max_drop"])}


@bp.post("/training-jobs")
def create_training_job() -> tuple[Response, int]:
    data = _object()
    unknown = sorted(set(data) - _JOB_KEYS)
    if unknown:  # e.g. epochs sent beside the options: it would reach no trainer
        raise APIError(
            400,
            "invalid_field",
            f"unknown key; the trainer's own settings go in options ({', '.join(unknown)})",
            unknown[0] or "body",
        )
    name = _text(data, "name", required=True)
    dataset_id = _text(data, "dataset_id", required=True)
    version_id = _text(data, "version_id", required=True)
    base_model_id = _text(data, "base_model_id", required=False)
    assert name is not None and dataset_id is not None and version_id is not None
    check_shape(data, TrainingJobCreate)  # options: an object or null; gate: metric and max_drop in [0, 1]
    options = data.get("options") or {}
    gate = _gate(data, base_model_id)
    trainer = _trainer()
    if trainer.configured and not trainer.public_url:
        # Never from the request's Host: whoever sends it would choose where the trainer goes.
        raise APIError(
            503,
            "public_url_not_configured",
            "no job is handed off without the companion's address: set DETWATCH_PUBLIC_URL (or public_url in"
            " detwatch.yaml) to the URL trainers reach it at; the job was not recorded",
        )
    engine = store()
    try:
        job = engine.create_job(
            name=name,
            dataset_id=dataset_id,
            version_id=version_id,
            base_model_id=base_model_id,
            options=dict(options),
            callback_base=trainer.public_url,
            gate=gate,
        )
    except LookupError as exc:
        field = str(exc.args[0])
        raise APIError(
            404, f"{field.removesuffix('_id')}_not_found", f"no such {field.removesuffix('_id')}", field
        ) from None
    wake_training_dispatcher()
    public = _with_trainer(job_json(engine.get_job(job.id) or job), trainer)
    if public["warning"]:
        _logger.warning("training job %s (%s): %s", public["id"], name, public["warning"])
    return jsonify(public), 201


NO_TRAINER: Final = (
    "no trainer is configured: the job stays queued until one is (set DETWATCH_TRAINER_URL, a webhook, or "
    "DETWATCH_TRAINER_COMMAND, a local command, or trainer: {url: ...} or {command: ...} in detwatch.yaml)"
)


def _with_trainer(job: dict[str, Any], trainer: Trainer) -> TrainingJob:
    """The job as the API shows it: which trainer it goes to, and why it waits when nothing will take it.

    A job without a trainer is recorded and due, and is handed off as soon as one is
    configured; until then nothing else in the answer would tell a ``queued`` job that
    waits for a hand-off from one that waits forever.
    """
    waiting = job["status"] == "queued" and not job.get("handed_off") and not trainer.configured
    return cast(TrainingJob, {**job, "trainer": trainer.describe(), "warning": NO_TRAINER if waiting else None})


@bp.get("/training-jobs/<job_id>")
def get_training_job(job_id: str) -> Response:
    job = store().get_job(job_id)
    if job is None:
        raise APIError(404, "job_not_found", f"no training job {job_id!r}", "job_id")
    return jsonify(_with_trainer(job_json(job), _trainer()))


def _job_for_token(job_id: str) -> tuple[DataEngineStore, TrainingJobRecord | None, bool]:
    """The store, the job (with its secret) and whether the caller sent its callback token; 401 for neither token."""
    try:
        engine = store()
        job = engine.get_job(job_id)
    except StorageUnavailable as exc:
        if bearer_ok():
            raise
        # The caller is not authenticated yet (the job's token is in the database): a 503
        # it can retry, without the details of the database (host, port) in it.
        _logger.warning("storage unavailable for a training-job callback: %s", exc)
        raise APIError(503, "storage_unavailable", "the database cannot take writes now; retry later") from None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    token_ok = (
        job is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), job.callback_token.encode())
    )
    if not token_ok and not bearer_ok():  # without an API token configured, the API is open (loopback)
        raise APIError(401, "unauthorized", "send the job's callback token (or the API token)", "Authorization")
    return engine, job, token_ok


def _job_version(job_id: str) -> tuple[DataEngineStore, DatasetSnapshotRecord]:
    """The job's dataset version, for its trainer (callback token) while the job is not finished, or the API token."""
    engine, job, token_ok = _job_for_token(job_id)
    if job is None:
        raise APIError(404, "job_not_found", f"no training job {job_id!r}", "job_id")
    if token_ok and not bearer_ok() and job.status in FINISHED_JOB_STATUSES:
        raise APIError(403, "job_finished", "the job has finished: its callback token no longer reads its dataset")
    version = engine.get_version(job.dataset_id, job.version_id)
    if version is None:
        raise APIError(404, "version_not_found", f"no version {job.version_id!r}", "version_id")
    return engine, version


@bp.get("/training-jobs/<job_id>/dataset")
def get_job_dataset(job_id: str) -> Response:
    """The job's dataset version: what its trainer may read with the job's callback token."""
    return jsonify(version_json(_job_version(job_id)[1]))


@bp.get("/training-jobs/<job_id>/dataset/export")
def export_job_dataset(job_id: str) -> Response:
    engine, version = _job_version(job_id)
    return _export(engine, version, _export_format())


@bp.post("/training-jobs/<job_id>/status")
def post_job_status(job_id: str) -> Response:
    engine, job, _token_ok = _job_for_token(job_id)
    data = _object()
    status = data.get("status")
    if status not in REPORTED_JOB_STATUSES:
        raise APIError(400, "invalid_field", f"must be one of: {', '.join(REPORTED_JOB_STATUSES)}", "status")
    model_version = _text(data, "model_version", required=False)
    check_shape(data, TrainingJobStatus)  # message: text of at most 4096 characters; metrics: an object
    message = data.get("message")
    if message is not None and holds_nul(message):
        raise APIError(400, "invalid_field", NUL_MESSAGE, "message")
    metrics = data.get("metrics") or {}
    if job is None:
        raise APIError(404, "job_not_found", f"no training job {job_id!r}", "job_id")
    gate_result: dict[str, Any] | None = None
    if status == "succeeded" and job.gate is not None and job.status not in FINISHED_JOB_STATUSES:
        verdict = judge_job_gate(engine.storage, job)
        gate_result = verdict.as_record()
        if not verdict.passed:
            status, message = "gated", f"gate: {verdict.message} (trainer: {message or 'succeeded'})"
    try:
        updated = engine.update_job_status(
            job_id,
            status=str(status),
            model_version=model_version,
            message=message,
            metrics=metrics,
            gate_result=gate_result,
        )
    except ConflictError as exc:
        raise APIError(409, "conflict", str(exc), exc.field) from None
    if updated is None:
        raise APIError(404, "job_not_found", f"no training job {job_id!r}", "job_id")
    return jsonify(job_json(updated))


@bp.post("/training-jobs/<job_id>/predictions")
def post_job_predictions(job_id: str) -> Response:
    """A gated job's candidate detections on the base model's labelled images (the job's token until it finishes).

    Kept apart from production predictions (no aggregates, no flagging). An image key
    that is not one of the base model's labelled images of the job's dataset is
    rejected (``rejected``, with its index); the others replace what the key had.
    """
    engine, job, token_ok = _job_for_token(job_id)
    if job is None:
        raise APIError(404, "job_not_found", f"no training job {job_id!r}", "job_id")
    if job.gate is None:
        raise APIError(409, "conflict", "the job has no gate: its candidate's detections would be judged by nothing")
    if token_ok and not bearer_ok() and job.status in FINISHED_JOB_STATUSES:
        raise APIError(403, "job_finished", "the job has finished: its callback token no longer posts predictions")
    data = _object()
    check_shape(data, CandidatePredictions)
    keys = base_image_keys(engine.storage, job)
    accepted: dict[str, list[dict[str, Any]]] = {}
    rejected: list[dict[str, Any]] = []
    for index, image in enumerate(data["predictions"]):
        key = image["image_key"]
        if key not in keys:
            error = "not a labelled image of the base model in the job's dataset"
            rejected.append({"index": index, "field": f"predictions[{index}].image_key", "error": error})
            continue
        found = [{"class": d["class"], "confidence": float(d["confidence"]), "box": [float(v) for v in d["box"]]}
                 for d in image["detections"]]  # fmt: skip
        accepted[key] = found
    if accepted:
        engine.put_candidate_detections(job.id, accepted)
    return jsonify({"accepted": len(accepted), "rejected": rejected})
