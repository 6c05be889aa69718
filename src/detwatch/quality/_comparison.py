"""Two model versions scored on the same labelled images: paired differences (B - A) with intervals.

The reviewer's label is the truth for both versions; what differs per image is only
what each version predicted. Scoring each version apart and subtracting would give
the right point figures but the wrong intervals: the two versions' scores move
together with the images' difficulty (a hard image is hard for both), so the
difference varies far less than either side. The bootstrap is therefore **paired**:
each resample draws images, and both versions are scored on the same drawn images
(one multinomial count matrix for both), so the interval of ``B - A`` is read off
the per-resample differences. Images where one version has no prediction cannot be
paired and are the caller's to leave out (:class:`PairedImage` holds both).

Figures are unweighted: a comparison of versions asks which is better on these
images, not what production quality is (that is :mod:`._estimates`).
``MIN_IMAGES`` is the floor below which the status is ``insufficient_data``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._estimates import CONFIDENCE, MIN_IMAGES, RESAMPLES, Status, _interval, _replicates
from ._matching import ClassMatches, Detection, GroundTruth, LabelledImage, match_images
from ._scoring import ClassScores, score

__all__ = [
    "METRICS",
    "Difference",
    "DifferenceSet",
    "PairedImage",
    "VersionComparison",
    "compare_versions",
]

METRICS = ("precision", "recall", "ap50", "ap")
"""The compared figures, in the order :func:`._estimates._replicates` lays them out."""


@dataclass(frozen=True)
class PairedImage:
    """One labelled image: the reviewer's boxes and what each of the two versions detected on it."""

    image_id: str
    labels: tuple[GroundTruth, ...]
    detections_a: tuple[Detection, ...]
    detections_b: tuple[Detection, ...]


@dataclass(frozen=True)
class Difference:
    """A figure of each version on the paired images, ``b - a``, and the paired bootstrap interval of it."""

    a: float
    b: float
    difference: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class DifferenceSet:
    """Precision and recall at IoU 0.5, AP50 and AP@[.5:.95] of one class (or overall), compared."""

    precision: Difference
    recall: Difference
    ap50: Difference
    ap: Difference


@dataclass(frozen=True)
class VersionComparison:
    """Version B against version A on ``n_images`` images both predicted."""

    status: Status
    n_images: int
    classes: Mapping[str, DifferenceSet]
    overall: DifferenceSet


def _values(scores: ClassScores | None) -> tuple[float, ...]:
    if scores is None:
        return (math.nan,) * len(METRICS)
    return tuple(float(getattr(scores, name)) for name in METRICS)


def _side(
    matches: Mapping[str, ClassMatches], counts: NDArray[np.float64], names: Sequence[str]
) -> dict[str, NDArray[np.float64]]:
    """Per class (all of ``names``, NaN where this side lacks the class) and ``"*"``: resample rows."""
    reps = _replicates(matches, counts) if counts.size else {}
    empty = np.full((counts.shape[0], len(METRICS)), math.nan)
    return {name: reps.get(name, empty) for name in [*names, "*"]}


def compare_versions(
    images: Sequence[PairedImage],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    min_images: int = MIN_IMAGES,
) -> VersionComparison:
    """Version B minus version A on ``images``, overall and per class, with paired bootstrap intervals.

    Each side's point figures are exactly :func:`~._scoring.score` of its own
    detections against the shared labels; ``seed`` fixes the resamples.
    """
    n = len(images)
    side_a = [LabelledImage(i.image_id, i.detections_a, i.labels) for i in images]
    side_b = [LabelledImage(i.image_id, i.detections_b, i.labels) for i in images]
    matches_a, matches_b = match_images(side_a), match_images(side_b)
    point_a, point_b = score(matches_a), score(matches_b)
    names = sorted(set(matches_a) | set(matches_b))
    if n:
        counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    else:
        counts = np.zeros((1, 0))
    reps_a, reps_b = _side(matches_a, counts, names), _side(matches_b, counts, names)

    def differences(name: str, a: tuple[float, ...], b: tuple[float, ...]) -> DifferenceSet:
        delta = reps_b[name] - reps_a[name]
        made = [Difference(a[k], b[k], b[k] - a[k], _interval(delta[:, k], confidence)) for k in range(len(METRICS))]
        return DifferenceSet(*made)

    classes = {
        name: differences(name, _values(point_a.classes.get(name)), _values(point_b.classes.get(name)))
        for name in names
    }
    overall = differences("*", _values(point_a.overall), _values(point_b.overall))
    status: Status = "insufficient_data" if n < min_images else "ok"
    return VersionComparison(status, n, classes, overall)
