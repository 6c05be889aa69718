"""Shapes of the alert routes: an alert definition, the stored alert, the generated files.

The condition's schema is the validator's rules (:func:`detwatch.alerting.definitions.parse_alert`)
written out per metric family, so that what the document allows is accepted (the fuzz
tests send exactly that): thresholds on a mean confidence and shares lie in [0, 1],
latency quantiles in (0, the last finite latency bound], a low-confidence cut-off is a
confidence bucket bound, durations use the forms the validator accepts within its
ranges. The validator accepts a little more (e.g. ``1w`` windows); the document
describes a safe subset. A condition is one of six families, which a TypedDict cannot
say: it is declared as JSON Schema on the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.shapes._common import Object
from detwatch_instrumentation import semconv

__all__ = [
    "CROSS_FIELD",
    "EMAIL_PATTERN",
    "MAX_MIN_IMAGES",
    "MAX_NOTIFY",
    "MAX_THRESHOLD",
    "SLACK_PATTERN",
    "WEBHOOK_PATTERN",
    "Alert",
    "AlertArtifacts",
    "AlertCreate",
    "AlertCreated",
    "AlertList",
]

EMAIL_PATTERN: Final = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
"""An email address as notify targets take it (ASCII: one reading in Python and in JSON Schema)."""
WEBHOOK_PATTERN: Final = r"https?://[!#-&(-~]{1,2000}"
"""An http(s) URL of printable ASCII without spaces or quotes."""
SLACK_PATTERN: Final = r"#[a-z0-9_-][a-z0-9._-]{0,79}"
MAX_MIN_IMAGES: Final = 1_000_000_000
MAX_NOTIFY: Final = 20
"""Most notify targets of one alert."""
MAX_THRESHOLD: Final = 1e12
"""Largest threshold of a metric without a natural bound (throughput, a drift score)."""
"""Most images a window may be required to hold (more than any window of any deployment sees)."""

_IDENT: Final = r"^[A-Za-z0-9_.:/+-]{1,128}$"
# Windows from 1m to 999m, 1h to 99h, 1d to 31d: all inside the validator's 1m..31d.
_WINDOW: Final = r"^(?:[1-9][0-9]{0,2}m|[1-9][0-9]?h|[1-9]d|[12][0-9]d|3[01]d)$"
# Anomaly windows up to 16.6 h, so that a 7 d baseline is at least four windows.
_ANOMALY_WINDOW: Final = r"^(?:[1-9][0-9]{0,2}m|[1-9]h|1[0-6]h)$"
_FOR: Final = r"^(?:[0-9]{1,3}[sm]|[1-9]h|1[0-9]h|2[0-4]h)$"
_NOTIFY: Final = f"^(?:email:{EMAIL_PATTERN}|slack:{SLACK_PATTERN}|webhook:{WEBHOOK_PATTERN})$"
_CONFIDENCE_BOUNDS: Final = list(semconv.DETECTION_CONFIDENCE.bounds or ())
_LATENCY_BOUNDS_MS: Final = [round(b * 1000, 6) for b in semconv.INFERENCE_DURATION.bounds or ()]
_RATIOS: Final = ["low_confidence_rate", "no_detection_rate", "error_rate", "feedback_accuracy", "estimated_precision"]
_ESTIMATED_PRECISION: Final = r"^estimated_precision(?::[A-Za-z0-9_.:/+-]{1,128})?$"
_SHARE: Final = {"type": "number", "minimum": 0, "maximum": 1}


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


_ANOMALY: Final = {
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
}

_CONDITION: Final[dict[str, Any]] = {
    "oneOf": [
        _condition({"const": "avg_confidence"}, _SHARE),
        _condition(
            {"enum": ["p50_latency_ms", "p95_latency_ms", "p99_latency_ms"]},
            {"type": "number", "exclusiveMinimum": 0, "maximum": max(_LATENCY_BOUNDS_MS)},
        ),
        _condition({"const": "low_confidence_rate"}, _SHARE, below={"enum": _CONFIDENCE_BOUNDS}),
        _condition(
            {
                "oneOf": [
                    {"enum": _RATIOS[1:]},
                    {"type": "string", "pattern": r"^class_share:[A-Za-z0-9_.:/+-]{1,128}$"},
                    {"type": "string", "pattern": r"^estimated_precision:[A-Za-z0-9_.:/+-]{1,128}$"},
                ]
            },
            _SHARE,
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
                anomaly=_ANOMALY,
            ),
            "required": ["metric", "operator", "threshold", "window", "anomaly"],
        },
    ],
}

Condition = Annotated[
    Object,
    msgspec.Meta(
        description="The seed's condition, e.g. {metric: avg_confidence, operator: lt, threshold: 0.7, window: 1h}",
        extra_json_schema=_CONDITION,
    ),
]
"""One of six metric families (a JSON object on the wire; :func:`~detwatch.alerting.definitions.parse_alert`)."""


class AlertCreate(TypedDict):
    """An alert to create, or to replace by name."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][^{}\"'\\\u0000-\u001f\u007f]{0,99}$")]
    condition: Condition
    notify: NotRequired[
        Annotated[
            list[Annotated[str, msgspec.Meta(pattern=_NOTIFY)]],
            msgspec.Meta(max_length=MAX_NOTIFY, extra_json_schema={"uniqueItems": True}),
        ]
    ]
    per: NotRequired[Literal["model", "version", "arm"]]
    version: NotRequired[Annotated[str, msgspec.Meta(pattern=_IDENT)]]
    arm: NotRequired[Literal["a", "b"]]
    severity: NotRequired[Literal["info", "warning", "critical"]]


class Alert(TypedDict):
    """A stored alert (from detwatch.yaml or create_alert)."""

    id: str
    name: str
    model_id: str
    condition: Object
    notify: list[str]
    per: str
    severity: str
    version: NotRequired[str]
    arm: NotRequired[str]
    resolution: NotRequired[
        Annotated[str, msgspec.Meta(description="a latency quantile read between bucket bounds: the bucket it reads")]
    ]


class PrometheusRules(TypedDict):
    """The names an alert has in the generated rule file."""

    record: str
    alert: str
    file: str


class AlertCreated(Alert):
    """The alert, its Prometheus rule names and its Grafana rule uid."""

    prometheus_rules: PrometheusRules
    grafana_rule_uid: str
    grafana: Annotated[Object | None, msgspec.Meta(description="the push to Grafana, when configured")]


class AlertList(TypedDict):
    """The model's alerts."""

    alerts: list[Alert]


class AlertArtifacts(TypedDict):
    """Every generated file (rules/, grafana/, collector/) by relative path."""

    files: dict[str, str]


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "AlertCreate": {
        "additionalProperties": False,
        # The quality gauges carry no A/B arm: an arm filter or per-arm alert on them is refused.
        "if": {
            "required": ["condition"],
            "properties": {"condition": {"properties": {"metric": {"pattern": _ESTIMATED_PRECISION}}}},
        },
        "then": {
            "not": {"anyOf": [{"required": ["arm"]}, {"required": ["per"], "properties": {"per": {"const": "arm"}}}]}
        },
    }
}
