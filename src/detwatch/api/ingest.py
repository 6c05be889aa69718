"""Ingest routes: ``POST /v1/logs`` (OTLP/HTTP logs from a Collector) and ``POST /v1/predictions``.

Both hold one of the machine's ingest slots while they run (:mod:`detwatch.api._admission`),
so that a burst answers 429 instead of queueing until the database times out; one bad
record is rejected by index and never costs the good ones of its batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TypeVar

from flask import Blueprint, Response, current_app, jsonify, request

from detwatch.api._admission import IngestSlots
from detwatch.api._context import get_storage, settings
from detwatch.api._request import MAX_BATCH, json_body, require_token
from detwatch.api.errors import APIError
from detwatch.contract.otlp import OTLPDecodeError, decode_request, encode_response, extract_predictions
from detwatch.contract.predictions import PredictionError, parse_prediction
from detwatch.contract.shapes import PredictionResult, RejectedItem

__all__ = ["bp"]

bp = Blueprint("ingest", __name__, url_prefix="/v1")
bp.before_request(require_token)
_R = TypeVar("_R")


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
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items):
        try:
            accepted.append(parse_prediction(item, index=index))
        except PredictionError as exc:
            rejected.append(RejectedItem(index=index, field=exc.field, error=str(exc)))
    result = get_storage().ingest_predictions(accepted) if accepted else None
    body = PredictionResult(
        accepted=len(accepted),
        duplicates=result.duplicates if result else 0,
        rejected=rejected,
    )
    return jsonify(body), 200
