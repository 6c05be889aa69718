"""The OpenAPI 3.1 document of the companion, served at ``/openapi.json``.

Written as data next to the routes it describes, and checked against them by
fuzzing every route from this document (schemathesis): a body the document allows
must never make the service fail, and every 4xx it answers carries the JSON error.
"""

from __future__ import annotations

from typing import Any

from .storage import FEEDBACK_TYPES
from .version import __version__

__all__ = ["openapi_document"]

_ID = {"type": "string", "minLength": 1, "maxLength": 256}
_BOX = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] in absolute pixels, x2 > x1 and y2 > y1",
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "what to fix"},
                },
            }
        },
    },
    "Detection": {
        "type": "object",
        "required": ["class", "confidence", "box"],
        "properties": {
            "class": {"type": "string", "minLength": 1},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "box": _BOX,
        },
    },
    "Prediction": {
        "type": "object",
        "description": "A prediction event (the decorator's objdet.prediction body). Needs time or time_unix_nano.",
        "required": ["model_id", "detections"],
        "properties": {
            "prediction_id": _ID,
            "time": {"type": "string", "format": "date-time"},
            "time_unix_nano": {"type": "integer", "minimum": 1},
            "model_id": _ID,
            "model_version": _ID,
            "ab_variant": {"type": "string", "enum": ["a", "b"]},
            "latency_ms": {"type": "number", "minimum": 0},
            "image": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "minLength": 1},
                    "uri": {"type": "string", "minLength": 1},
                    "width": {"type": "integer", "minimum": 1},
                    "height": {"type": "integer", "minimum": 1},
                },
            },
            "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "attributes": {"type": "object"},
            "detections": {"type": "array", "items": {"$ref": "#/components/schemas/Detection"}},
        },
    },
    "PredictionBatch": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}},
    },
    "PredictionResult": {
        "type": "object",
        "required": ["accepted", "duplicates", "rejected"],
        "properties": {
            "accepted": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "field": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
            },
        },
    },
    "Feedback": {
        "type": "object",
        "description": "Names the prediction (prediction_id, or trace_id and span_id) and what was wrong.",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": list(FEEDBACK_TYPES)},
            "prediction_id": _ID,
            "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
            "detection_index": {"type": "integer", "minimum": 0},
            "corrected_class": {"type": "string", "minLength": 1, "maxLength": 256},
            "corrected_box": _BOX,
            "reviewer": {"type": "string", "minLength": 1, "maxLength": 256},
            "comment": {"type": "string", "minLength": 1, "maxLength": 4096},
            "time": {"type": "string", "format": "date-time"},
        },
    },
    "FeedbackBatch": {
        "type": "object",
        "required": ["feedback"],
        "properties": {"feedback": {"type": "array", "items": {"$ref": "#/components/schemas/Feedback"}}},
    },
    "FeedbackRecord": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "prediction_id": {"type": ["string", "null"]},
            "model_id": {"type": ["string", "null"]},
            "duplicate": {"type": "boolean"},
        },
    },
    "ModelRegistration": {
        "type": "object",
        "required": ["model_id"],
        "properties": {"model_id": _ID, "version": _ID, "metadata": {"type": "object"}},
    },
    "Model": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "model_id": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object"},
        },
    },
    "DatasetCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _ID, "description": {"type": "string", "maxLength": 4096}},
    },
    "DatasetVersionCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _ID, "parent_version_id": _ID},
    },
    "DatasetVersion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "dataset_id": {"type": "string"},
            "name": {"type": "string"},
            "parent_version_id": {"type": ["string", "null"]},
        },
    },
    "Dataset": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"$ref": "#/components/schemas/DatasetVersion"}},
            "version": {"$ref": "#/components/schemas/DatasetVersion"},
        },
    },
}


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _answer(description: str, schema: str | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_ERRORS = {
    "400": _answer("invalid input; the error names the field", "Error"),
    "401": _answer("missing or wrong credentials", "Error"),
    "503": _answer("the database cannot take writes now; retry after Retry-After", "Error"),
}

_PATH_ID = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def openapi_document() -> dict[str, Any]:
    """The document (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "detwatch companion",
            "version": __version__,
            "description": "Feedback, prediction ingest and registry for object-detection monitoring.",
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/logs": {
                "post": {
                    "summary": "OTLP/HTTP logs: objdet.prediction events (protobuf or JSON, gzip)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": {"type": "object"}},
                        },
                    },
                    "responses": {"200": {"description": "ExportLogsServiceResponse (partial success)"}, **_ERRORS},
                }
            },
            "/v1/predictions": {
                "post": {
                    "summary": "Plain JSON batch of prediction events",
                    "requestBody": _json_body("PredictionBatch"),
                    "responses": {"200": _answer("stored; rejected items named", "PredictionResult"), **_ERRORS},
                }
            },
            "/v1/feedback": {
                "post": {
                    "summary": "Feedback webhook (bearer token or Standard Webhooks signature)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Feedback"},
                                        {"$ref": "#/components/schemas/FeedbackBatch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _answer("stored", "FeedbackRecord"),
                        "200": _answer("a repeated idempotency key, or a batch result"),
                        **_ERRORS,
                    },
                }
            },
            "/v1/models": {
                "get": {"summary": "List models", "responses": {"200": _answer("models"), "401": _ERRORS["401"]}},
                "post": {
                    "summary": "Register a model (version optional)",
                    "requestBody": _json_body("ModelRegistration"),
                    "responses": {"201": _answer("the model", "Model"), **_ERRORS},
                },
            },
            "/v1/models/{model_id}": {
                "get": {
                    "summary": "One model",
                    "parameters": [{"name": "model_id", **_PATH_ID}],
                    "responses": {"200": _answer("the model", "Model"), "404": _answer("unknown", "Error")},
                }
            },
            "/v1/datasets": {
                "post": {
                    "summary": "Create a dataset (with its first, empty version)",
                    "requestBody": _json_body("DatasetCreate"),
                    "responses": {"201": _answer("the dataset", "Dataset"), **_ERRORS},
                }
            },
            "/v1/datasets/{dataset_id}": {
                "get": {
                    "summary": "One dataset",
                    "parameters": [{"name": "dataset_id", **_PATH_ID}],
                    "responses": {"200": _answer("the dataset", "Dataset"), "404": _answer("unknown", "Error")},
                }
            },
            "/v1/datasets/{dataset_id}/versions": {
                "post": {
                    "summary": "Create a dataset version",
                    "parameters": [{"name": "dataset_id", **_PATH_ID}],
                    "requestBody": _json_body("DatasetVersionCreate"),
                    "responses": {
                        "201": _answer("the version", "DatasetVersion"),
                        "404": _answer("unknown dataset", "Error"),
                        **_ERRORS,
                    },
                }
            },
            "/v1/status": {"get": {"summary": "Counts and version", "responses": {"200": _answer("status")}}},
        },
    }
