"""A training job's gate: register the new version only if it is not worse than its base by more than D.

A job created with ``gate={"metric": "ap50", "max_drop": 0.02}`` is judged when its
trainer reports success. The images are the base model's labelled images of the
job's dataset (each image key once, its first labelled item in queue order): the
reviewer's label is the truth, the base's detections are the flagged item's own
(what the base model, whichever version ran then, detected in production), and the
candidate's are what the trainer posted for that key
(``POST /v1/training-jobs/{id}/predictions``). Only images with both are paired;
:func:`._comparison.compare_versions` scores them, base as A, candidate as B.

The rule reads the point difference, candidate minus base: below ``-max_drop`` the
job is ``gated`` (reason ``worse``) and no version is registered. The paired
interval is reported beside it, not used: a gate that waited for significance would
let through every regression too small for the labelled sample to prove.
Fewer paired images than ``min_images`` (:data:`._estimates.MIN_IMAGES`), or a metric
that is undefined on them (no reviewer boxes for recall, no detections for
precision), gate the job with reason ``insufficient_data``: a gate exists to stop an
unproven model, so missing evidence is not a pass. ``gated`` is terminal, like
``failed``: the job document says why (``gate_result``), and a new job tries again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from detwatch.storage.protocols import ReviewStorage
from detwatch.storage.records import FlaggedItemRecord, TrainingJobRecord

from ._comparison import PairedImage, compare_versions
from ._estimates import MIN_IMAGES, RESAMPLES
from ._records import detections_of, labels_of
from ._version_comparison import labelled_items_of

__all__ = [
    "GateReason",
    "GateStorage",
    "GateVerdict",
    "base_image_keys",
    "gate_images",
    "judge_job_gate",
    "judge_training_gate",
]

GateReason = Literal["not_worse", "worse", "insufficient_data"]


@dataclass(frozen=True)
class GateVerdict:
    """Whether the candidate passed, why, and the figures the decision read (NaN where undefined)."""

    passed: bool
    reason: GateReason
    message: str
    metric: str
    max_drop: float
    base: float
    candidate: float
    difference: float
    ci: tuple[float, float]
    n_images: int
    labelled_images: int
    min_images: int

    def as_record(self) -> dict[str, Any]:
        """The verdict as the job document keeps it (the ``GateResult`` shape; NaN written null)."""

        def finite(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "passed": self.passed,
            "reason": self.reason,
            "message": self.message,
            "metric": self.metric,
            "max_drop": self.max_drop,
            "base": finite(self.base),
            "candidate": finite(self.candidate),
            "difference": finite(self.difference),
            "ci": [finite(self.ci[0]), finite(self.ci[1])],
            "n_images": self.n_images,
            "labelled_images": self.labelled_images,
            "min_images": self.min_images,
        }


def gate_images(
    labelled: Iterable[FlaggedItemRecord], candidate: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[list[PairedImage], int]:
    """The paired images (in the order of their keys) and how many labelled image keys there were."""
    truth: dict[str, FlaggedItemRecord] = {}
    for item in labelled:
        key = item.image.key
        if key and key not in truth:
            truth[key] = item
    pairs = [
        PairedImage(key, labels_of(item), detections_of(item.detections), detections_of(candidate[key]))
        for key, item in sorted(truth.items())
        if key in candidate
    ]
    return pairs, len(truth)


def judge_training_gate(
    images: Sequence[PairedImage],
    *,
    metric: str,
    max_drop: float,
    labelled_images: int | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
) -> GateVerdict:
    """Judge the candidate (``detections_b``) against its base (``detections_a``) on ``images``.

    ``ValueError`` naming ``metric`` or ``max_drop`` when the rule is not one.
    """
    if metric not in ("precision", "recall", "ap50", "ap"):
        raise ValueError(f"metric: must be precision, recall, ap50 or ap, not {metric!r}")
    if not 0.0 <= max_drop <= 1.0:
        raise ValueError(f"max_drop: must be in [0, 1], not {max_drop!r}")
    comparison = compare_versions(images, resamples=resamples, seed=seed, min_images=min_images)
    figure = getattr(comparison.overall, metric)
    n = comparison.n_images
    reason: GateReason
    if comparison.status == "insufficient_data":
        reason = "insufficient_data"
        message = f"{n} labelled images with the candidate's detections, fewer than {min_images}"
    elif math.isnan(figure.difference):
        reason = "insufficient_data"
        message = f"{metric} is undefined on the {n} paired images (no boxes to score it on)"
    elif figure.difference < -max_drop:
        reason = "worse"
        message = (
            f"{metric} {figure.b:.4f} against the base's {figure.a:.4f} on {n} images: "
            f"{-figure.difference:.4f} worse, more than the allowed {max_drop:g}"
        )
    else:
        reason = "not_worse"
        message = f"{metric} {figure.b:.4f} against the base's {figure.a:.4f} on {n} images: within {max_drop:g}"
    return GateVerdict(
        passed=reason == "not_worse",
        reason=reason,
        message=message,
        metric=metric,
        max_drop=max_drop,
        base=figure.a,
        candidate=figure.b,
        difference=figure.difference,
        ci=figure.ci,
        n_images=n,
        labelled_images=len(images) if labelled_images is None else labelled_images,
        min_images=min_images,
    )


class GateStorage(ReviewStorage, Protocol):
    """What judging a job reads: its dataset's labelled items and the candidate's stored detections."""


def base_image_keys(storage: GateStorage, job: TrainingJobRecord) -> set[str]:
    """The keys of the base model's labelled images in the job's dataset: what its candidate may predict on."""
    if job.base_model_id is None:
        return set()
    return {item.image.key for item in labelled_items_of(storage, job.dataset_id, job.base_model_id) if item.image.key}


def judge_job_gate(
    storage: GateStorage, job: TrainingJobRecord, *, resamples: int = RESAMPLES, min_images: int = MIN_IMAGES
) -> GateVerdict:
    """Judge ``job``'s gate on its base model's labelled images (a job without a gate or base: ``ValueError``)."""
    if job.gate is None or job.base_model_id is None:
        raise ValueError("job: has no gate (or no base model to judge against)")
    labelled = labelled_items_of(storage, job.dataset_id, job.base_model_id)
    pairs, keys = gate_images(labelled, storage.training_job_detections(job.id))
    return judge_training_gate(
        pairs,
        metric=str(job.gate["metric"]),
        max_drop=float(job.gate["max_drop"]),
        labelled_images=keys,
        resamples=resamples,
        min_images=min_images,
    )
