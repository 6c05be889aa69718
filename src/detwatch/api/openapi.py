"""The OpenAPI 3.1 document of the companion, served at ``/openapi.json``.

Written as data next to the routes it describes, and checked against them by
fuzzing every route from this document (schemathesis, ``tests/test_fuzz_api.py``):
a request the document allows is accepted, one it forbids is a 4xx with the JSON
error, and no request makes the service fail. The validation code is the truth; the
schemas say what JSON Schema can of it (``null`` for an optional field means absent;
cross-field rules such as a box's x2 > x1 are in the descriptions).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from detwatch.abtest.config import HIGHER_IS_BETTER as AB_DIRECTED
from detwatch.abtest.config import METRICS as AB_METRICS
from detwatch.api import _openapi_review as data_engine_openapi
from detwatch.api._openapi_alerts import ALERT_PATHS
from detwatch.api._request import MAX_BATCH
from detwatch.contract.feedback import MAX_TEXT
from detwatch.contract.predictions import (
    MAX_COORDINATE,
    MAX_DETECTIONS,
    MAX_ID_LENGTH,
    MAX_INT32,
    MAX_INT64,
    MAX_JSON_DEPTH,
    MAX_LATENCY_MS,
    MAX_YEAR,
    MIN_YEAR,
)
from detwatch.contract.textfields import LINE_PATTERN, NAME_PATTERN, NO_NUL_PATTERN
from detwatch.drift import AB_VARIANTS, MAX_PERIOD_LENGTH, PERIOD_PATTERN
from detwatch.storage import FEEDBACK_TYPES
from detwatch.version import __version__

__all__ = ["openapi_document"]

JSON = "application/json"

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
_NAME = {**_ID, "pattern": NAME_PATTERN, "description": "not blank: a visible character, no NUL"}
"""A name, as :func:`detwatch.contract.textfields.name_problem` checks it (the validators' rule, as written here)."""
_LINE = {"type": "string", "minLength": 1, "pattern": LINE_PATTERN, "description": "no control character"}
_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_HEX16 = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
_BOX = {
    "type": "array",
    "items": {"type": "number", "minimum": -MAX_COORDINATE, "maximum": MAX_COORDINATE},
    "minItems": 4,
    "maxItems": 4,
    "description": "[x1, y1, x2, y2] in absolute pixels, x2 > x1 and y2 > y1",
}
_TIME = {
    "type": "string",
    "format": "date-time",
    # The year, as written: nanoseconds since the epoch must fit a BIGINT.
    "pattern": "^(?:19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-",
    "description": f"RFC 3339 with a time zone, years {MIN_YEAR} to {MAX_YEAR}",
}


def _decimal_at_most(limit: int) -> str:
    """A regular expression for the decimal strings of 1 to ``limit`` (leading zeros allowed)."""
    digits = str(limit)
    shorter = f"[1-9][0-9]{{0,{len(digits) - 2}}}"
    same_length = []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            same_length.append(f"{digits[:i]}[{low}-{int(digit) - 1}][0-9]{{{rest}}}")
    same_length.append(digits)
    return f"^0*(?:{'|'.join([shorter, *same_length])})$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field the service treats as absent when it is null."""
    nullable = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _present(*names: str) -> dict[str, Any]:
    """The fields are there and not null."""
    return {"required": list(names), "properties": {name: {"not": {"type": "null"}} for name in names}}


def _batch(item: str, limit: int) -> dict[str, Any]:
    return {"type": "array", "maxItems": limit, "items": {"$ref": f"#/components/schemas/{item}"}}


_REJECTED = {
    "type": "array",
    "description": "the items not stored, each with the field to fix",
    "items": {
        "type": "object",
        "required": ["index", "field", "error"],
        "properties": {
            "index": {"type": "integer"},
            "field": {"type": "string"},
            "error": {"type": "string"},
        },
    },
}

_DRIFT_PERIOD = {"type": "string", "minLength": 1, "maxLength": MAX_PERIOD_LENGTH, "pattern": PERIOD_PATTERN}

_AB_PRIMARY = [m for m in AB_METRICS if AB_DIRECTED[m] is not None]
"""Metrics that may come first in an A/B test's ``metrics``: those with a better direction."""

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "minLength": 1},
                    "message": {"type": "string", "minLength": 1},
                    "field": {"type": "string", "description": "what to fix"},
                },
            }
        },
    },
    "Detection": {
        "type": "object",
        "description": "label, score and bbox are accepted in place of class, confidence and box.",
        "required": ["class", "confidence", "box"],
        "properties": {
            "class": {"type": "string", "minLength": 1},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "box": _BOX,
        },
    },
    "Prediction": {
        "type": "object",
        "description": "A prediction event (the decorator's objdet.prediction body). Needs time or time_unix_nano "
        "(time wins when both are given). Optional fields may be null, meaning absent.",
        "required": ["model_id", "detections"],
        "anyOf": [_present("time"), _present("time_unix_nano")],
        "properties": {
            "prediction_id": _nullable(_ID),
            "time": _nullable(_TIME),
            "time_unix_nano": {
                "type": ["integer", "string", "null"],
                "minimum": 1,
                "maximum": MAX_INT64,
                "pattern": _decimal_at_most(MAX_INT64),
                "description": "nanoseconds since the epoch; a decimal string as OTLP/JSON writes 64-bit integers",
            },
            "model_id": _ID,
            "model_version": _nullable(_ID),
            "ab_variant": _nullable({"type": "string", "enum": ["a", "b"]}),
            "latency_ms": _nullable({"type": "number", "minimum": 0, "maximum": MAX_LATENCY_MS}),
            "image": _nullable(
                {
                    "type": "object",
                    "properties": {
                        "key": _nullable(_LINE),
                        "uri": _nullable(_LINE),
                        "width": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_INT32}),
                        "height": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_INT32}),
                    },
                }
            ),
            "trace_id": _nullable(_HEX32),
            "span_id": _nullable(_HEX16),
            "attributes": _nullable({"type": "object"}),
            "detections": _batch("Detection", MAX_DETECTIONS),
        },
    },
    "PredictionBatch": {
        "type": "object",
        "description": "Each prediction is validated on its own: invalid ones are named in the answer, "
        "the others stored.",
        "required": ["predictions"],
        "properties": {"predictions": _batch("Prediction", MAX_BATCH)},
    },
    "PredictionResult": {
        "type": "object",
        "required": ["accepted", "duplicates", "rejected"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "rejected": _REJECTED,
        },
    },
    "Feedback": {
        "type": "object",
        "description": "Names the prediction (prediction_id, or trace_id and span_id) and what was wrong: "
        "wrong_label needs corrected_class, wrong_box corrected_box, missed_object both. "
        "Optional fields may be null, meaning absent.",
        "required": ["type"],
        "anyOf": [_present("prediction_id"), _present("trace_id", "span_id")],
        "allOf": [
            {
                "if": {"properties": {"type": {"enum": ["wrong_label", "missed_object"]}}},
                "then": _present("corrected_class"),
            },
            {
                "if": {"properties": {"type": {"enum": ["wrong_box", "missed_object"]}}},
                "then": _present("corrected_box"),
            },
        ],
        "properties": {
            "type": {"type": "string", "enum": list(FEEDBACK_TYPES)},
            "prediction_id": _nullable(_NAME),
            "trace_id": _nullable(_HEX32),
            "span_id": _nullable(_HEX16),
            "detection_index": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_DETECTIONS - 1}),
            "corrected_class": _nullable(_NAME),
            "corrected_box": _nullable(_BOX),
            "reviewer": _nullable(_NAME),
            "comment": _nullable({**_NAME, "maxLength": MAX_TEXT}),
            "time": _nullable({**_TIME, "description": f"{_TIME['description']}; defaults to now"}),
        },
    },
    "FeedbackBatch": {
        "type": "object",
        "description": "Each item is validated on its own: invalid ones are named in the answer, the others stored.",
        "required": ["feedback"],
        "properties": {"feedback": _batch("Feedback", MAX_BATCH)},
    },
    "FeedbackRecord": {
        "type": "object",
        "required": ["id", "type", "prediction_id", "duplicate"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string", "enum": list(FEEDBACK_TYPES)},
            "prediction_id": {"type": ["string", "null"]},
            "trace_id": {"type": ["string", "null"]},
            "span_id": {"type": ["string", "null"]},
            "detection_index": {"type": ["integer", "null"]},
            "corrected_class": {"type": ["string", "null"]},
            "corrected_box": {"type": ["array", "null"], "items": {"type": "number"}},
            "reviewer": {"type": ["string", "null"]},
            "comment": {"type": ["string", "null"]},
            "model_id": {"type": ["string", "null"]},
            "duplicate": {"type": "boolean", "description": "true when the idempotency key was seen before"},
        },
    },
    "FeedbackBatchResult": {
        "type": "object",
        "required": ["accepted", "rejected"],
        "properties": {
            "accepted": {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackRecord"}},
            "rejected": _REJECTED,
        },
    },
    "ModelRegistration": {
        "type": "object",
        "required": ["model_id"],
        "properties": {
            "model_id": _NAME,
            "version": _nullable(_NAME),
            "metadata": _nullable({"type": "object"}),
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "model_id", "versions", "metadata"],
        "properties": {
            "id": {"type": "string"},
            "model_id": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object"},
            "first_seen_unix_nano": {"type": "integer"},
            "last_seen_unix_nano": {"type": "integer"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {"models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}},
    },
    "DatasetCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": _NAME, "description": {"type": "string", "maxLength": MAX_TEXT}},
    },
    "DatasetVersionCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _NAME,
            "parent_version_id": {
                **_nullable(_NAME),
                "description": "a version of the same dataset (400 otherwise)",
            },
        },
    },
    "DatasetVersion": {
        "type": "object",
        "required": ["id", "dataset_id", "name", "parent_version_id"],
        "properties": {
            "id": {"type": "string"},
            "dataset_id": {"type": "string"},
            "name": {"type": "string"},
            "parent_version_id": {"type": ["string", "null"]},
            "created_unix_nano": {"type": "integer"},
            "content_hash": {"type": "string", "description": "sha256 of the snapshot's canonical content"},
            "item_count": {"type": "integer"},
            "class_counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "diff": {"type": "object", "description": "added, removed, changed items and class count deltas"},
        },
    },
    "Dataset": {
        "type": "object",
        "required": ["id", "name", "versions", "version"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "created_unix_nano": {"type": "integer"},
            "versions": {"type": "array", "items": {"$ref": "#/components/schemas/DatasetVersion"}},
            "version": {"$ref": "#/components/schemas/DatasetVersion"},
        },
    },
    "DriftRequest": {
        "type": "object",
        "description": "Two periods of the model's stored aggregates to compare, optional filters, and options of "
        "the verdict (defaults in the detwatch.drift documentation). Periods: YYYY-MM-DD:YYYY-MM-DD (whole days, "
        "both included), an ISO 8601 interval start/end of dates or date-times (a date-time end is excluded), "
        "'last 24h' (units m, h, d, w) or 'previous 7d' (the window just before the other period); dates must "
        "exist and a period must end after it starts.",
        "required": ["reference_period", "current_period"],
        "additionalProperties": False,
        "properties": {
            "reference_period": _DRIFT_PERIOD,
            "current_period": _DRIFT_PERIOD,
            "model_version": _nullable({**_ID, "maxLength": 256}),
            "ab_variant": _nullable({"type": "string", "enum": list(AB_VARIANTS)}),
            "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "min_images": {"type": "integer", "minimum": 1, "maximum": 2**31},
            "min_detections": {"type": "integer", "minimum": 1, "maximum": 2**31},
            "min_jensen_shannon": {"type": "number", "minimum": 0, "maximum": 1},
            "min_ks": {"type": "number", "minimum": 0, "maximum": 1},
            "min_cohen_h": {"type": "number", "minimum": 0, "maximum": math.pi},
            "min_rate_ratio": {"type": "number", "minimum": 1, "maximum": 1000},
            "intra_image_correlation": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "a floor under the intra-image correlation measured from the stored per-image sums "
                "(default 0: the measured one alone)",
            },
        },
    },
    "DriftReport": {
        "type": "object",
        "description": "class_drift: Jensen-Shannon distance (base 2) of the class mix; confidence_drift and "
        "count_drift: KS statistics of all confidences and of detections per image (0..1, null without data). "
        "significant_drift: some test is significant after Holm's correction and its effect reaches its floor.",
        "required": [
            "model_id",
            "status",
            "significant_drift",
            "class_drift",
            "confidence_drift",
            "count_drift",
            "affected_classes",
            "new_classes",
            "vanished_classes",
            "reference",
            "current",
            "classes",
            "tests",
        ],
        "properties": {
            "model_id": {"type": "string"},
            "status": {"type": "string", "enum": ["drift", "no_drift", "insufficient_data"]},
            "significant_drift": {"type": "boolean"},
            "class_drift": {"type": ["number", "null"]},
            "confidence_drift": {"type": ["number", "null"]},
            "count_drift": {"type": ["number", "null"]},
            "affected_classes": {"type": "array", "items": {"type": "string"}},
            "new_classes": {"type": "array", "items": {"type": "string"}},
            "vanished_classes": {"type": "array", "items": {"type": "string"}},
            "reference": {"type": "object"},
            "current": {"type": "object"},
            "classes": {"type": "array", "items": {"type": "object"}},
            "tests": {"type": "array", "items": {"type": "object"}},
            "insufficient": {"type": "array", "items": {"type": "string"}},
            "correction": {"type": "string"},
            "config": {"type": "object"},
        },
    },
    "ABTestCreate": {
        "type": "object",
        "description": "The user guide's create_ab_test arguments. config: traffic_split (share of keys to B, "
        "0 < split < 1), metrics (the first, one of confidence, latency, feedback_score, decides the verdict), "
        "duration_days, and optionally alpha, min_effect (per metric), min_samples, min_feedback, "
        "model_a_version, model_b_version. start back-dates the test (RFC 3339).",
        "required": ["name", "model_a_id", "model_b_id"],
        "properties": {
            "name": {**_NAME, "maxLength": 256},
            "model_a_id": {**_NAME, "maxLength": 256},
            "model_b_id": {**_NAME, "maxLength": 256},
            "config": {
                "type": ["object", "null"],
                "description": "null or absent: every default",
                "additionalProperties": False,
                "properties": {
                    "traffic_split": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "metrics": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "prefixItems": [{"type": "string", "enum": _AB_PRIMARY}],
                        "items": {"type": "string", "enum": list(AB_METRICS)},
                    },
                    "duration_days": {"type": "number", "exclusiveMinimum": 0, "maximum": 366},
                    "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                    "min_effect": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {m: {"type": "number", "exclusiveMinimum": 0} for m in AB_METRICS},
                    },
                    "min_samples": {"type": "integer", "minimum": 2},
                    "min_feedback": {"type": "integer", "minimum": 2},
                    "model_a_version": _nullable({**_ID, "maxLength": 256}),
                    "model_b_version": _nullable({**_ID, "maxLength": 256}),
                },
            },
            "start": {
                "type": ["string", "null"],
                "format": "date-time",
                "pattern": r"^(19[7-9][0-9]|2[01][0-9][0-9])-",
                "description": "RFC 3339, years 1970 to 2199",
            },
        },
    },
    "ABTest": {
        "type": "object",
        "description": "An A/B test; traffic_split (0 once stopped) and salt are what a router needs.",
        "required": ["id", "name", "model_a_id", "model_b_id", "config", "status", "traffic_split", "salt"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "model_a_id": {"type": "string"},
            "model_b_id": {"type": "string"},
            "config": {"type": "object"},
            "status": {"type": "string", "enum": ["running", "stopped"]},
            "start_unix_nano": {"type": "integer"},
            "end_unix_nano": {"type": "integer"},
            "traffic_split": {"type": "number"},
            "salt": {"type": "string"},
        },
    },
    "ABTestList": {
        "type": "object",
        "required": ["ab_tests"],
        "properties": {"ab_tests": {"type": "array", "items": {"$ref": "#/components/schemas/ABTest"}}},
    },
    "ABTestResults": {
        "type": "object",
        "description": "Per arm (model_a, model_b): images, avg_confidence, latency_ms p50/p95/p99, detections per "
        "image, empty-image rate, feedback score and count, class mix. p_value: the primary metric's always-valid "
        "(mSPRT) p-value; p_value_fixed_horizon is valid only when read once at the planned end. verdict: running, "
        "b_better, a_better, no_difference or inconclusive.",
        "required": ["id", "model_a", "model_b", "p_value", "verdict", "comparisons", "sample_ratio", "power"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "completed"]},
            "model_a": {"type": "object"},
            "model_b": {"type": "object"},
            "primary_metric": {"type": "string"},
            "p_value": {"type": ["number", "null"]},
            "p_value_fixed_horizon": {"type": ["number", "null"]},
            "p_values_corrected": {"type": "object"},
            "comparisons": {"type": "object"},
            "verdict": {
                "type": "string",
                "enum": ["running", "b_better", "a_better", "no_difference", "inconclusive"],
            },
            "verdict_reason": {"type": "string"},
            "valid": {"type": "boolean"},
            "sample_ratio": {"type": "object"},
            "power": {"type": "object"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["version", "database", "counts"],
        "properties": {
            "version": {"type": "string"},
            "database": {"type": "string", "description": "the database URL without credentials"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
}


def json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _answer(description: str, schema: str | dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = {"401": _answer("missing or wrong credentials", "Error")}
_NOT_FOUND = {"404": _answer("unknown", "Error")}
_UNAVAILABLE = {"503": _answer("the database cannot take writes now; retry after Retry-After", "Error")}
_BODY_ERRORS = {
    "400": _answer("invalid input; the error names the field", "Error"),
    **_UNAUTHORIZED,
    "413": _answer("body (or batch) too large", "Error"),
    "415": _answer("unsupported Content-Type (or Content-Encoding)", "Error"),
    **_UNAVAILABLE,
}
_READ_ERRORS = {**_UNAUTHORIZED, **_UNAVAILABLE}

_PATH_ID = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}

_CODING = r"^[ \t]*(?:[Gg][Zz][Ii][Pp]|[Ii][Dd][Ee][Nn][Tt][Ii][Tt][Yy])?[ \t]*$"
"""Content-Encoding as the service reads it: gzip, identity or nothing, in any case."""

_OTLP_JSON = {
    "type": "object",
    "description": "ExportLogsServiceRequest in OTLP/JSON (hex traceId and spanId); unknown fields are ignored",
}
_OTLP_PROTOBUF = {"type": "string", "format": "binary", "description": "ExportLogsServiceRequest, protobuf"}


def _no_nul_in_text(node: Any) -> None:
    """Give every string schema without a pattern the NUL rule (:data:`~detwatch.contract.textfields.NO_NUL_PATTERN`).

    Free-form objects (``metadata``, ``options``, ``attributes``) have no string
    schemas inside, and may hold a NUL: they are stored as JSON text.
    """
    if isinstance(node, dict):
        kind = node.get("type")
        text = kind == "string" or (isinstance(kind, list) and "string" in kind)
        if text and not {"pattern", "enum"} & node.keys() and node.get("format") != "binary":
            node["pattern"] = NO_NUL_PATTERN
        for child in node.values():
            _no_nul_in_text(child)
    elif isinstance(node, list):
        for child in node:
            _no_nul_in_text(child)


def openapi_document() -> dict[str, Any]:
    """The document (a new dict each call)."""
    document = _document()
    _no_nul_in_text(document["paths"])
    _no_nul_in_text({k: v for k, v in document["components"]["schemas"].items() if k != "Error"})
    return document


def _document() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "detwatch companion",
                "version": __version__,
                "description": "Feedback, prediction ingest and registry for object-detection monitoring. "
                "JSON bodies are I-JSON (RFC 7493: UTF-8, no lone surrogates), nested at most "
                f"{MAX_JSON_DEPTH} deep. Every error is the JSON object Error.",
            },
            "components": {
                "schemas": {**_SCHEMAS, **data_engine_openapi.schemas()},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
            "paths": {
                "/v1/logs": {
                    "post": {
                        "summary": "OTLP/HTTP logs: objdet.prediction events (protobuf or JSON, gzip)",
                        "parameters": [
                            {
                                "name": "Content-Encoding",
                                "in": "header",
                                "required": False,
                                "description": "gzip or identity (none), case-insensitive",
                                "schema": {"type": "string", "pattern": _CODING},
                            }
                        ],
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/x-protobuf": {"schema": _OTLP_PROTOBUF},
                                JSON: {"schema": _OTLP_JSON},
                            },
                        },
                        "responses": {
                            "200": {
                                "description": "ExportLogsServiceResponse in the request's encoding; "
                                "partial_success names rejected records",
                                "content": {
                                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                                    JSON: {"schema": {"type": "object"}},
                                },
                            },
                            **_BODY_ERRORS,
                        },
                    }
                },
                "/v1/predictions": {
                    "post": {
                        "summary": "Plain JSON batch of prediction events",
                        "requestBody": json_body("PredictionBatch"),
                        "responses": {
                            "200": _answer("stored; rejected items named", "PredictionResult"),
                            **_BODY_ERRORS,
                        },
                    }
                },
                "/v1/feedback": {
                    "post": {
                        "summary": "Feedback webhook (bearer token or Standard Webhooks signature)",
                        "description": (
                            "One feedback object, or a batch: an object whose feedback is a list. A retried post"
                            " counts once: a signed post by its webhook-id, any other by its Idempotency-Key (else"
                            " webhook-id), at most 256 characters; a key reused for a different item is a 422."
                        ),
                        "requestBody": {
                            "required": True,
                            "content": {
                                JSON: {
                                    "schema": {
                                        "anyOf": [
                                            {"$ref": "#/components/schemas/Feedback"},
                                            {"$ref": "#/components/schemas/FeedbackBatch"},
                                        ]
                                    }
                                }
                            },
                        },
                        "responses": {
                            "201": _answer("stored", "FeedbackRecord"),
                            "200": _answer(
                                "a repeated idempotency key (the stored record), or a batch result",
                                {
                                    "anyOf": [
                                        {"$ref": "#/components/schemas/FeedbackRecord"},
                                        {"$ref": "#/components/schemas/FeedbackBatchResult"},
                                    ]
                                },
                            ),
                            "422": _answer(
                                "the idempotency key was already used for a different feedback item (in a batch,"
                                " that item is rejected instead)",
                                "Error",
                            ),
                            **_BODY_ERRORS,
                        },
                    }
                },
                "/v1/models": {
                    "get": {
                        "summary": "List models",
                        "responses": {"200": _answer("models", "ModelList"), **_READ_ERRORS},
                    },
                    "post": {
                        "summary": "Register a model (version optional)",
                        "requestBody": json_body("ModelRegistration"),
                        "responses": {"201": _answer("the model", "Model"), **_BODY_ERRORS},
                    },
                },
                "/v1/models/{model_id}": {
                    "get": {
                        "summary": "One model",
                        "parameters": [{"name": "model_id", **_PATH_ID}],
                        "responses": {"200": _answer("the model", "Model"), **_NOT_FOUND, **_READ_ERRORS},
                    }
                },
                "/v1/models/{model_id}/drift": {
                    "post": {
                        "summary": "Drift report: current period against a reference period",
                        "parameters": [{"name": "model_id", **_PATH_ID}],
                        "requestBody": json_body("DriftRequest"),
                        "responses": {
                            "200": _answer("the report", "DriftReport"),
                            **_NOT_FOUND,
                            **_BODY_ERRORS,
                        },
                    }
                },
                "/v1/datasets": {
                    "post": {
                        "summary": "Create a dataset (with its first, empty version)",
                        "requestBody": json_body("DatasetCreate"),
                        "responses": {"201": _answer("the dataset", "Dataset"), **_BODY_ERRORS},
                    }
                },
                "/v1/datasets/{dataset_id}": {
                    "get": {
                        "summary": "One dataset",
                        "parameters": [{"name": "dataset_id", **_PATH_ID}],
                        "responses": {"200": _answer("the dataset", "Dataset"), **_NOT_FOUND, **_READ_ERRORS},
                    }
                },
                "/v1/datasets/{dataset_id}/versions": {
                    "post": {
                        "summary": "Create a dataset version",
                        "parameters": [{"name": "dataset_id", **_PATH_ID}],
                        "requestBody": json_body("DatasetVersionCreate"),
                        "responses": {
                            "201": _answer("the version", "DatasetVersion"),
                            "404": _answer("unknown dataset", "Error"),
                            **_BODY_ERRORS,
                        },
                    }
                },
                "/v1/ab-tests": {
                    "get": {
                        "summary": "List A/B tests, newest first",
                        "responses": {"200": _answer("the tests", "ABTestList"), **_READ_ERRORS},
                    },
                    "post": {
                        "summary": "Create an A/B test between two registered models",
                        "requestBody": json_body("ABTestCreate"),
                        "responses": {"201": _answer("the test", "ABTest"), **_BODY_ERRORS},
                    },
                },
                "/v1/ab-tests/{ab_test_id}": {
                    "get": {
                        "summary": "One A/B test (what a router polls for its split)",
                        "parameters": [{"name": "ab_test_id", **_PATH_ID}],
                        "responses": {"200": _answer("the test", "ABTest"), **_NOT_FOUND, **_READ_ERRORS},
                    }
                },
                "/v1/ab-tests/{ab_test_id}/stop": {
                    "post": {
                        "summary": "End the test now; routers then send everything to A",
                        "parameters": [{"name": "ab_test_id", **_PATH_ID}],
                        "responses": {"200": _answer("the test", "ABTest"), **_NOT_FOUND, **_READ_ERRORS},
                    }
                },
                "/v1/ab-tests/{ab_test_id}/results": {
                    "get": {
                        "summary": "Per-arm results, comparisons and the peeking-safe verdict",
                        "parameters": [{"name": "ab_test_id", **_PATH_ID}],
                        "responses": {"200": _answer("the results", "ABTestResults"), **_NOT_FOUND, **_READ_ERRORS},
                    }
                },
                **data_engine_openapi.paths(_BODY_ERRORS, _READ_ERRORS),
                **ALERT_PATHS,
                "/v1/status": {
                    "get": {
                        "summary": "Counts and version",
                        "responses": {"200": _answer("status", "Status"), **_READ_ERRORS},
                    }
                },
            },
        }
    )
