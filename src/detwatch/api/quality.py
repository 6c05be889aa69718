"""``GET /v1/models/{model_id}/quality``: model quality scored on reviewed labels (:mod:`detwatch.quality`).

Query: ``period`` (a window ending now, default ``7d``), ``model_version`` (all
versions without it), ``ab_variant`` (``a`` or ``b``: only the items whose prediction
was routed to that arm, and that arm's detections for the label-free estimate). The
answer is the ``QualityReport`` shape: production estimates from the policy's sample,
the feedback-flagged items apart, the label-free precision of all the period's
detections, and ``label_free_recall``: no estimate (none exists from detections alone)
and the period's ``missed_object`` feedback per predicted image instead.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from detwatch.api._analysis_json import quality_json
from detwatch.api._context import get_storage
from detwatch.api._request import require_token
from detwatch.api.errors import APIError
from detwatch.contract.predictions import AB_ARMS, MAX_ID_LENGTH
from detwatch.quality import label_free_recall, model_quality, parse_window, period_precision

__all__ = ["DEFAULT_PERIOD", "bp"]

DEFAULT_PERIOD = "7d"

bp = Blueprint("quality", __name__, url_prefix="/v1")
bp.before_request(require_token)


@bp.get("/models/<model_id>/quality")
def get_quality(model_id: str) -> Response:
    storage = get_storage()
    if storage.get_model(model_id) is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    period = request.args.get("period", DEFAULT_PERIOD)
    try:
        since, until = parse_window(period, now_unix_nano=time.time_ns())
    except ValueError as exc:
        raise APIError(400, "invalid_field", str(exc), "period") from None
    version = request.args.get("model_version")
    if version is not None and not 1 <= len(version) <= MAX_ID_LENGTH:
        raise APIError(400, "invalid_field", f"1 to {MAX_ID_LENGTH} characters", "model_version")
    arm = request.args.get("ab_variant")
    if arm is not None and arm not in AB_ARMS:
        raise APIError(400, "invalid_field", f"must be one of: {', '.join(AB_ARMS)}", "ab_variant")
    quality = model_quality(
        storage, model_id, since_unix_nano=since, until_unix_nano=until, model_version=version, ab_variant=arm
    )
    estimated = period_precision(
        storage, model_id, since_unix_nano=since, until_unix_nano=until, model_version=version, ab_variant=arm
    )
    recall = label_free_recall(
        storage, model_id, since_unix_nano=since, until_unix_nano=until, model_version=version, ab_variant=arm
    )
    return jsonify(quality_json(quality, period, estimated, recall))
