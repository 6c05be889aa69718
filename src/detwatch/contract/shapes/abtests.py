"""Shapes of the A/B test routes: the test, its creation and its results.

The metric names live here, on the wire; :mod:`detwatch.abtest.config` imports them.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.contract.shapes._common import Name, Object

__all__ = [
    "CROSS_FIELD",
    "DIRECTED_METRICS",
    "METRICS",
    "ABTest",
    "ABTestConfig",
    "ABTestCreate",
    "ABTestList",
    "ABTestResults",
    "Metric",
    "MinEffect",
]

Metric = Literal["confidence", "latency", "feedback_score", "detections_per_image", "empty_image_rate", "class_mix"]
METRICS: Final[tuple[Metric, ...]] = (
    "confidence",
    "latency",
    "feedback_score",
    "detections_per_image",
    "empty_image_rate",
    "class_mix",
)
DirectedMetric = Literal["confidence", "latency", "feedback_score"]
DIRECTED_METRICS: Final[tuple[DirectedMetric, ...]] = ("confidence", "latency", "feedback_score")
"""Metrics with a better direction: the ones that may come first in ``metrics`` (and decide the verdict)."""

_Effect = Annotated[float, msgspec.Meta(gt=0)]
_Version = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class MinEffect(TypedDict, total=False):
    """The smallest difference worth detecting, per metric."""

    confidence: _Effect
    latency: _Effect
    feedback_score: _Effect
    detections_per_image: _Effect
    empty_image_rate: _Effect
    class_mix: _Effect


class ABTestConfig(TypedDict, total=False):
    """Every field optional (a default each)."""

    traffic_split: Annotated[float, msgspec.Meta(gt=0, lt=1)]
    metrics: Annotated[
        list[Metric],
        msgspec.Meta(
            min_length=1,
            extra_json_schema={"uniqueItems": True, "prefixItems": [{"enum": list(DIRECTED_METRICS)}]},
        ),
    ]
    duration_days: Annotated[float, msgspec.Meta(gt=0, le=366)]
    alpha: Annotated[float, msgspec.Meta(gt=0, le=0.5)]
    min_effect: MinEffect
    min_samples: Annotated[int, msgspec.Meta(ge=2)]
    min_feedback: Annotated[int, msgspec.Meta(ge=2)]
    model_a_version: _Version | None
    model_b_version: _Version | None


class ABTestCreate(TypedDict):
    """The user guide's create_ab_test arguments. config: traffic_split (share of keys to B, 0 < split < 1), metrics
    (the first, one of confidence, latency, feedback_score, decides the verdict), duration_days, and optionally alpha,
    min_effect (per metric), min_samples, min_feedback, model_a_version, model_b_version. start back-dates the test
    (RFC 3339)."""

    name: Name
    model_a_id: Name
    model_b_id: Name
    config: NotRequired[Annotated[ABTestConfig | None, msgspec.Meta(description="null or absent: every default")]]
    start: NotRequired[
        Annotated[
            str,
            msgspec.Meta(
                pattern=r"^(19[7-9][0-9]|2[01][0-9][0-9])-",
                description="RFC 3339, years 1970 to 2199",
                extra_json_schema={"format": "date-time"},
            ),
        ]
        | None
    ]


class ABTest(TypedDict):
    """An A/B test; traffic_split (0 once stopped) and salt are what a router needs."""

    id: str
    name: str
    model_a_id: str
    model_b_id: str
    config: Object
    status: Literal["running", "stopped"]
    start_unix_nano: NotRequired[int]
    end_unix_nano: NotRequired[int]
    traffic_split: float
    salt: str


class ABTestList(TypedDict):
    """Every A/B test, newest first."""

    ab_tests: list[ABTest]


class ABTestResults(TypedDict):
    """Per arm (model_a, model_b): images, avg_confidence, latency_ms p50/p95/p99, detections per image, empty-image
    rate, feedback score and count, class mix. p_value: the primary metric's always-valid (mSPRT) p-value;
    p_value_fixed_horizon is valid only when read once at the planned end. verdict: running, b_better, a_better,
    no_difference or inconclusive."""

    id: str
    name: NotRequired[str]
    status: NotRequired[Literal["running", "completed"]]
    start_unix_nano: NotRequired[int]
    end_unix_nano: NotRequired[int]
    elapsed_days: NotRequired[float]
    config: NotRequired[Object]
    model_a: Object
    model_b: Object
    primary_metric: NotRequired[str]
    p_value: float | None
    p_value_method: NotRequired[str]
    p_value_fixed_horizon: NotRequired[float | None]
    p_values_corrected: NotRequired[Object]
    comparisons: Object
    verdict: Literal["running", "b_better", "a_better", "no_difference", "inconclusive"]
    verdict_reason: NotRequired[str]
    valid: NotRequired[bool]
    arms_by: NotRequired[
        Annotated[str, msgspec.Meta(description="how traffic was told apart: by ab_variant tag or by model")]
    ]
    sample_ratio: Object
    power: Object


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "ABTestConfig": {"additionalProperties": False},
    "MinEffect": {"additionalProperties": False},
}
