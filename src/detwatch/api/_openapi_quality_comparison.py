"""The version comparison route's path in the OpenAPI document (merged by :mod:`detwatch.api.openapi`).

The answer's schema is the shape
:class:`~detwatch.contract.shapes.quality_comparison.VersionComparisonReport`; this
module only says which route answers it.
"""

from __future__ import annotations

from typing import Any

from detwatch.api._openapi_paths import NOT_FOUND, READ_ERRORS, answer, operation, path_id
from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.contract.shapes import Error, VersionComparisonReport

__all__ = ["quality_comparison_paths"]


def _required(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
    return {"name": name, "in": "query", "required": True, "schema": schema, "description": description}


def quality_comparison_paths() -> dict[str, Any]:
    """``GET /v1/models/{model_id}/quality/compare``."""
    parameters = [
        path_id("model_id"),
        _required("version_a", "the version compared against (the base)"),
        _required("version_b", "the version compared (differences are b - a)"),
        _required("dataset_id", "the dataset whose labelled images both versions are scored on"),
    ]
    return {
        "/v1/models/{model_id}/quality/compare": {
            "get": operation(
                "Two versions scored on the same labelled images, paired differences (compare_model_versions)",
                {
                    "200": answer("the comparison", VersionComparisonReport),
                    "400": answer("bad parameter; the error names it", Error),
                    **NOT_FOUND,
                    **READ_ERRORS,
                },
                parameters=parameters,
            )
        }
    }
