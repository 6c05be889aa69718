"""``POST /v1/feedback``: one feedback item, or ``{"feedback": [...]}``, from a reviewer or a webhook.

A sender authenticates with the API token or, when ``DETWATCH_WEBHOOK_SECRET`` is set,
with a Standard Webhooks signature over the raw body. Retries count once: by the signed
``webhook-id``, else by ``Idempotency-Key``; a key reused for a different item is refused.
Accepted feedback is counted on the companion's ``objdet.feedback`` counter.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Flask, Response, jsonify, request

from detwatch.api._context import get_storage, instruments, settings, trust_own_authentication
from detwatch.api._request import MAX_BATCH, field_error, json_body, require_token
from detwatch.api.errors import APIError
from detwatch.contract import shapes
from detwatch.contract.feedback import FeedbackInput, parse_feedback
from detwatch.contract.predictions import PredictionError
from detwatch.contract.textfields import line_problem
from detwatch.contract.webhooks import (
    ID_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    WebhookVerificationError,
    idempotency_key,
    verify,
)
from detwatch.storage import FeedbackRecord
from detwatch_instrumentation import semconv

__all__ = ["bp", "init_app"]

bp = Blueprint("feedback", __name__, url_prefix="/v1")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    trust_own_authentication(app, "feedback.post_feedback")  # a signed webhook


@bp.before_request
def _authenticate() -> None:
    if settings().webhook_secrets and "webhook-signature" in request.headers:
        return  # verified by the route itself, against the raw body
    require_token()


def _feedback_json(record: FeedbackRecord) -> shapes.FeedbackRecord:
    return shapes.FeedbackRecord(
        id=record.id,
        type=record.type,
        prediction_id=record.prediction_id,
        trace_id=record.trace_id,
        span_id=record.span_id,
        detection_index=record.detection_index,
        corrected_class=record.corrected_class,
        corrected_box=list(record.corrected_box) if record.corrected_box else None,
        reviewer=record.reviewer,
        comment=record.comment,
        model_id=record.model_id,
        duplicate=record.duplicate,
    )


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
    rejected: list[shapes.RejectedItem] = []
    for index, item in enumerate(items):
        item_key = _item_key(key, index) if key and batch else key
        try:
            parsed.append(parse_feedback(item, idempotency_key=item_key))
            indexes.append(index)
        except PredictionError as exc:
            if not batch:
                raise field_error(exc) from None
            rejected.append(shapes.RejectedItem(index=index, field=exc.field, error=str(exc)))
    stored = get_storage().add_feedback(parsed) if parsed else []
    records = []
    for index, given, record in zip(indexes, parsed, stored, strict=True):
        if record.duplicate and not _same_feedback(given, record):
            # A key names one request: reused for another body, the first is not silently answered.
            header = ID_HEADER if key and key.startswith("webhook:") else _key_header()
            message = f"{header} was already used for a different feedback item: use a fresh key for new feedback"
            if not batch:
                raise APIError(422, "idempotency_key_reused", message, header)
            rejected.append(shapes.RejectedItem(index=index, field=header, error=f"{header}: {message}"))
            continue
        records.append(record)
    rejected.sort(key=lambda r: r["index"])
    for record in records:
        if not record.duplicate:
            attributes: dict[str, str] = {semconv.ATTR_FEEDBACK_TYPE: record.type}
            if record.model_id is not None:  # known once the prediction was ingested: per-model accuracy
                attributes[semconv.ATTR_MODEL_ID] = record.model_id
            instruments().feedback.add(1, attributes)
    if not batch:
        return jsonify(_feedback_json(records[0])), 200 if records[0].duplicate else 201
    return jsonify(shapes.FeedbackBatchResult(accepted=[_feedback_json(r) for r in records], rejected=rejected)), 200
