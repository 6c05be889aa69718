"""``POST /v1/models/{model_id}/drift``: a drift report between two periods (:mod:`detwatch.drift`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from detwatch.api._analysis_json import drift_report_json
from detwatch.api._context import get_storage
from detwatch.api._request import check_shape, nul_free_body, require_token
from detwatch.api.errors import APIError
from detwatch.contract.shapes import DriftRequest
from detwatch.drift import DriftInputError, report_for_request

__all__ = ["bp"]

bp = Blueprint("drift", __name__, url_prefix="/v1")
bp.before_request(require_token)


@bp.post("/models/<model_id>/drift")
def check_drift(model_id: str) -> Response:
    storage = get_storage()
    # The model first: an unknown one is a 404 whatever the body says.
    if storage.get_model(model_id) is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    body = nul_free_body()
    check_shape(body, DriftRequest)  # types and bounds; the analysis reads the periods and their calendar
    try:
        return jsonify(drift_report_json(report_for_request(storage, model_id, body), model_id))
    except DriftInputError as exc:
        raise APIError(400, "invalid_field", exc.message, exc.field) from None
