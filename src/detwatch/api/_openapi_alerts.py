"""The alert routes' paths in the OpenAPI document (merged into :mod:`detwatch.api.openapi`).

Request and answer schemas are the shapes of :mod:`detwatch.contract.shapes.alerts`.
"""

from __future__ import annotations

from typing import Any, Final

from detwatch.api._openapi_paths import answer, operation
from detwatch.contract.shapes import AlertArtifacts, AlertCreate, AlertCreated, AlertList, Error

__all__ = ["MODEL_ID_PATTERN", "alert_paths"]

MODEL_ID_PATTERN: Final = r"[A-Za-z0-9_:+-][A-Za-z0-9_.:+-]{0,127}"
"""A model id in these routes' paths: one segment, not "." or "..", within the validator's identifiers."""

_MODEL_ID: Final = {"name": "model_id", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": f"^{MODEL_ID_PATTERN}$"}}  # fmt: skip

_ERRORS: Final = {
    "401": answer("missing or wrong credentials", Error),
    "503": answer("detwatch.yaml is invalid, or the artifacts could not be written", Error),
}


def alert_paths() -> dict[str, Any]:
    """The alert routes' paths."""
    created = {
        "201": answer("the alert, its Prometheus rule names and Grafana rule uid", AlertCreated),
        "200": answer("an alert of that name was replaced", AlertCreated),
        "400": answer("invalid definition; the error names the field and what is valid", Error),
        "409": answer("the name is taken by another model's alert (names are global)", Error),
        "413": answer("body too large", Error),
        "415": answer("not application/json", Error),
        **_ERRORS,
    }
    return {
        "/v1/models/{model_id}/alerts": {
            "post": operation(
                "Create (or replace, by name) an alert; regenerates rules/, grafana/ and collector/",
                created,
                request=AlertCreate,
                parameters=[_MODEL_ID],
            ),
            "get": operation(
                "The model's alerts (from detwatch.yaml and create_alert)",
                {"200": answer("alerts", AlertList), "400": answer("not a model id", Error), **_ERRORS},
                parameters=[_MODEL_ID],
            ),
        },
        "/v1/alerts/artifacts": {
            "get": operation(
                "Every generated file (rules/, grafana/, collector/) by relative path",
                {"200": answer("files", AlertArtifacts), **_ERRORS},
            )
        },
    }
