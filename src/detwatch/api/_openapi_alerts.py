"""The OpenAPI description of the alert routes (merged into :mod:`detwatch.api.openapi`).

The request schema is the validator's rules written out per metric family, so that
what the document allows is accepted (the fuzz tests send exactly that): thresholds
on a mean confidence and shares lie in [0, 1], latency quantiles in (0, the last finite
latency bound], a low-confidence cut-off is a confidence bucket bound, durations use the
forms :func:`detwatch.alerting.definitions.parse_alert` accepts within its ranges. The validator
accepts a little more (e.g. ``1w`` windows); the document describes a safe subset. Bounds
the validator enforces are taken from it (``MAX_MIN_IMAGES``, ``MAX_THRESHOLD``), and an
optional key is left out, never null, in both.
"""

from __future__ import annotations

from typing import Any, Final

from detwatch.alerting.definitions import (
    EMAIL_PATTERN,
    MAX_MIN_IMAGES,
    MAX_NOTIFY,
    MAX_THRESHOLD,
    SLACK_PATTERN,
    WEBHOOK_PATTERN,
)
from detwatch_instrumentation import semconv

__all__ = ["ALERT_PATHS", "MODEL_ID_PATTERN"]

MODEL_ID_PATTERN: Final = r"[A-Za-z0-9_:+-][A-Za-z0-9_.:+-]{0,127}"
"""A model id in these routes' paths: one segment, not "." or "..", within the validator's identifiers."""

_IDENT: Final = r"^[A-Za-z0-9_.:/+-]{1,128}$"
# Windows from 1m to 999m, 1h to 99h, 1d to 31d: all inside the validator's 1m..31d.
_WINDOW: Final = r"^(?:[1-9][0-9]{0,2}m|[1-9][0-9]?h|[1-9]d|[12][0-9]d|3[01]d)$"
# Anomaly windows up to 16.6 h, so that a 7 d baseline is at least four windows.
_ANOMALY_WINDOW: Final = r"^(?:[1-9][0-9]{0,2}m|[1-9]h|1[0-6]h)$"
_FOR: Final = r"^(?:[0-9]{1,3}[sm]|[1-9]h|1[0-9]h|2[0-4]h)$"
_NOTIFY: Final = f"^(?:email:{EMAIL_PATTERN}|slack:{SLACK_PATTERN}|webhook:{WEBHOOK_PATTERN})$"
_CONFIDENCE_BOUNDS: Final = list(semconv.DETECTION_CONFIDENCE.bounds or ())
_LATENCY_BOUNDS_MS: Final = [round(b * 1000, 6) for b in semconv.INFERENCE_DURATION.bounds or ()]
_RATIOS: Final = ["low_confidence_rate", "no_detection_rate", "error_rate", "feedback_accuracy"]


def _condition(
    metric: dict[str, Any], threshold: dict[str, Any], *, window: str = _WINDOW, **extra: Any
) -> dict[str, Any]:
    properties = {
        "metric": metric,
        "operator": {"type": "string", "enum": ["lt", "gt", "lte", "gte"]},
        "threshold": threshold,
        "window": {"type": "string", "pattern": window},
        "for": {"type": "string", "pattern": _FOR},
        "min_images": {"type": "integer", "minimum": 0, "maximum": MAX_MIN_IMAGES},
        **extra,
    }
    return {
        "type": "object",
        "required": ["metric", "operator", "threshold", "window"],
        "additionalProperties": False,
        "properties": properties,
    }


_CONDITION: Final[dict[str, Any]] = {
    "description": "The seed's condition, e.g. {metric: avg_confidence, operator: lt, threshold: 0.7, window: 1h}",
    "oneOf": [
        _condition({"const": "avg_confidence"}, {"type": "number", "minimum": 0, "maximum": 1}),
        _condition(
            {"enum": ["p50_latency_ms", "p95_latency_ms", "p99_latency_ms"]},
            {"type": "number", "exclusiveMinimum": 0, "maximum": max(_LATENCY_BOUNDS_MS)},
        ),
        _condition(
            {"const": "low_confidence_rate"},
            {"type": "number", "minimum": 0, "maximum": 1},
            below={"enum": _CONFIDENCE_BOUNDS},
        ),
        _condition(
            {
                "oneOf": [
                    {"enum": _RATIOS[1:]},
                    {"type": "string", "pattern": r"^class_share:[A-Za-z0-9_.:/+-]{1,128}$"},
                ]
            },
            {"type": "number", "minimum": 0, "maximum": 1},
        ),
        _condition(
            {
                "oneOf": [
                    {"const": "throughput"},
                    {"type": "string", "pattern": r"^drift_score:[A-Za-z0-9_.:/+-]{1,128}$"},
                ]
            },
            {"type": "number", "minimum": 0, "maximum": MAX_THRESHOLD},
        ),
        {
            **_condition(
                {"enum": ["avg_confidence", "p99_latency_ms", "error_rate", "throughput", "no_detection_rate"]},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
                window=_ANOMALY_WINDOW,
                anomaly={
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["method"],
                            "additionalProperties": False,
                            "properties": {"method": {"const": "zscore"}, "baseline": {"enum": ["7d", "14d", "28d"]}},
                        },
                        {
                            "type": "object",
                            "required": ["method"],
                            "additionalProperties": False,
                            "properties": {"method": {"const": "week_ago"}},
                        },
                    ]
                },
            ),
            "required": ["metric", "operator", "threshold", "window", "anomaly"],
        },
    ],
}

_ALERT_CREATE: Final = {
    "type": "object",
    "required": ["name", "condition"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][^{}\"'\\\u0000-\u001f\u007f]{0,99}$"},
        "condition": _CONDITION,
        "notify": {
            "type": "array",
            "maxItems": MAX_NOTIFY,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": _NOTIFY},
        },
        "per": {"enum": ["model", "version", "arm"]},
        "version": {"type": "string", "pattern": _IDENT},
        "arm": {"enum": ["a", "b"]},
        "severity": {"enum": ["info", "warning", "critical"]},
    },
}

_ALERT: Final = {
    "type": "object",
    "required": ["id", "name", "model_id", "condition", "notify", "per", "severity"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "model_id": {"type": "string"},
        "condition": {"type": "object"},
        "notify": {"type": "array", "items": {"type": "string"}},
        "per": {"type": "string"},
        "severity": {"type": "string"},
    },
}

_CREATED: Final = {
    "allOf": [
        _ALERT,
        {
            "type": "object",
            "required": ["prometheus_rules", "grafana_rule_uid", "grafana"],
            "properties": {
                "prometheus_rules": {"type": "object"},
                "grafana_rule_uid": {"type": "string"},
                "grafana": {"type": ["object", "null"], "description": "the push to Grafana, when configured"},
            },
        },
    ]
}

_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_MODEL_ID: Final = {
    "name": "model_id",
    "in": "path",
    "required": True,
    # One path segment, not "." or "..": the validator's identifier without "/".
    "schema": {"type": "string", "pattern": f"^{MODEL_ID_PATTERN}$"},
}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS: Final = {
    "401": _answer("missing or wrong credentials", _ERROR),
    "503": _answer("detwatch.yaml is invalid, or the artifacts could not be written", _ERROR),
}

ALERT_PATHS: Final[dict[str, Any]] = {
    "/v1/models/{model_id}/alerts": {
        "post": {
            "summary": "Create (or replace, by name) an alert; regenerates rules/, grafana/ and collector/",
            "parameters": [_MODEL_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ALERT_CREATE}}},
            "responses": {
                "201": _answer("the alert, its Prometheus rule names and Grafana rule uid", _CREATED),
                "200": _answer("an alert of that name was replaced", _CREATED),
                "400": _answer("invalid definition; the error names the field and what is valid", _ERROR),
                "409": _answer("the name is taken by another model's alert (names are global)", _ERROR),
                "413": _answer("body too large", _ERROR),
                "415": _answer("not application/json", _ERROR),
                **_ERRORS,
            },
        },
        "get": {
            "summary": "The model's alerts (from detwatch.yaml and create_alert)",
            "parameters": [_MODEL_ID],
            "responses": {
                "200": _answer(
                    "alerts", {"type": "object", "properties": {"alerts": {"type": "array", "items": _ALERT}}}
                ),
                "400": _answer("not a model id", _ERROR),
                **_ERRORS,
            },
        },
    },
    "/v1/alerts/artifacts": {
        "get": {
            "summary": "Every generated file (rules/, grafana/, collector/) by relative path",
            "responses": {
                "200": _answer(
                    "files",
                    {
                        "type": "object",
                        "properties": {"files": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                ),
                **_ERRORS,
            },
        }
    },
}
