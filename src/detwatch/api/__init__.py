"""The ``/v1`` HTTP API of the companion (a Flask blueprint).

Routes (the OpenAPI document at ``/openapi.json`` describes each body):

- ``POST /v1/logs``: OTLP/HTTP logs (protobuf or JSON, gzip), as a Collector's
  ``otlphttp`` exporter sends them; prediction events are stored, other records
  ignored; partial success names rejected records.
- ``POST /v1/predictions``: ``{"predictions": [...]}`` plain JSON batch.
- ``POST /v1/feedback``: one feedback object, or ``{"feedback": [...]}``.
- ``POST/GET /v1/models``, ``GET /v1/models/{id}``: the model registry.
- ``POST /v1/datasets``, ``GET /v1/datasets/{id}``, ``POST /v1/datasets/{id}/versions``.
- ``POST/GET /v1/ab-tests``, ``GET /v1/ab-tests/{id}`` (what a router polls),
  ``POST /v1/ab-tests/{id}/stop``, ``GET /v1/ab-tests/{id}/results`` (:mod:`detwatch.abtest`).
- ``POST /v1/models/{id}/drift``: a drift report between two periods (:mod:`detwatch.drift`).
- ``GET /v1/status``: counts and version.

Authentication: with ``DETWATCH_API_TOKEN`` set, every ``/v1`` call needs
``Authorization: Bearer <token>``; ``/v1/feedback`` also accepts a Standard Webhooks
signature instead, when ``DETWATCH_WEBHOOK_SECRET`` is set.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from opentelemetry import metrics

from detwatch.abtest import service as abtest_service
from detwatch.api._admission import IngestSlots
from detwatch.api._analysis_json import ab_results_json, drift_report_json
from detwatch.api._context import bearer_ok, get_storage, settings, trust_own_authentication
from detwatch.api._request import (
    MAX_BATCH,
    field_error,
    json_body,
    no_nul_in_url,
    nul_free_body,
    object_body,
    string_field,
)
from detwatch.api.errors import APIError
from detwatch.contract.feedback import parse_feedback
from detwatch.contract.otlp import OTLPDecodeError, decode_request, encode_response, extract_predictions
from detwatch.contract.predictions import PredictionError, parse_prediction
from detwatch.contract.textfields import NUL_MESSAGE, holds_nul, line_problem
from detwatch.contract.webhooks import (
    ID_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    WebhookVerificationError,
    idempotency_key,
    verify,
)
from detwatch.drift import DriftInputError, report_for_request
from detwatch.storage import (
    ABTestRecord,
    DatasetRecord,
    DatasetVersionRecord,
    FeedbackInput,
    FeedbackRecord,
    ModelRecord,
    Storage,
)
from detwatch.version import __version__
from detwatch_instrumentation import semconv

__all__ = ["bp", "get_storage", "init_app"]

bp = Blueprint("v1", __name__, url_prefix="/v1")
_R = TypeVar("_R")


_meter = metrics.get_meter("detwatch.companion", __version__)
_feedback_counter = _meter.create_counter(
    semconv.FEEDBACK.name, unit=semconv.FEEDBACK.unit, description=semconv.FEEDBACK.description
)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    trust_own_authentication(app, "v1.post_feedback")  # a signed webhook
    from detwatch.api import alerts as alerts_api

    alerts_api.init_app(app)
    from detwatch.api import review as data_engine_routes

    data_engine_routes.init_app(app)

    app.before_request(no_nul_in_url)

    @app.teardown_appcontext
    def _nothing(_exc: BaseException | None) -> None:
        # Connections are per thread inside the backend and live with the process.
        return None


# ------------------------------------------------------------------ auth


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "v1.post_feedback" and settings().webhook_secrets and "webhook-signature" in request.headers:
        return  # verified by the route itself, against the raw body
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")


# ------------------------------------------------------------------ ingest


def _admitted(view: Callable[[], _R]) -> Callable[[], _R]:
    """Run an ingest route holding one of the machine's ingest slots, else answer 429 (see detwatch.api._admission)."""

    @functools.wraps(view)
    def admitted_view() -> _R:
        slots = current_app.extensions.get("detwatch.ingest_slots")
        if slots is None:
            slots = IngestSlots(settings().data_dir / "ingest-slots", settings().ingest_concurrency)
            current_app.extensions["detwatch.ingest_slots"] = slots
        with slots.acquire() as admitted:
            if not admitted:
                request.get_data()  # read the body: a sender still writing it would see a reset, not the 429
                raise APIError(429, "overloaded", f"all {slots.slots} ingest slots are busy: retry later")
            return view()

    return admitted_view


@bp.post("/logs")
@_admitted
def post_logs() -> Response:
    try:
        otlp = decode_request(request.get_data(), request.content_type, request.headers.get("Content-Encoding"))
    except OTLPDecodeError as exc:
        code = {413: "body_too_large", 415: "unsupported_media_type"}.get(exc.status, "invalid_otlp")
        raise APIError(exc.status, code, exc.message, exc.field) from None
    ingest = extract_predictions(otlp)
    if ingest.predictions:
        get_storage().ingest_predictions(ingest.predictions)
    payload, media = encode_response(ingest, request.content_type)
    return Response(payload, status=200, mimetype=media)


@bp.post("/predictions")
@_admitted
def post_predictions() -> tuple[Response, int]:
    data = json_body()
    if not isinstance(data, Mapping) or not isinstance(data.get("predictions"), list):
        raise APIError(400, "invalid_field", 'expected {"predictions": [...]}', "predictions")
    items = data["predictions"]
    if len(items) > MAX_BATCH:
        raise APIError(413, "batch_too_large", f"at most {MAX_BATCH} predictions per request", "predictions")
    accepted = []
    rejected = []
    for index, item in enumerate(items):
        try:
            accepted.append(parse_prediction(item, index=index))
        except PredictionError as exc:
            rejected.append({"index": index, "field": exc.field, "error": str(exc)})
    result = get_storage().ingest_predictions(accepted) if accepted else None
    body = {
        "accepted": len(accepted),
        "duplicates": result.duplicates if result else 0,
        "rejected": rejected,
    }
    return jsonify(body), 200


# ------------------------------------------------------------------ feedback


def _feedback_json(record: FeedbackRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "type": record.type,
        "prediction_id": record.prediction_id,
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "detection_index": record.detection_index,
        "corrected_class": record.corrected_class,
        "corrected_box": list(record.corrected_box) if record.corrected_box else None,
        "reviewer": record.reviewer,
        "comment": record.comment,
        "model_id": record.model_id,
        "duplicate": record.duplicate,
    }


MAX_IDEMPOTENCY_KEY_LENGTH = 256
"""Longest ``Idempotency-Key`` or ``webhook-id`` (a PostgreSQL index entry holds about 2.7 kB)."""


def _dedupe_key() -> str | None:
    """Verify a signed post; the key that makes its retries count once, or ``None``.

    A signed post is known by its signed ``webhook-id`` alone: ``Idempotency-Key`` is not
    covered by the signature, and a captured post re-sent with a fresh one would count
    again. Keys live in namespaces (``webhook:`` for signed ids, ``key:`` for a token
    client's), so that a token client cannot pre-empt a signed message's id; a batch
    item's key (:func:`_item_key`) cannot equal a single post's.
    """
    secrets = settings().webhook_secrets
    headers = {k.lower(): v for k, v in request.headers.items()}
    if secrets and "webhook-signature" in headers:
        try:
            webhook_id = verify(headers, request.get_data(), secrets)
        except WebhookVerificationError as exc:
            raise APIError(exc.http_status, exc.reason, str(exc), exc.header) from None
        return f"webhook:{_bounded(webhook_id, ID_HEADER)}"
    key = idempotency_key(headers)
    if key is None:
        return None
    return f"key:{_bounded(key, _key_header())}"


def _key_header() -> str:
    """The header a token client's key came from: ``Idempotency-Key`` when given, else ``webhook-id``."""
    return IDEMPOTENCY_KEY_HEADER if request.headers.get(IDEMPOTENCY_KEY_HEADER, "").strip() else ID_HEADER


def _same_feedback(given: FeedbackInput, stored: FeedbackRecord) -> bool:
    """Whether ``stored`` (found by ``given``'s key) is what ``given`` says: a retry, not a new item.

    The ids are compared as given (storage fills the others once the prediction is
    known), and the time only when one was sent (else it is when the first was stored).
    """
    ids = ((given.prediction_id, stored.prediction_id), (given.trace_id, stored.trace_id),
           (given.span_id, stored.span_id))  # fmt: skip
    return (
        given.type == stored.type
        and all(mine is None or mine == theirs for mine, theirs in ids)
        and given.detection_index == stored.detection_index
        and given.corrected_class == stored.corrected_class
        and given.corrected_box == stored.corrected_box
        and given.reviewer == stored.reviewer
        and given.comment == stored.comment
        and given.time_unix_nano in (0, stored.time_unix_nano)
    )


def _bounded(key: str, header: str) -> str:
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise APIError(400, "invalid_header", f"at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters", header)
    problem = line_problem(key)  # it is stored as text: no NUL, and no control character in a header
    if problem is not None:
        raise APIError(400, "invalid_header", problem, header)
    return key


def _item_key(key: str, index: int) -> str:
    """The key of item ``index`` of a batch posted with ``key`` (``key:K`` gives ``key[0]:K``, never ``key:K#0``)."""
    kind, _, value = key.partition(":")
    return f"{kind}[{index}]:{value}"


@bp.post("/feedback")
def post_feedback() -> tuple[Response, int]:
    key = _dedupe_key()
    data = json_body()
    batch = isinstance(data, Mapping) and isinstance(data.get("feedback"), list)
    items = data["feedback"] if batch else [data]
    if len(items) > MAX_BATCH:
        raise APIError(413, "batch_too_large", f"at most {MAX_BATCH} feedback items per request", "feedback")
    parsed = []
    indexes = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        item_key = _item_key(key, index) if key and batch else key
        try:
            parsed.append(parse_feedback(item, idempotency_key=item_key))
            indexes.append(index)
        except PredictionError as exc:
            if not batch:
                raise field_error(exc) from None
            rejected.append({"index": index, "field": exc.field, "error": str(exc)})
    stored = get_storage().add_feedback(parsed) if parsed else []
    records = []
    for index, given, record in zip(indexes, parsed, stored, strict=True):
        if record.duplicate and not _same_feedback(given, record):
            # A key names one request: reused for another body, the first is not silently answered.
            header = ID_HEADER if key and key.startswith("webhook:") else _key_header()
            message = f"{header} was already used for a different feedback item: use a fresh key for new feedback"
            if not batch:
                raise APIError(422, "idempotency_key_reused", message, header)
            rejected.append({"index": index, "field": header, "error": f"{header}: {message}"})
            continue
        records.append(record)
    rejected.sort(key=lambda r: r["index"])
    for record in records:
        if not record.duplicate:
            attributes: dict[str, str] = {semconv.ATTR_FEEDBACK_TYPE: record.type}
            if record.model_id is not None:  # known once the prediction was ingested: per-model accuracy
                attributes[semconv.ATTR_MODEL_ID] = record.model_id
            _feedback_counter.add(1, attributes)
    if not batch:
        return jsonify(_feedback_json(records[0])), 200 if records[0].duplicate else 201
    return jsonify({"accepted": [_feedback_json(r) for r in records], "rejected": rejected}), 200


# ------------------------------------------------------------------ registry


def _model_json(model: ModelRecord) -> dict[str, Any]:
    return {
        "id": model.id,
        "model_id": model.id,
        "versions": list(model.versions),
        "metadata": model.metadata,
        "first_seen_unix_nano": model.first_seen_unix_nano,
        "last_seen_unix_nano": model.last_seen_unix_nano,
    }


def _version_json(version: DatasetVersionRecord) -> dict[str, Any]:
    return {
        "id": version.id,
        "dataset_id": version.dataset_id,
        "name": version.name,
        "parent_version_id": version.parent_version_id,
        "created_unix_nano": version.created_unix_nano,
    }


def _dataset_json(dataset: DatasetRecord) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "description": dataset.description,
        "created_unix_nano": dataset.created_unix_nano,
        "versions": [_version_json(v) for v in dataset.versions],
        "version": _version_json(dataset.version),
    }


@bp.post("/models")
def register_model() -> tuple[Response, int]:
    data = object_body()
    model_id = string_field(data, "model_id", required=True)
    assert model_id is not None
    version = string_field(data, "version", required=False)
    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise APIError(400, "invalid_field", "must be an object", "metadata")
    model = get_storage().register_model(model_id, version, dict(metadata))
    return jsonify(_model_json(model)), 201


@bp.get("/models")
def list_models() -> Response:
    return jsonify({"models": [_model_json(m) for m in get_storage().list_models()]})


@bp.get("/models/<model_id>")
def get_model(model_id: str) -> Response:
    model = get_storage().get_model(model_id)
    if model is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    return jsonify(_model_json(model))


@bp.post("/datasets")
def create_dataset() -> tuple[Response, int]:
    data = object_body()
    name = string_field(data, "name", required=True)
    assert name is not None
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > 4096:
        raise APIError(400, "invalid_field", "must be a string of at most 4096 characters", "description")
    if holds_nul(description):
        raise APIError(400, "invalid_field", NUL_MESSAGE, "description")
    return jsonify(_dataset_json(get_storage().create_dataset(name, description))), 201


@bp.get("/datasets/<dataset_id>")
def get_dataset(dataset_id: str) -> Response:
    dataset = get_storage().get_dataset(dataset_id)
    if dataset is None:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id")
    return jsonify(_dataset_json(dataset))


@bp.post("/datasets/<dataset_id>/versions")
def create_dataset_version(dataset_id: str) -> tuple[Response, int]:
    data = object_body()
    name = string_field(data, "name", required=True)
    assert name is not None
    parent = string_field(data, "parent_version_id", required=False)
    storage = get_storage()
    dataset = storage.get_dataset(dataset_id)
    if dataset is None:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id")
    if parent is not None and parent not in {v.id for v in dataset.versions}:
        raise APIError(400, "invalid_field", f"not a version of dataset {dataset_id!r}", "parent_version_id")
    from detwatch.api.review import store as data_engine_store

    # An immutable, content-addressed snapshot of the parent's items plus the labelled ones.
    return jsonify(data_engine_store().create_version(dataset_id, name, parent)), 201


# ------------------------------------------------------------------ drift


@bp.post("/models/<model_id>/drift")
def check_drift(model_id: str) -> Response:
    storage = get_storage()
    # The model first: an unknown one is a 404 whatever the body says.
    if storage.get_model(model_id) is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    try:
        return jsonify(drift_report_json(report_for_request(storage, model_id, nul_free_body()), model_id))
    except DriftInputError as exc:
        raise APIError(400, "invalid_field", exc.message, exc.field) from None


# ------------------------------------------------------------------ A/B tests


def _ab_test_or_404(storage: Storage, ab_test_id: str) -> ABTestRecord:
    record = storage.get_ab_test(ab_test_id)
    if record is None:
        raise APIError(404, "ab_test_not_found", f"no A/B test {ab_test_id!r}", "ab_test_id")
    return record


_AB_TEST_FIELDS = ("name", "model_a_id", "model_b_id", "start", "config")


@bp.post("/ab-tests")
def create_ab_test() -> tuple[Response, int]:
    try:
        record = abtest_service.create_for_request(get_storage(), nul_free_body(*_AB_TEST_FIELDS))
    except abtest_service.ABTestInputError as exc:
        raise APIError(exc.status, "invalid_field", exc.message, exc.field) from None
    return jsonify(abtest_service.test_json(record)), 201


@bp.get("/ab-tests")
def list_ab_tests() -> Response:
    return jsonify({"ab_tests": [abtest_service.test_json(t) for t in get_storage().list_ab_tests()]})


@bp.get("/ab-tests/<ab_test_id>")
def get_ab_test(ab_test_id: str) -> Response:
    return jsonify(abtest_service.test_json(_ab_test_or_404(get_storage(), ab_test_id)))


@bp.post("/ab-tests/<ab_test_id>/stop")
def stop_ab_test(ab_test_id: str) -> Response:
    storage = get_storage()
    record = _ab_test_or_404(storage, ab_test_id)
    if record.status == "running":
        storage.set_ab_test_status(ab_test_id, "stopped", min(record.end_unix_nano, time.time_ns()))
    return jsonify(abtest_service.test_json(_ab_test_or_404(storage, ab_test_id)))


@bp.get("/ab-tests/<ab_test_id>/results")
def get_ab_test_results(ab_test_id: str) -> Response:
    storage = get_storage()
    return jsonify(ab_results_json(abtest_service.results_for(storage, _ab_test_or_404(storage, ab_test_id))))


# ------------------------------------------------------------------ status


@bp.get("/status")
def status() -> Response:
    storage = get_storage()
    url = storage.url.split("@")[-1] if "@" in storage.url else storage.url  # no credentials
    return jsonify({"version": __version__, "database": url, "counts": storage.counts()})
