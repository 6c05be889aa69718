"""Precision, recall, AP50 and AP@[.5:.95] of matched detections, under image weights.

With every weight 1 these are COCOeval's numbers: AP is ``accumulate``'s 101-point
interpolated precision (the precision envelope read at recall 0, .01, ..., 1),
averaged over the recall points, and over the ten IoU thresholds for AP; a class
without reviewer boxes has no AP (COCOeval's -1), and the overall AP is the mean over
the classes that have one (COCO's mAP). Precision and recall are at IoU 0.5 over the
counted detections. With weights (an image's inverse inclusion probability, or a
bootstrap's multiple of it), every count becomes a weighted sum, so that the figures
estimate what they would be over all production traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from ._matching import ClassMatches

__all__ = ["RECALL_THRESHOLDS", "ClassScores", "Scores", "average_precision", "score"]

RECALL_THRESHOLDS: Final = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
"""COCO's 101 recall points."""


@dataclass(frozen=True)
class ClassScores:
    """One class (or all of them): weighted counts and the figures; NaN where undefined.

    Precision is NaN without detections, recall and the APs without reviewer boxes.
    """

    true_positives: float
    false_positives: float
    false_negatives: float
    precision: float
    recall: float
    ap50: float
    ap: float


@dataclass(frozen=True)
class Scores:
    """Per class, and overall: pooled counts (so pooled precision and recall) and the classes' mean APs."""

    classes: Mapping[str, ClassScores]
    overall: ClassScores


def average_precision(matches: ClassMatches, weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """COCOeval's interpolated precision per IoU threshold, averaged over the recall points (NaN without GT).

    ``weights`` is one weight per image, or a ``[resample, image]`` matrix (then the
    answer is ``[resample, threshold]``): a bootstrap's resamples in one pass.
    """
    batch = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    b, t, d = batch.shape[0], matches.matched.shape[0], matches.image.size
    n_gt = batch @ matches.ground_truth
    result = np.zeros((b, t))
    if d:
        w = batch[:, matches.image][:, None, :]
        tp = np.cumsum(matches.matched * w, axis=2).reshape(b * t, d)
        fp = np.cumsum(~matches.matched * w, axis=2).reshape(b * t, d)
        per_row = np.repeat(n_gt, t)[:, None]
        # A resample without reviewer boxes has no recall (its AP is NaN below): 0 keeps the rows sorted.
        recall = tp / np.where(per_row > 0.0, per_row, np.inf)
        precision = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        rows = np.arange(b * t)
        # One exact search per row (a shared search over shifted rows would round recalls that
        # sit next to a recall point, e.g. 3/10 and 0.30000000000000004, onto it).
        indices = np.stack([np.searchsorted(r, RECALL_THRESHOLDS, side="left") for r in recall])
        q = np.where(indices < d, envelope[rows[:, None], np.minimum(indices, d - 1)], 0.0)
        result = q.mean(axis=1).reshape(b, t)
    result[n_gt <= 0.0] = math.nan
    return result[0] if np.ndim(weights) == 1 else result


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0.0 else math.nan


def score(matches: Mapping[str, ClassMatches], weights: NDArray[np.float64] | None = None) -> Scores:
    """The scores of ``matches`` (:func:`~._matching.match_images`), each image counted ``weights[i]`` times."""
    classes: dict[str, ClassScores] = {}
    totals = np.zeros(3)
    for name, m in sorted(matches.items()):
        w = np.ones(len(m.ground_truth)) if weights is None else np.asarray(weights, dtype=np.float64)
        tp, dets, gts = float(w @ m.true_positives), float(w @ m.detections), float(w @ m.ground_truth)
        aps = average_precision(m, w)
        totals += (tp, dets, gts)
        classes[name] = ClassScores(
            true_positives=tp,
            false_positives=dets - tp,
            false_negatives=gts - tp,
            precision=_ratio(tp, dets),
            recall=_ratio(tp, gts),
            ap50=float(aps[0]),
            ap=float(aps.mean()),
        )
    with_gt = [c for c in classes.values() if not math.isnan(c.ap)]
    tp, dets, gts = (float(x) for x in totals)
    overall = ClassScores(
        true_positives=tp,
        false_positives=dets - tp,
        false_negatives=gts - tp,
        precision=_ratio(tp, dets),
        recall=_ratio(tp, gts),
        ap50=float(np.mean([c.ap50 for c in with_gt])) if with_gt else math.nan,
        ap=float(np.mean([c.ap for c in with_gt])) if with_gt else math.nan,
    )
    return Scores(classes, overall)
