"""Predictions matched to reviewers' boxes the COCO way, once per labelled set.

:func:`match_images` does what ``pycocotools.COCOeval.evaluateImg`` does for boxes
(``iouType="bbox"``, area range "all", ``maxDets`` 100, no crowd): per image and
class, the detections sorted by score (stable, so equal scores keep their order)
and cut at 100, and at each IoU threshold each one in turn takes the unmatched
reviewer box it overlaps most (of those at or above the threshold; of equal overlaps
the last, as COCOeval's loop does). It then lays each class's detections out in the
order COCOeval's ``accumulate`` ranks them (by score over all images, stable, images
in the order given), so that scoring under any image weights is a cumulative sum
(:mod:`._scoring`) and a bootstrap does not match again.

IoU is computed as pycocotools' ``bbIou`` computes it, on ``[x, y, w, h]`` with the
same double-precision operations, so that a pair exactly at a threshold is decided
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "IOU_THRESHOLDS",
    "MAX_DETECTIONS",
    "ClassMatches",
    "Detection",
    "GroundTruth",
    "LabelledImage",
    "match_images",
]

IOU_THRESHOLDS: Final = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
"""COCO's ten IoU thresholds, .50 to .95 (index 0 is the AP50/precision/recall threshold)."""
MAX_DETECTIONS: Final = 100
"""COCO's ``maxDets``: per image and class, only the best-scored 100 detections count."""

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """A stored prediction's detection: class, confidence, ``[x1, y1, x2, y2]``."""

    class_name: str
    confidence: float
    box: Box


@dataclass(frozen=True)
class GroundTruth:
    """A reviewer's box: class, ``[x1, y1, x2, y2]``."""

    class_name: str
    box: Box


@dataclass(frozen=True)
class LabelledImage:
    """One labelled item: what the model predicted and what the reviewer drew."""

    image_id: str
    detections: tuple[Detection, ...]
    labels: tuple[GroundTruth, ...]


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections over all images, in COCOeval's ranking, with per-image totals.

    ``image[k]`` is the image (index into the matched images) of the ``k``-th ranked
    detection, ``matched[t, k]`` whether it matched a reviewer box at ``IOU_THRESHOLDS[t]``.
    The per-image arrays have one entry per matched image (zero where the class is absent).
    """

    image: NDArray[np.intp]
    matched: NDArray[np.bool_]
    detections: NDArray[np.float64]
    """Detections of the class per image (after the cut at ``MAX_DETECTIONS``)."""
    true_positives: NDArray[np.float64]
    """Detections matched at IoU 0.5, per image."""
    ground_truth: NDArray[np.float64]
    """Reviewer boxes of the class per image."""


def _xywh(boxes: Sequence[Box]) -> NDArray[np.float64]:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([array[:, 0], array[:, 1], array[:, 2] - array[:, 0], array[:, 3] - array[:, 1]])


def _ious(dt: NDArray[np.float64], gt: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[detection, ground truth]`` IoU, with pycocotools' ``bbIou`` arithmetic."""
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[:, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = dw * dh + gw * gh - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _match(ious: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``[threshold, detection]``: matched or not, COCOeval's greedy assignment.

    Plain Python over the image's few boxes: each detection takes the last free reviewer
    box of the highest overlap at or above the threshold, as ``COCOeval.evaluateImg``'s
    loop does. (Per-detection numpy calls on arrays of two or three boxes cost five to
    ten times as much: this loop runs for every labelled image and class of a report.)
    """
    n_dt, n_gt = ious.shape
    matched = np.zeros((len(IOU_THRESHOLDS), n_dt), dtype=bool)
    if not n_gt:
        return matched
    rows: list[list[float]] = ious.tolist()
    for t, threshold in enumerate(IOU_THRESHOLDS):
        floor = min(float(threshold), 1 - 1e-10)
        free = [True] * n_gt
        for d, row in enumerate(rows):
            best, chosen = floor, -1
            for g, overlap in enumerate(row):
                if free[g] and overlap >= best:
                    best, chosen = overlap, g
            if chosen >= 0:
                free[chosen] = False
                matched[t, d] = True
    return matched


def match_images(images: Sequence[LabelledImage]) -> dict[str, ClassMatches]:
    """Every class present in ``images`` (as a detection or a reviewer box), matched.

    Images count in the order given: it breaks ties of equal scores across images, as
    COCOeval's sorted image ids do.
    """
    n = len(images)
    classes = sorted(
        {d.class_name for i in images for d in i.detections} | {g.class_name for i in images for g in i.labels}
    )
    result: dict[str, ClassMatches] = {}
    for name in classes:
        scores: list[NDArray[np.float64]] = []
        owners: list[NDArray[np.intp]] = []
        flags: list[NDArray[np.bool_]] = []
        detections = np.zeros(n)
        true_positives = np.zeros(n)
        ground_truth = np.zeros(n)
        for index, image in enumerate(images):
            dts = [d for d in image.detections if d.class_name == name]
            gts = [g.box for g in image.labels if g.class_name == name]
            ground_truth[index] = len(gts)
            if not dts:
                continue
            score = np.asarray([d.confidence for d in dts], dtype=np.float64)
            order = np.argsort(-score, kind="mergesort")[:MAX_DETECTIONS]
            dt = _xywh([dts[k].box for k in order])
            matched = _match(_ious(dt, _xywh(gts)))
            scores.append(score[order])
            owners.append(np.full(len(order), index, dtype=np.intp))
            flags.append(matched)
            detections[index] = len(order)
            true_positives[index] = matched[0].sum()
        if scores:
            all_scores = np.concatenate(scores)
            rank = np.argsort(-all_scores, kind="mergesort")
            image_of = np.concatenate(owners)[rank]
            matched_all = np.concatenate(flags, axis=1)[:, rank]
        else:
            image_of = np.zeros(0, dtype=np.intp)
            matched_all = np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool)
        result[name] = ClassMatches(image_of, matched_all, detections, true_positives, ground_truth)
    return result
