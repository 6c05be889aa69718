"""Shapes of ``POST /v1/models/{model_id}/drift``: the request and the report.

The period grammar is :func:`detwatch.drift.parse_periods`'s; its pattern lives here,
on the wire, and the parser imports it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.contract.shapes._common import Object

__all__ = [
    "AB_VARIANTS",
    "CROSS_FIELD",
    "DATE_PATTERN",
    "MAX_PERIOD_LENGTH",
    "PERIOD_PATTERN",
    "DriftReport",
    "DriftRequest",
]

# ASCII digits and plain spaces only, without case folding: the OpenAPI pattern
# (an ECMA regular expression) must accept exactly the same strings.
DATE_PATTERN: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
PERIOD_PATTERN: Final = (
    rf"^(?:{DATE_PATTERN}:{DATE_PATTERN}|[^/]+/[^/]+|(?:last|previous) +[0-9]{{1,6}} *(?:m|min|h|d|w))$"
)
"""Every period :func:`detwatch.drift.parse_periods` may accept matches this."""
MAX_PERIOD_LENGTH: Final = 200

AbVariant = Literal["a", "b", ""]
AB_VARIANTS: Final[tuple[AbVariant, ...]] = ("a", "b", "")
"""``ab_variant`` filters: an arm, or "" for traffic outside an A/B test."""

_Period = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PERIOD_LENGTH, pattern=PERIOD_PATTERN)]
_Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
_Count = Annotated[int, msgspec.Meta(ge=1, le=2**31)]


class DriftRequest(TypedDict):
    """Two periods of the model's stored aggregates to compare, optional filters, and options of the verdict
    (defaults in the detwatch.drift documentation). Periods: YYYY-MM-DD:YYYY-MM-DD (whole days, both included),
    an ISO 8601 interval start/end of dates or date-times (a date-time end is excluded), 'last 24h' (units m, h,
    d, w) or 'previous 7d' (the window just before the other period); dates must exist and a period must end
    after it starts."""

    reference_period: _Period
    current_period: _Period
    model_version: NotRequired[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)] | None]
    ab_variant: NotRequired[AbVariant | None]
    alpha: NotRequired[Annotated[float, msgspec.Meta(gt=0, lt=1)]]
    min_images: NotRequired[_Count]
    min_detections: NotRequired[_Count]
    min_jensen_shannon: NotRequired[_Share]
    min_ks: NotRequired[_Share]
    min_cohen_h: NotRequired[Annotated[float, msgspec.Meta(ge=0, le=math.pi)]]
    min_rate_ratio: NotRequired[Annotated[float, msgspec.Meta(ge=1, le=1000)]]
    intra_image_correlation: NotRequired[
        Annotated[
            float,
            msgspec.Meta(
                ge=0,
                le=1,
                description="a floor under the intra-image correlation measured from the stored per-image sums "
                "(default 0: the measured one alone)",
            ),
        ]
    ]


class DriftReport(TypedDict):
    """class_drift: Jensen-Shannon distance (base 2) of the class mix; confidence_drift and count_drift: KS
    statistics of all confidences and of detections per image (0..1, null without data). significant_drift: some
    test is significant after Holm's correction and its effect reaches its floor."""

    model_id: str
    status: Literal["drift", "no_drift", "insufficient_data"]
    significant_drift: bool
    class_drift: float | None
    confidence_drift: float | None
    count_drift: float | None
    affected_classes: list[str]
    new_classes: list[str]
    vanished_classes: list[str]
    reference: Object
    current: Object
    classes: list[Object]
    tests: list[Object]
    insufficient: NotRequired[list[str]]
    correction: NotRequired[str]
    config: NotRequired[Object]


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {"DriftRequest": {"additionalProperties": False}}
