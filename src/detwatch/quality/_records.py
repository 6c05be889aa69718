"""Labelled review items as the scoring's images: the policy's sample and the feedback-flagged apart."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from detwatch.storage.records import FlaggedItemRecord
from detwatch_instrumentation.flagging import FEEDBACK_REASON_PREFIX

from ._matching import Detection, GroundTruth, LabelledImage

__all__ = ["LabelledItems", "detections_of", "labelled_images", "labels_of"]


@dataclass(frozen=True)
class LabelledItems:
    """The labelled items of a model, split by how they reached the queue."""

    sampled: list[tuple[LabelledImage, float]]
    """Flagged by the policy: each with the chance it was selected."""
    feedback_flagged: list[LabelledImage]
    """Flagged only by feedback: no probability sample."""
    without_probability: int
    """Labelled items flagged by the policy before inclusion probabilities were stored (left out)."""


def _box(value: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


def detections_of(detections: Iterable[Mapping[str, Any]]) -> tuple[Detection, ...]:
    """Stored detections (``{"class", "confidence", "box"}``) as the scoring's."""
    return tuple(Detection(str(d["class"]), float(d["confidence"]), _box(d["box"])) for d in detections)


def labels_of(record: FlaggedItemRecord) -> tuple[GroundTruth, ...]:
    """The reviewer's boxes of an item (none when unlabelled)."""
    return tuple(GroundTruth(str(g["class"]), _box(g["box"])) for g in record.label or ())


def _image(record: FlaggedItemRecord) -> LabelledImage:
    return LabelledImage(record.prediction_id, detections_of(record.detections), labels_of(record))


def labelled_images(records: Iterable[FlaggedItemRecord]) -> LabelledItems:
    """The labelled ones of ``records`` (in the order given), as images to score."""
    sampled: list[tuple[LabelledImage, float]] = []
    feedback: list[LabelledImage] = []
    without = 0
    seen: set[str] = set()
    for record in records:
        # A prediction labelled in two datasets is one image of production traffic.
        if record.label is None or record.prediction_id in seen:
            continue
        seen.add(record.prediction_id)
        p = record.inclusion_probability
        if p is not None and p > 0.0:
            sampled.append((_image(record), p))
        elif any(r.startswith(FEEDBACK_REASON_PREFIX) for r in record.reasons):
            feedback.append(_image(record))
        else:
            without += 1
    return LabelledItems(sampled, feedback, without)
