"""The quality route's path in the OpenAPI document (merged by :func:`detwatch.api.openapi.openapi_document`).

The answer's schema is the shape :class:`~detwatch.contract.shapes.quality.QualityReport`;
this module only says which route answers it.
"""

from __future__ import annotations

from typing import Any

from detwatch.api._openapi_paths import NOT_FOUND, READ_ERRORS, answer, operation, path_id
from detwatch.contract.predictions import AB_ARMS, MAX_ID_LENGTH
from detwatch.contract.shapes import Error, QualityReport
from detwatch.contract.shapes.quality import WINDOW_PATTERN

__all__ = ["quality_paths"]


def quality_paths() -> dict[str, Any]:
    """``GET /v1/models/{model_id}/quality``."""
    parameters = [
        path_id("model_id"),
        {"name": "period", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": WINDOW_PATTERN, "maxLength": 32, "default": "7d"},
         "description": "a window ending now: 7d, 24h, last 2w"},
        {"name": "model_version", "in": "query", "required": False,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
         "description": "only this version's predictions (all versions without it)"},
        {"name": "ab_variant", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(AB_ARMS)},
         "description": "only the items whose prediction was routed to this A/B arm (every item without it)"},
    ]  # fmt: skip
    return {
        "/v1/models/{model_id}/quality": {
            "get": operation(
                "Precision, recall and AP estimated for production from reviewed labels (get_model_quality)",
                {
                    "200": answer("the report", QualityReport),
                    "400": answer("bad parameter; the error names it", Error),
                    **NOT_FOUND,
                    **READ_ERRORS,
                },
                parameters=parameters,
            )
        }
    }
