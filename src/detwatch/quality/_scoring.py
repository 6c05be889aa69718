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
    """COCOeval's interpolated precision per IoU threshold, averaged over the recall points (NaN without GT)."""
    n_gt = float(weights @ matches.ground_truth)
    if n_gt <= 0.0:
        return np.full(matches.matched.shape[0], math.nan)
    result = np.zeros(matches.matched.shape[0])
    if not matches.image.size:
        return result
    w = weights[matches.image]
    tp = np.cumsum(matches.matched * w, axis=1)
    fp = np.cumsum(~matches.matched * w, axis=1)
    recall = tp / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    n = envelope.shape[1]
    for t in range(len(result)):
        indices = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        q = envelope[t, np.minimum(indices, n - 1)]
        result[t] = np.where(indices < n, q, 0.0).mean()
    return result


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
