"""``GET /v1/models/{model_id}/quality/compare``: two versions on the same labelled images (:mod:`detwatch.quality`).

Query: ``version_a``, ``version_b``, ``dataset_id`` (all required). The answer is the
``VersionComparisonReport`` shape: per figure each version's value, ``b - a`` and its
paired bootstrap interval over the labelled images both versions predicted.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, jsonify, request

from detwatch.api._context import get_storage
from detwatch.api._request import require_token
from detwatch.api.errors import APIError
from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.quality import DifferenceSet, ModelVersionComparison, compare_model_versions

__all__ = ["bp", "comparison_json"]

bp = Blueprint("quality_comparison", __name__, url_prefix="/v1")
bp.before_request(require_token)

_METRICS = ("precision", "recall", "ap50", "ap")


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _differences(d: DifferenceSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _METRICS:
        f = getattr(d, name)
        out[name] = {
            "a": _finite(f.a),
            "b": _finite(f.b),
            "difference": _finite(f.difference),
            "ci": [_finite(f.ci[0]), _finite(f.ci[1])],
        }
    return out


def comparison_json(found: ModelVersionComparison) -> dict[str, Any]:
    """The answer's body (shape ``VersionComparisonReport``; NaN written null)."""
    c = found.comparison
    return {
        "model_id": found.model_id,
        "version_a": found.version_a,
        "version_b": found.version_b,
        "dataset_id": found.dataset_id,
        "status": c.status,
        "n_images": c.n_images,
        "labelled_images": found.labelled_images,
        "classes": {name: _differences(d) for name, d in sorted(c.classes.items())},
        "overall": _differences(c.overall),
    }


def _required(name: str) -> str:
    value = request.args.get(name)
    if value is None or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise APIError(400, "invalid_field", f"required, 1 to {MAX_ID_LENGTH} characters", name)
    return value


@bp.get("/models/<model_id>/quality/compare")
def compare(model_id: str) -> Response:
    storage = get_storage()
    if storage.get_model(model_id) is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    version_a, version_b, dataset_id = (_required(n) for n in ("version_a", "version_b", "dataset_id"))
    try:
        found = compare_model_versions(
            storage, model_id, version_a=version_a, version_b=version_b, dataset_id=dataset_id
        )
    except LookupError:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id") from None
    return jsonify(comparison_json(found))
