"""Per class, how a detection's confidence maps to the chance it is a true positive.

The label-free estimate of precision rests on this map: fitted on the labelled
detections of the policy's probability sample, it turns the stored confidence
histograms of any period into an expected number of true positives. Two decisions:

- **Monotone, nothing more.** A higher confidence should never mean a lower chance
  of being right; beyond that no shape is assumed (detectors are neither logistic
  nor linear in their calibration), so the fit is an isotonic regression of the
  IoU-0.5 match outcome on confidence (``scipy.optimize.isotonic_regression``,
  pool-adjacent-violators). Between the fitted confidences the map is interpolated
  linearly, and held flat beyond them.
- **Weighted as production, not as the queue.** Each detection counts with its
  image's inverse inclusion probability, as the scoring's estimates do: the queue
  over-represents hard images (edge cases are taken with probability 1), where a
  detection of a given confidence is less often right, so an unweighted fit would
  say the model is worse calibrated than it is in production. Feedback-flagged
  items are no probability sample and never enter a fit.

Detections of one image are the ones the scoring ranks (the best 100 per image and
class, matched the COCO way by :func:`~._matching.match_images`), so the calibration
and the labelled precision agree on what a true positive is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import isotonic_regression

from ._matching import MAX_DETECTIONS, LabelledImage, match_images

__all__ = ["ClassCalibration", "calibrate", "fit_isotonic", "fit_pooled", "labelled_points"]


@dataclass(frozen=True)
class ClassCalibration:
    """One class's monotone map confidence -> P(true positive at IoU 0.5).

    ``confidence`` holds the distinct fitted confidences (ascending), ``probability``
    the fitted chance at each (non-decreasing).
    """

    confidence: NDArray[np.float64]
    probability: NDArray[np.float64]
    n_images: int
    """Labelled images with at least one detection of the class."""
    n_detections: int

    def __call__(self, confidence: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """The chance that a detection at ``confidence`` is a true positive."""
        x = np.asarray(confidence, dtype=np.float64)
        if not self.confidence.size:
            return np.full(x.shape, np.nan)
        return np.asarray(np.interp(x, self.confidence, self.probability), dtype=np.float64)


def fit_isotonic(
    confidence: Sequence[float] | NDArray[np.float64],
    outcome: Sequence[float] | NDArray[np.float64],
    weights: Sequence[float] | NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The weighted isotonic fit of ``outcome`` on ``confidence``: distinct confidences and fitted values.

    Equal confidences are pooled first (their weighted mean outcome, their summed
    weight), so that ties are one point of the map rather than an order the sort
    happened to choose. Points of zero weight say nothing and are left out.
    """
    x = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if not (x.shape == y.shape == w.shape) or x.ndim != 1:
        raise ValueError("confidence, outcome and weights: one value each per detection")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights: finite and non-negative")
    knots, inverse = np.unique(x, return_inverse=True)
    return fit_pooled(knots, inverse, y, w)


def fit_pooled(
    knots: NDArray[np.float64], inverse: NDArray[np.intp], outcome: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`fit_isotonic` on points already pooled by ``np.unique(confidence, return_inverse=True)``.

    Knots whose points all weigh 0 are left out. A bootstrap refits the same points
    under hundreds of weightings: the sort is done once, by the caller.
    """
    total = np.bincount(inverse, weights=weights, minlength=knots.size)
    kept = total > 0
    if not kept.any():
        return np.zeros(0), np.zeros(0)
    mean = np.bincount(inverse, weights=weights * outcome, minlength=knots.size)[kept] / total[kept]
    fitted = isotonic_regression(mean, weights=total[kept], increasing=True).x
    return knots[kept], np.clip(np.asarray(fitted, dtype=np.float64), 0.0, 1.0)


def _class_points(images: Sequence[LabelledImage], name: str) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """The class's confidences in :func:`match_images`' ranking, with the image of each."""
    scores: list[NDArray[np.float64]] = []
    owners: list[NDArray[np.intp]] = []
    for index, image in enumerate(images):
        score = np.asarray([d.confidence for d in image.detections if d.class_name == name], dtype=np.float64)
        if not score.size:
            continue
        order = np.argsort(-score, kind="mergesort")[:MAX_DETECTIONS]
        scores.append(score[order])
        owners.append(np.full(order.size, index, dtype=np.intp))
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=np.intp)
    all_scores = np.concatenate(scores)
    rank = np.argsort(-all_scores, kind="mergesort")
    return all_scores[rank], np.concatenate(owners)[rank]


def labelled_points(
    sample: Sequence[tuple[LabelledImage, float]],
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]]:
    """Per class with detections: each labelled detection's confidence, IoU-0.5 outcome and image index.

    Matched once, so that a bootstrap over images only reweights these points.
    """
    images = [image for image, _ in sample]
    result: dict[str, tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]] = {}
    for name, matches in match_images(images).items():
        confidence, owner = _class_points(images, name)
        if confidence.size:
            result[name] = (confidence, matches.matched[0].astype(np.float64), owner)
    return result


def calibrate(sample: Sequence[tuple[LabelledImage, float]]) -> Mapping[str, ClassCalibration]:
    """Per class with detections, the calibration fitted on ``sample`` (image, inclusion probability).

    Pass the policy's sample only (:attr:`~._records.LabelledItems.sampled`): the
    weights are the inverse inclusion probabilities.
    """
    probabilities = np.asarray([p for _, p in sample], dtype=np.float64)
    if np.any(~np.isfinite(probabilities)) or np.any(probabilities <= 0) or np.any(probabilities > 1):
        raise ValueError("inclusion probabilities: in (0, 1]")
    weights = 1.0 / probabilities
    result: dict[str, ClassCalibration] = {}
    for name, (confidence, outcome, owner) in labelled_points(sample).items():
        knots, fitted = fit_isotonic(confidence, outcome, weights[owner])
        result[name] = ClassCalibration(knots, fitted, int(np.unique(owner).size), int(confidence.size))
    return result
