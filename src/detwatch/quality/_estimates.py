"""Production estimates of quality from the review queue's labelled images, with intervals.

The queue is a biased sample: the flagging policy takes low-confidence and edge-case
images far more often than the rest. Each labelled image is weighted by the inverse
of the chance the policy selected it (taken at flag time, kept with the item), so
that weighted counts estimate the counts over all production traffic (Horvitz and
Thompson) and their ratios estimate production precision and recall; AP is COCO's,
computed on the weighted counts. With every weight 1 the figures are the queue's own
(:func:`~._scoring.score`, COCOeval's numbers).

Decisions the code cannot show:

- **Images are the unit.** Detections of one image move together (a hard scene has
  weak, wrong and missed boxes at once), so intervals resample images, not
  detections: a percentile bootstrap over images (with replacement, the same
  resamples for every class so that the overall figures are coherent), seeded, so a
  report is reproducible. The bootstrap of a weighted ratio is what the coverage test
  checks against a simulated production whose truth is known.
- **Feedback is no probability sample.** Items that only feedback flagged are scored
  apart, unweighted (:attr:`QualityEstimate.feedback_flagged`): they say how the model
  does where users complained, not how it does in production. Items flagged before
  inclusion probabilities were stored have none either and are left out of both.
- ``MIN_IMAGES`` (30, as drift's ``min_images``): below it the status is
  ``insufficient_data``; the figures are still given, with the number of images each
  rests on, for whoever wants to look.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from ._matching import ClassMatches, LabelledImage, match_images
from ._scoring import average_precision, score

__all__ = [
    "CONFIDENCE",
    "MIN_IMAGES",
    "RESAMPLES",
    "Metric",
    "MetricSet",
    "QualityEstimate",
    "SampleEstimate",
    "Status",
    "estimate_quality",
    "estimate_sample",
]

MIN_IMAGES: Final = 30
"""Labelled images below which a sample's status is ``insufficient_data``."""
RESAMPLES: Final = 400
"""Bootstrap resamples per estimate: enough for stable 2.5 % and 97.5 % percentiles."""
CONFIDENCE: Final = 0.95
_CELLS: Final = 1 << 20
"""Floats one batch of bootstrap AP holds per array (8 MiB)."""

Status = Literal["ok", "insufficient_data"]


@dataclass(frozen=True)
class Metric:
    """An estimate, its bootstrap interval and the labelled images it rests on (NaN where undefined)."""

    estimate: float
    ci: tuple[float, float]
    n_images: int


@dataclass(frozen=True)
class MetricSet:
    """Precision and recall at IoU 0.5, AP50 and AP@[.5:.95] of one class (or overall)."""

    precision: Metric
    recall: Metric
    ap50: Metric
    ap: Metric


@dataclass(frozen=True)
class SampleEstimate:
    """The figures of one sample of labelled images (weighted, or as they are)."""

    status: Status
    n_images: int
    weighted: bool
    classes: Mapping[str, MetricSet]
    overall: MetricSet


@dataclass(frozen=True)
class QualityEstimate:
    """Production estimates from the policy's sample, and the feedback-flagged items apart."""

    production: SampleEstimate
    feedback_flagged: SampleEstimate


def _interval(replicates: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    finite = replicates[~np.isnan(replicates)]
    if not finite.size:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


def _ratio(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), math.nan)


def _replicates(matches: Mapping[str, ClassMatches], weights: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Per class and ``"*"``: ``[resample, (precision, recall, ap50, ap)]`` under each row of ``weights``."""
    out: dict[str, NDArray[np.float64]] = {}
    totals = np.zeros((weights.shape[0], 3))
    for name, m in sorted(matches.items()):
        tp, dets, gts = weights @ m.true_positives, weights @ m.detections, weights @ m.ground_truth
        totals += np.column_stack([tp, dets, gts])
        rows = np.empty((weights.shape[0], 4))
        rows[:, 0], rows[:, 1] = _ratio(tp, dets), _ratio(tp, gts)
        # Resamples in chunks of bounded memory: [resamples, thresholds, detections] floats.
        chunk = max(1, _CELLS // max(1, m.matched.size))
        for start in range(0, weights.shape[0], chunk):
            aps = average_precision(m, weights[start : start + chunk])
            rows[start : start + chunk, 2], rows[start : start + chunk, 3] = aps[:, 0], aps.mean(axis=1)
        out[name] = rows
    overall = np.empty((weights.shape[0], 4))
    overall[:, 0], overall[:, 1] = _ratio(totals[:, 0], totals[:, 1]), _ratio(totals[:, 0], totals[:, 2])
    if out:
        stacked = np.stack(list(out.values()))  # [class, resample, metric]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no class has reviewer boxes: NaN
            overall[:, 2:] = np.nanmean(stacked[:, :, 2:], axis=0)
    else:
        overall[:, 2:] = math.nan
    out["*"] = overall
    return out


def estimate_sample(
    images: Sequence[LabelledImage],
    weights: Sequence[float] | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    min_images: int = MIN_IMAGES,
) -> SampleEstimate:
    """The figures of ``images``, each counted ``weights[i]`` times (1 without), with bootstrap intervals."""
    n = len(images)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights: one finite, non-negative weight per image")
    matches = match_images(images)
    point = score(matches, w)
    if n:
        counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
        reps = _replicates(matches, counts * w)
    else:
        reps = {"*": np.full((1, 4), math.nan)}

    def metrics(name: str, values: tuple[float, float, float, float], sizes: tuple[int, int, int]) -> MetricSet:
        r = reps[name]
        made = [Metric(values[k], _interval(r[:, k], confidence), sizes[min(k, 2)]) for k in range(4)]
        return MetricSet(*made)

    with_dets = np.zeros(n, dtype=bool)
    with_gts = np.zeros(n, dtype=bool)
    classes: dict[str, MetricSet] = {}
    for name, m in matches.items():
        d, g = m.detections > 0, m.ground_truth > 0
        with_dets |= d
        with_gts |= g
        c = point.classes[name]
        classes[name] = metrics(
            name, (c.precision, c.recall, c.ap50, c.ap), (int(d.sum()), int(g.sum()), int((d | g).sum()))
        )
    o = point.overall
    overall = metrics("*", (o.precision, o.recall, o.ap50, o.ap), (int(with_dets.sum()), int(with_gts.sum()), n))
    status: Status = "insufficient_data" if n < min_images else "ok"
    return SampleEstimate(status, n, weights is not None, classes, overall)


def estimate_quality(
    sampled: Sequence[tuple[LabelledImage, float]],
    feedback_flagged: Sequence[LabelledImage],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    min_images: int = MIN_IMAGES,
) -> QualityEstimate:
    """Production estimates from ``sampled`` (each image with its inclusion probability), feedback apart."""
    if any(not 0.0 < p <= 1.0 for _, p in sampled):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    production = estimate_sample(
        [image for image, _ in sampled],
        [1.0 / p for _, p in sampled],
        resamples=resamples,
        seed=seed,
        confidence=confidence,
        min_images=min_images,
    )
    apart = estimate_sample(
        feedback_flagged, None, resamples=resamples, seed=seed, confidence=confidence, min_images=min_images
    )
    return QualityEstimate(production, apart)
