"""Shapes of ``GET /v1/models/{model_id}/quality``: model quality scored on reviewed labels.

The window grammar is :func:`detwatch.quality.parse_window`'s; its pattern lives here,
on the wire, and the parser imports it. A figure that cannot be computed (precision
without detections, recall or AP without reviewer boxes) is null, as are the ends of
an interval without resamples to take them from.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypedDict

import msgspec

__all__ = [
    "QUALITY_STATUSES",
    "WINDOW_PATTERN",
    "EstimatedPrecision",
    "EstimatedPrecisions",
    "LabelFreeRecall",
    "MissedObjectFeedback",
    "QualityMetric",
    "QualityMetrics",
    "QualityReport",
    "QualitySample",
    "QualityStatus",
]

WINDOW_PATTERN: Final = r"^(?:last +)?[1-9][0-9]{0,5} *(?:m|min|h|d|w)$"
"""A window ending now: ``7d``, ``24h``, ``last 2w`` (minutes, hours, days, weeks)."""

QualityStatus = Literal["ok", "insufficient_data"]
QUALITY_STATUSES: Final[tuple[QualityStatus, ...]] = ("ok", "insufficient_data")

_Share = Annotated[float, msgspec.Meta(ge=0, le=1)] | None


class QualityMetric(TypedDict):
    """An estimate, its bootstrap interval (95 %) and the labelled images it rests on."""

    estimate: _Share
    ci: Annotated[list[_Share], msgspec.Meta(min_length=2, max_length=2, description="[low, high]")]
    n_images: Annotated[int, msgspec.Meta(ge=0)]


class QualityMetrics(TypedDict):
    """Precision and recall at IoU 0.5, AP50, and AP averaged over IoU .50:.95 (COCO's)."""

    precision: QualityMetric
    recall: QualityMetric
    ap50: QualityMetric
    ap: QualityMetric


class QualitySample(TypedDict):
    """The figures of one sample of labelled images."""

    status: QualityStatus
    n_images: Annotated[int, msgspec.Meta(ge=0)]
    classes: dict[str, QualityMetrics]
    overall: QualityMetrics


class EstimatedPrecision(TypedDict):
    """Label-free expected precision of the period's detections (the calibration applied to its histograms)."""

    estimate: _Share
    ci: Annotated[list[_Share], msgspec.Meta(min_length=2, max_length=2, description="[low, high]")]
    expected_false_positives: Annotated[float, msgspec.Meta(ge=0)] | None
    detections: Annotated[int, msgspec.Meta(ge=0)]
    trusted: bool
    reason: str | None
    n_images: Annotated[int, msgspec.Meta(ge=0, description="labelled images the calibration rests on")]


class EstimatedPrecisions(TypedDict):
    """Per class and overall; recall has no label-free estimate (see ``recall_note``)."""

    classes: dict[str, EstimatedPrecision]
    overall: EstimatedPrecision
    recall_note: str


class MissedObjectFeedback(TypedDict):
    """``missed_object`` feedback posts on the model in the period, per image it predicted then."""

    count: Annotated[int, msgspec.Meta(ge=0, description="missed_object posts received in the period")]
    predictions: Annotated[int, msgspec.Meta(ge=0, description="images the model predicted in the period")]
    rate: Annotated[float, msgspec.Meta(ge=0, description="count / predictions; null without predictions")] | None


class LabelFreeRecall(TypedDict):
    """Recall without labels: no estimate (a detector's output says nothing of what it missed), and why."""

    estimate: Annotated[None, msgspec.Meta(description="always null: recall has no label-free estimate")]
    reason: str
    missed_object_feedback: MissedObjectFeedback


class QualityReport(TypedDict):
    """Production estimates (labelled images weighted by inverse inclusion probability), feedback apart."""

    model_id: str
    model_version: str | None
    ab_variant: Annotated[
        Literal["a", "b"] | None, msgspec.Meta(description="the A/B arm the figures are of; null: every item")
    ]
    period: str
    since_unix_nano: int
    until_unix_nano: int
    status: QualityStatus
    n_images: Annotated[int, msgspec.Meta(ge=0, description="labelled images of the policy's sample")]
    classes: dict[str, QualityMetrics]
    overall: QualityMetrics
    feedback_flagged: Annotated[
        QualitySample, msgspec.Meta(description="items only feedback flagged: not a probability sample, unweighted")
    ]
    without_probability: Annotated[
        int,
        msgspec.Meta(ge=0, description="labelled items flagged before inclusion probabilities were kept (left out)"),
    ]
    estimated_precision: Annotated[
        EstimatedPrecisions,
        msgspec.Meta(description="all the period's detections, without labels: the calibration on its histograms"),
    ]
    label_free_recall: Annotated[
        LabelFreeRecall,
        msgspec.Meta(description="no estimate; the period's missed_object feedback per predicted image beside it"),
    ]
