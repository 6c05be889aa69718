"""Shapes of the ingest routes: ``POST /v1/predictions`` (and the event body ``/v1/logs`` carries).

The validator (:func:`detwatch.contract.predictions.parse_prediction`) decodes events
with its own msgspec structs (checking an event against this ``TypedDict`` would cost
about four times the decoding, on the path every event takes), and is the truth for what
a schema cannot say (x2 > x1, label/score/bbox aliases, RFC 3339 times). A test holds
the two together: whatever ingest accepts, this shape accepts, and ingest refuses only
for those rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_DETECTIONS, MAX_INT32, MAX_INT64, MAX_LATENCY_MS
from detwatch.contract.shapes._common import (
    MAX_BATCH,
    Box,
    Hex16,
    Hex32,
    Id,
    Line,
    Object,
    RejectedItem,
    Time,
    present,
)
from detwatch.contract.textfields import NO_NUL_PATTERN

__all__ = [
    "CROSS_FIELD",
    "Detection",
    "Prediction",
    "PredictionBatch",
    "PredictionImage",
    "PredictionResult",
    "decimal_at_most",
]


def decimal_at_most(limit: int) -> str:
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


Detection = TypedDict(
    "Detection",
    {
        "class": Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL_PATTERN, description="no NUL")],
        "confidence": Annotated[float, msgspec.Meta(ge=0, le=1)],
        "box": Box,
    },
)
Detection.__doc__ = "label, score and bbox are accepted in place of class, confidence and box."

_Dimension = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT32)]


class PredictionImage(TypedDict, total=False):
    """The image a prediction was made on (every field optional; null means absent)."""

    key: Line | None
    uri: Line | None
    width: _Dimension | None
    height: _Dimension | None


_UnixNano = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT64)]
_UnixNanoText = Annotated[
    str,
    msgspec.Meta(
        pattern=decimal_at_most(MAX_INT64),
        description="nanoseconds since the epoch; a decimal string as OTLP/JSON writes 64-bit integers",
    ),
]


class Prediction(TypedDict):
    """A prediction event (the decorator's objdet.prediction body). Needs time or time_unix_nano
    (time wins when both are given). Optional fields may be null, meaning absent."""

    prediction_id: NotRequired[Id | None]
    time: NotRequired[Time | None]
    time_unix_nano: NotRequired[_UnixNano | _UnixNanoText | None]
    model_id: Id
    model_version: NotRequired[Id | None]
    ab_variant: NotRequired[Literal["a", "b"] | None]
    latency_ms: NotRequired[Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)] | None]
    image: NotRequired[PredictionImage | None]
    trace_id: NotRequired[Hex32 | None]
    span_id: NotRequired[Hex16 | None]
    attributes: NotRequired[Object | None]
    detections: Annotated[list[Detection], msgspec.Meta(max_length=MAX_DETECTIONS)]


class PredictionBatch(TypedDict):
    """Each prediction is validated on its own: invalid ones are named in the answer, the others stored."""

    predictions: Annotated[list[Prediction], msgspec.Meta(max_length=MAX_BATCH)]


class PredictionResult(TypedDict):
    """How many were stored, how many were already there, and which were not stored."""

    accepted: Annotated[int, msgspec.Meta(ge=0)]
    duplicates: Annotated[int, msgspec.Meta(ge=0)]
    rejected: Annotated[
        list[RejectedItem], msgspec.Meta(description="the items not stored, each with the field to fix")
    ]


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "Prediction": {"anyOf": [present("time"), present("time_unix_nano")]},
}
"""Needs time or time_unix_nano, not null."""
