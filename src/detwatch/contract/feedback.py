"""Feedback webhook bodies: validated into :class:`FeedbackInput`.

A feedback item names the prediction (``prediction_id``, or the span's ``trace_id``
and ``span_id``, which the decorator's events and spans share) and says what was
wrong. What each type requires:

================== ======================================================
``correct``        nothing more (``detection_index`` optional)
``wrong_label``    ``corrected_class`` (the right class)
``wrong_box``      ``corrected_box`` ([x1, y1, x2, y2] pixels)
``false_positive`` nothing more (``detection_index`` says which)
``missed_object``  ``corrected_class`` and ``corrected_box`` of the missed object
================== ======================================================

``reviewer`` and ``comment`` are optional everywhere; ``time`` defaults to when it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from detwatch.contract.predictions import PredictionError, parse_box, parse_time
from detwatch.contract.shapes.conform import conform
from detwatch.contract.shapes.feedback import FEEDBACK_TYPES, Feedback, FeedbackType
from detwatch.contract.textfields import MAX_TEXT, name_problem

__all__ = ["FEEDBACK_TYPES", "MAX_TEXT", "FeedbackInput", "FeedbackType", "parse_feedback"]


@dataclass(frozen=True)
class FeedbackInput:
    """One feedback item as the webhook received it (already validated)."""

    type: FeedbackType
    prediction_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    detection_index: int | None = None
    corrected_class: str | None = None
    corrected_box: tuple[float, float, float, float] | None = None
    reviewer: str | None = None
    comment: str | None = None
    idempotency_key: str | None = None
    time_unix_nano: int = 0
    """When the feedback was given; 0 means when it is stored."""


_HEX32: Final = re.compile(r"[0-9a-f]{32}")
_HEX16: Final = re.compile(r"[0-9a-f]{16}")


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    """A text field the shape already bounded; a name must also hold a visible character."""
    value: str | None = obj.get(key)
    if value is not None and (problem := name_problem(value)) is not None:
        # The exact rule: the shape's pattern ends in JSON Schema's "$", which lets a final newline pass.
        raise PredictionError(key, problem)
    return value


def parse_feedback(obj: Any, *, idempotency_key: str | None = None) -> FeedbackInput:
    """Validate one feedback item; raises :class:`PredictionError` naming the field.

    The :class:`~detwatch.contract.shapes.feedback.Feedback` shape checks types, bounds,
    the hex ids and the type's enum; then come the rules across fields (which
    prediction; what each type needs, as ``CROSS_FIELD`` declares them), a box's corner
    order and the time's calendar.
    """
    if not isinstance(obj, Mapping):
        raise PredictionError("feedback", "must be a JSON object")
    conform(obj, Feedback)
    feedback_type: FeedbackType = obj["type"]
    prediction_id = _text(obj, "prediction_id")
    trace_id: str | None = obj.get("trace_id")
    span_id: str | None = obj.get("span_id")
    # The shape's patterns end in JSON Schema's "$", which lets a final newline pass; these are exact.
    if trace_id is not None and not _HEX32.fullmatch(trace_id):
        raise PredictionError("trace_id", "must be 32 lowercase hex digits")
    if span_id is not None and not _HEX16.fullmatch(span_id):
        raise PredictionError("span_id", "must be 16 lowercase hex digits")
    if prediction_id is None and (trace_id is None or span_id is None):
        raise PredictionError("prediction_id", "name the prediction: prediction_id, or trace_id and span_id")
    raw_index = obj.get("detection_index")
    corrected_class = _text(obj, "corrected_class")
    raw_box = obj.get("corrected_box")
    corrected_box = None if raw_box is None else parse_box(raw_box, "corrected_box")
    if feedback_type in ("wrong_label", "missed_object") and corrected_class is None:
        raise PredictionError("corrected_class", f"is required for {feedback_type}")
    if feedback_type in ("wrong_box", "missed_object") and corrected_box is None:
        raise PredictionError("corrected_box", f"is required for {feedback_type}")
    # Absent: 0, which storage reads as "when stored"; a retry without a time is then the same item.
    stamp = parse_time(obj["time"]) if obj.get("time") is not None else 0
    return FeedbackInput(
        type=feedback_type,
        prediction_id=prediction_id,
        trace_id=trace_id,
        span_id=span_id,
        detection_index=None if raw_index is None else int(raw_index),
        corrected_class=corrected_class,
        corrected_box=corrected_box,
        reviewer=_text(obj, "reviewer"),
        comment=_text(obj, "comment"),
        idempotency_key=idempotency_key,
        time_unix_nano=stamp,
    )
