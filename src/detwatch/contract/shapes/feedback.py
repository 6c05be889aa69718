"""Shapes of ``POST /v1/feedback``: one feedback item or a batch, and the stored records.

:func:`detwatch.contract.feedback.parse_feedback` is the validator; the enum of types
is :data:`detwatch.contract.feedback.FeedbackType`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_DETECTIONS
from detwatch.contract.shapes._common import (
    MAX_BATCH,
    TIME_DESCRIPTION,
    Box,
    Hex16,
    Hex32,
    Name,
    RejectedItem,
    Time,
    present,
)
from detwatch.contract.textfields import MAX_TEXT, NAME_PATTERN

__all__ = [
    "CROSS_FIELD",
    "FEEDBACK_TYPES",
    "Feedback",
    "FeedbackBatch",
    "FeedbackBatchResult",
    "FeedbackRecord",
    "FeedbackType",
]

FeedbackType = Literal["correct", "wrong_label", "wrong_box", "false_positive", "missed_object"]
FEEDBACK_TYPES: Final[tuple[FeedbackType, ...]] = (
    "correct",
    "wrong_label",
    "wrong_box",
    "false_positive",
    "missed_object",
)

_Comment = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=MAX_TEXT, pattern=NAME_PATTERN, description="not blank: a visible character, no NUL"
    ),
]
_FeedbackTime = Annotated[Time, msgspec.Meta(description=f"{TIME_DESCRIPTION}; defaults to now")]


class Feedback(TypedDict):
    """Names the prediction (prediction_id, or trace_id and span_id) and what was wrong: wrong_label needs
    corrected_class, wrong_box corrected_box, missed_object both. Optional fields may be null, meaning absent."""

    type: FeedbackType
    prediction_id: NotRequired[Name | None]
    trace_id: NotRequired[Hex32 | None]
    span_id: NotRequired[Hex16 | None]
    detection_index: NotRequired[Annotated[int, msgspec.Meta(ge=0, le=MAX_DETECTIONS - 1)] | None]
    corrected_class: NotRequired[Name | None]
    corrected_box: NotRequired[Box | None]
    reviewer: NotRequired[Name | None]
    comment: NotRequired[_Comment | None]
    time: NotRequired[_FeedbackTime | None]


class FeedbackBatch(TypedDict):
    """Each item is validated on its own: invalid ones are named in the answer, the others stored."""

    feedback: Annotated[list[Feedback], msgspec.Meta(max_length=MAX_BATCH)]


class FeedbackRecord(TypedDict):
    """A stored feedback item; ``model_id`` is known once the prediction was ingested."""

    id: str
    type: FeedbackType
    prediction_id: str | None
    trace_id: NotRequired[str | None]
    span_id: NotRequired[str | None]
    detection_index: NotRequired[int | None]
    corrected_class: NotRequired[str | None]
    corrected_box: NotRequired[list[float] | None]
    reviewer: NotRequired[str | None]
    comment: NotRequired[str | None]
    model_id: NotRequired[str | None]
    duplicate: Annotated[bool, msgspec.Meta(description="true when the idempotency key was seen before")]


class FeedbackBatchResult(TypedDict):
    """The stored items of a batch, and the ones not stored."""

    accepted: list[FeedbackRecord]
    rejected: Annotated[
        list[RejectedItem], msgspec.Meta(description="the items not stored, each with the field to fix")
    ]


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "Feedback": {
        "anyOf": [present("prediction_id"), present("trace_id", "span_id")],
        "allOf": [
            {
                "if": {"properties": {"type": {"enum": ["wrong_label", "missed_object"]}}},
                "then": present("corrected_class"),
            },
            {
                "if": {"properties": {"type": {"enum": ["wrong_box", "missed_object"]}}},
                "then": present("corrected_box"),
            },
        ],
    },
}
"""Which prediction (by id, or by trace and span), and what each type of feedback needs."""
