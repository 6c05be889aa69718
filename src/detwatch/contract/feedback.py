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
from typing import Any, Literal

from detwatch.contract.predictions import MAX_DETECTIONS, PredictionError, json_integer, parse_box, parse_time
from detwatch.contract.textfields import name_problem

__all__ = ["FEEDBACK_TYPES", "FeedbackInput", "FeedbackType", "parse_feedback"]

FeedbackType = Literal["correct", "wrong_label", "wrong_box", "false_positive", "missed_object"]
FEEDBACK_TYPES: tuple[FeedbackType, ...] = ("correct", "wrong_label", "wrong_box", "false_positive", "missed_object")


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


# fullmatch, not match with "$": "$" also matches before a trailing newline.
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
MAX_TEXT = 4096


def _text(obj: Mapping[str, Any], key: str, limit: int = 256) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PredictionError(key, "must be a non-empty string")
    problem = name_problem(value)
    if problem is not None:
        raise PredictionError(key, problem)
    if len(value) > limit:
        raise PredictionError(key, f"longer than {limit} characters")
    return value


def parse_feedback(obj: Any, *, idempotency_key: str | None = None) -> FeedbackInput:
    """Validate one feedback item; raises :class:`PredictionError` naming the field."""
    if not isinstance(obj, Mapping):
        raise PredictionError("feedback", "must be a JSON object")
    kind = obj.get("type")
    if kind not in FEEDBACK_TYPES:
        raise PredictionError("type", f"must be one of {', '.join(FEEDBACK_TYPES)}")
    feedback_type: FeedbackType = kind
    prediction_id = _text(obj, "prediction_id")
    trace_id = _text(obj, "trace_id")
    span_id = _text(obj, "span_id")
    if trace_id is not None and not _HEX32.fullmatch(trace_id):
        raise PredictionError("trace_id", "must be 32 lowercase hex digits")
    if span_id is not None and not _HEX16.fullmatch(span_id):
        raise PredictionError("span_id", "must be 16 lowercase hex digits")
    if prediction_id is None and (trace_id is None or span_id is None):
        raise PredictionError("prediction_id", "name the prediction: prediction_id, or trace_id and span_id")
    raw_index = obj.get("detection_index")
    index = None if raw_index is None else json_integer(raw_index)
    if raw_index is not None and (index is None or not 0 <= index < MAX_DETECTIONS):
        raise PredictionError("detection_index", f"must be an integer from 0 to {MAX_DETECTIONS - 1}")
    corrected_class = _text(obj, "corrected_class")
    raw_box = obj.get("corrected_box")
    corrected_box: tuple[float, float, float, float] | None = None
    if raw_box is not None:
        corrected_box = parse_box(raw_box, "corrected_box")
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
        detection_index=index,
        corrected_class=corrected_class,
        corrected_box=corrected_box,
        reviewer=_text(obj, "reviewer"),
        comment=_text(obj, "comment", MAX_TEXT),
        idempotency_key=idempotency_key,
        time_unix_nano=stamp,
    )
