"""Precision of any period without labels: the calibration applied to its confidence histograms.

The companion keeps, per hour and class, how many detections fell in each confidence
bin (:data:`detwatch.contract.bins.CONFIDENCE_BINS`); the calibration
(:mod:`._calibration`) says how likely a detection in each bin is right. Their product
summed over bins is the period's expected number of true positives, its complement
the expected false positives, their ratio to the detections the expected precision.

Decisions the code cannot show:

- **A bin's chance is the labelled detections' in it**, not the map at the bin's
  centre: the weighted mean of the fitted map over the sample's detections in the bin
  (the map at the centre only where the sample has none there), so that a steep map
  inside a bin is not read at one point.
- **Intervals carry the calibration's uncertainty**: a percentile bootstrap over
  labelled images (each resample refits every class's map on the resampled weights,
  the matching is done once), plus, in each resample, the period's own chance
  variation of its true positives given the chances (binomial; the period is all its
  traffic, not a sample, so nothing else varies). That variation is drawn from a normal
  law, so a resample's count of true positives is clipped to what the period can hold
  (0 to its detections): a precision beyond 1 is no possible value, and a shape that says
  ``le=1`` would refuse it.
- **Recall has no label-free estimate**: a detector's output says nothing about the
  objects it missed. Whoever shows this estimate shows recall from labels and the
  ``missed_object`` feedback rate beside it.
- **Trust**: an estimate is ``trusted: false`` with a reason when its calibration rests
  on fewer than ``MIN_IMAGES`` labelled images or ``MIN_DETECTIONS`` labelled
  detections of the class, when the period holds fewer than ``MIN_PERIOD_DETECTIONS``
  detections of it (one false positive more or less moves such a precision by over
  0.03, and the drift test below has no power to see a shift in so few; the overall
  figure, when the period holds fewer than that in all), or when the
  period's confidence distribution differs from
  the one the calibration saw (drift's binned KS at ``DRIFT_ALPHA``, the calibration's
  side at its Kish effective size): a map fitted where the model was confident says
  little about a period where it no longer is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.stats.binned_ks import kolmogorov_smirnov

from ._calibration import fit_pooled, labelled_points
from ._estimates import CONFIDENCE, MIN_IMAGES, RESAMPLES
from ._matching import LabelledImage

__all__ = [
    "DRIFT_ALPHA",
    "MIN_DETECTIONS",
    "MIN_PERIOD_DETECTIONS",
    "EstimatedPrecision",
    "LabelFreePrecision",
    "estimate_precision",
]

MIN_DETECTIONS: Final = 100
"""Labelled detections of a class below which its calibration is not trusted."""
MIN_PERIOD_DETECTIONS: Final = 30
"""Detections of a class in the period below which its estimate is not trusted."""
DRIFT_ALPHA: Final = 0.01
"""The binned KS p-value below which a period has left the calibration's confidence distribution."""

_CENTRES: Final = (np.arange(bins.CONFIDENCE_BINS) + 0.5) * bins.CONFIDENCE_WIDTH


@dataclass(frozen=True)
class EstimatedPrecision:
    """Expected precision of a period's detections (NaN where nothing was calibrated or detected)."""

    estimate: float
    ci: tuple[float, float]
    expected_false_positives: float
    detections: int
    trusted: bool
    reason: str | None
    n_images: int
    """Labelled images the calibration rests on."""


@dataclass(frozen=True)
class LabelFreePrecision:
    """Per class and overall."""

    classes: dict[str, EstimatedPrecision]
    overall: EstimatedPrecision


class _BinChances:
    """Per confidence bin, the chance a detection there is right, under a set of weights.

    Prepared once per class (the distinct confidences, each point's knot and bin), then fitted
    under each set of weights: a bootstrap refits one class hundreds of times on the
    same points, and sorting them once is what each fit would repeat.
    """

    def __init__(self, confidence: NDArray[np.float64], outcome: NDArray[np.float64]) -> None:
        self.confidence = confidence
        self.outcome = outcome
        self.knots, self.inverse = np.unique(confidence, return_inverse=True)
        self.cell = np.minimum((confidence / bins.CONFIDENCE_WIDTH).astype(np.intp), bins.CONFIDENCE_BINS - 1)

    def __call__(self, weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """The chances under one set of weights."""
        knots, fitted = fit_pooled(self.knots, self.inverse, self.outcome, weights)
        if not knots.size:
            return np.full(bins.CONFIDENCE_BINS, np.nan)
        at_point = np.interp(self.confidence, knots, fitted)
        mass = np.bincount(self.cell, weights=weights, minlength=bins.CONFIDENCE_BINS)
        summed = np.bincount(self.cell, weights=weights * at_point, minlength=bins.CONFIDENCE_BINS)
        centre = np.interp(_CENTRES, knots, fitted)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mass > 0, summed / np.where(mass > 0, mass, 1.0), centre)


def _interval(values: NDArray[np.float64]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return (math.nan, math.nan)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


def estimate_precision(
    sample: Sequence[tuple[LabelledImage, float]],
    histograms: Mapping[str, Sequence[float] | NDArray[np.float64]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
    min_detections: int = MIN_DETECTIONS,
    drift_alpha: float = DRIFT_ALPHA,
) -> LabelFreePrecision:
    """The expected precision of a period whose per-class confidence counts are ``histograms``.

    ``sample`` is the policy's labelled sample (image, inclusion probability), as
    :func:`~._calibration.calibrate` takes it.
    """
    points = labelled_points(sample)
    n = len(sample)
    base = 1.0 / np.asarray([p for _, p in sample], dtype=np.float64) if n else np.zeros(0)
    rng = np.random.default_rng(seed)
    multiplicity = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64) if n else None
    noise = rng.standard_normal(size=(resamples, 1))
    classes: dict[str, EstimatedPrecision] = {}
    tp_total = 0.0
    det_total = 0
    rep_tp = np.zeros(resamples)
    rep_var = np.zeros(resamples)
    reasons: list[str] = []
    overall_images: set[int] = set()
    for name in sorted(histograms):
        counts = np.asarray(histograms[name], dtype=np.float64)
        if counts.shape != (bins.CONFIDENCE_BINS,):
            raise ValueError(f"histograms[{name!r}]: {bins.CONFIDENCE_BINS} confidence bins")
        detections = int(counts.sum())
        if not detections:
            continue
        if name not in points or multiplicity is None:
            reason = "no labelled detections of the class to calibrate on"
            classes[name] = EstimatedPrecision(math.nan, (math.nan, math.nan), math.nan, detections, False, reason, 0)
            reasons.append(f"{name}: {reason}")
            continue
        confidence, outcome, owner = points[name]
        weights = base[owner]
        bin_chances = _BinChances(confidence, outcome)
        chances = bin_chances(weights)
        tp = float(counts @ chances)
        replicate_chances = np.stack([bin_chances(weights * m[owner]) for m in multiplicity])
        rep_mean = replicate_chances @ counts
        rep_v = (replicate_chances * (1 - replicate_chances)) @ counts
        replicate_tp = np.clip(rep_mean + noise[:, 0] * np.sqrt(np.maximum(rep_v, 0.0)), 0.0, detections)
        n_images = int(np.unique(owner).size)
        overall_images.update(int(i) for i in np.unique(owner))
        why = _distrust(
            confidence,
            weights,
            counts,
            n_images=n_images,
            min_images=min_images,
            min_detections=min_detections,
            alpha=drift_alpha,
        )
        if why is not None:
            reasons.append(f"{name}: {why}")
        elif detections < MIN_PERIOD_DETECTIONS:
            # The class's own figure only: so few detections move the overall one little.
            why = _few(detections, "detections of the class")
        classes[name] = EstimatedPrecision(
            tp / detections,
            _interval(replicate_tp / detections),
            detections - tp,
            detections,
            why is None,
            why,
            n_images,
        )
        tp_total += tp
        det_total += detections
        rep_tp += rep_mean
        rep_var += rep_v
    if 0 < det_total < MIN_PERIOD_DETECTIONS:
        reasons.append(_few(det_total, "detections"))
    if det_total:
        replicate = np.clip(rep_tp + noise[:, 0] * np.sqrt(rep_var), 0.0, det_total) / det_total
        overall = EstimatedPrecision(
            tp_total / det_total,
            _interval(replicate),
            det_total - tp_total,
            det_total,
            not reasons,
            "; ".join(reasons) or None,
            len(overall_images),
        )
    else:
        reason = "; ".join(reasons) or "no detections in the period"
        detections = sum(c.detections for c in classes.values())
        overall = EstimatedPrecision(math.nan, (math.nan, math.nan), math.nan, detections, False, reason, 0)
    return LabelFreePrecision(classes, overall)


def _few(detections: int, what: str) -> str:
    return f"the period holds {detections} {what} (fewer than {MIN_PERIOD_DETECTIONS})"


def _distrust(
    confidence: NDArray[np.float64],
    weights: NDArray[np.float64],
    counts: NDArray[np.float64],
    *,
    n_images: int,
    min_images: int,
    min_detections: int,
    alpha: float,
) -> str | None:
    """Why a class's estimate cannot be trusted, or None."""
    if n_images < min_images:
        return f"the calibration rests on {n_images} labelled images (fewer than {min_images})"
    if confidence.size < min_detections:
        return f"the calibration rests on {confidence.size} labelled detections (fewer than {min_detections})"
    cell = np.minimum((confidence / bins.CONFIDENCE_WIDTH).astype(np.intp), bins.CONFIDENCE_BINS - 1)
    seen = np.bincount(cell, weights=weights, minlength=bins.CONFIDENCE_BINS)
    kish = weights.sum() ** 2 / float(np.sum(weights**2))
    _, p_value = kolmogorov_smirnov(seen / seen.sum() * kish, counts)
    if p_value < alpha:
        return f"the period's confidence distribution differs from the calibration's (binned KS p = {p_value:.2g})"
    return None
