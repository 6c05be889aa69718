"""Model quality scored on reviewed labels: what precision, recall and AP are in production.

Reviewers label flagged items; :mod:`._matching` matches a model's stored detections
on those items to the reviewers' boxes the COCO way, :mod:`._scoring` scores them
(equal to ``pycocotools.COCOeval`` on the same boxes); scoring takes image weights, so that
the review queue's biased sample can stand for all production traffic.

An analysis: numpy only, records in, frozen dataclasses out; no SQL, no Flask.
"""

from __future__ import annotations

from ._matching import IOU_THRESHOLDS as IOU_THRESHOLDS
from ._matching import MAX_DETECTIONS as MAX_DETECTIONS
from ._matching import ClassMatches as ClassMatches
from ._matching import Detection as Detection
from ._matching import GroundTruth as GroundTruth
from ._matching import LabelledImage as LabelledImage
from ._matching import match_images as match_images
from ._scoring import RECALL_THRESHOLDS as RECALL_THRESHOLDS
from ._scoring import ClassScores as ClassScores
from ._scoring import Scores as Scores
from ._scoring import score as score

__all__ = [
    "IOU_THRESHOLDS",
    "MAX_DETECTIONS",
    "RECALL_THRESHOLDS",
    "ClassMatches",
    "ClassScores",
    "Detection",
    "GroundTruth",
    "LabelledImage",
    "Scores",
    "match_images",
    "score",
]
