"""Model quality scored on reviewed labels: what precision, recall and AP are in production.

Reviewers label flagged items; :mod:`._matching` matches a model's stored detections
on those items to the reviewers' boxes the COCO way, :mod:`._scoring` scores them
(equal to ``pycocotools.COCOeval`` on the same boxes), and :mod:`._estimates` turns
the review queue's biased sample into estimates for all production traffic: each
labelled image weighted by the inverse of the chance the flagging policy selected it
(:meth:`detwatch_instrumentation.flagging.FlaggingPolicy.inclusion_probability`, kept
with the item), with bootstrap intervals over images; :mod:`._calibration` fits, on the same
weighted sample, how confidence maps to the chance of a true positive; :mod:`._labelfree`
applies that map to a whole period's detections (precision without labels), and
:mod:`._labelfree_recall` says why recall has no such estimate and counts the
``missed_object`` feedback instead. Items that only feedback
flagged are no probability sample: they are scored apart, unweighted.
:mod:`._comparison` scores two versions on the same labelled images, paired; :mod:`._gate`
judges a training job's candidate against its base that way.

An analysis: numpy only, records in, frozen dataclasses out; no SQL, no Flask.
"""

from __future__ import annotations

from ._calibration import ClassCalibration as ClassCalibration
from ._calibration import calibrate as calibrate
from ._calibration import fit_isotonic as fit_isotonic
from ._comparison import Difference as Difference
from ._comparison import DifferenceSet as DifferenceSet
from ._comparison import PairedImage as PairedImage
from ._comparison import VersionComparison as VersionComparison
from ._comparison import compare_versions as compare_versions
from ._estimates import (
    MIN_IMAGES as MIN_IMAGES,
)
from ._estimates import (
    RESAMPLES as RESAMPLES,
)
from ._estimates import (
    Metric as Metric,
)
from ._estimates import (
    MetricSet as MetricSet,
)
from ._estimates import (
    QualityEstimate as QualityEstimate,
)
from ._estimates import (
    SampleEstimate as SampleEstimate,
)
from ._estimates import (
    estimate_quality as estimate_quality,
)
from ._estimates import (
    estimate_sample as estimate_sample,
)
from ._from_storage import ModelQuality as ModelQuality
from ._from_storage import model_quality as model_quality
from ._gate import GateVerdict as GateVerdict
from ._gate import base_image_keys as base_image_keys
from ._gate import gate_images as gate_images
from ._gate import judge_job_gate as judge_job_gate
from ._gate import judge_training_gate as judge_training_gate
from ._labelfree import EstimatedPrecision as EstimatedPrecision
from ._labelfree import LabelFreePrecision as LabelFreePrecision
from ._labelfree import estimate_precision as estimate_precision
from ._labelfree_from_storage import period_precision as period_precision
from ._labelfree_recall import NO_LABEL_FREE_RECALL as NO_LABEL_FREE_RECALL
from ._labelfree_recall import LabelFreeRecall as LabelFreeRecall
from ._labelfree_recall import MissedObjectFeedback as MissedObjectFeedback
from ._labelfree_recall import label_free_recall as label_free_recall
from ._matching import IOU_THRESHOLDS as IOU_THRESHOLDS
from ._matching import MAX_DETECTIONS as MAX_DETECTIONS
from ._matching import ClassMatches as ClassMatches
from ._matching import Detection as Detection
from ._matching import GroundTruth as GroundTruth
from ._matching import LabelledImage as LabelledImage
from ._matching import match_images as match_images
from ._records import LabelledItems as LabelledItems
from ._records import labelled_images as labelled_images
from ._scoring import RECALL_THRESHOLDS as RECALL_THRESHOLDS
from ._scoring import ClassScores as ClassScores
from ._scoring import Scores as Scores
from ._scoring import score as score
from ._version_comparison import ComparisonStorage as ComparisonStorage
from ._version_comparison import ModelVersionComparison as ModelVersionComparison
from ._version_comparison import compare_model_versions as compare_model_versions
from ._window import parse_window as parse_window

__all__ = [
    "IOU_THRESHOLDS",
    "MAX_DETECTIONS",
    "MIN_IMAGES",
    "NO_LABEL_FREE_RECALL",
    "RECALL_THRESHOLDS",
    "RESAMPLES",
    "ClassCalibration",
    "ClassMatches",
    "ClassScores",
    "ComparisonStorage",
    "Detection",
    "Difference",
    "DifferenceSet",
    "EstimatedPrecision",
    "GateVerdict",
    "GroundTruth",
    "LabelFreePrecision",
    "LabelFreeRecall",
    "LabelledImage",
    "LabelledItems",
    "Metric",
    "MetricSet",
    "MissedObjectFeedback",
    "ModelQuality",
    "ModelVersionComparison",
    "PairedImage",
    "QualityEstimate",
    "SampleEstimate",
    "Scores",
    "VersionComparison",
    "base_image_keys",
    "calibrate",
    "compare_model_versions",
    "compare_versions",
    "estimate_precision",
    "estimate_quality",
    "estimate_sample",
    "fit_isotonic",
    "gate_images",
    "judge_job_gate",
    "judge_training_gate",
    "label_free_recall",
    "labelled_images",
    "match_images",
    "model_quality",
    "parse_window",
    "period_precision",
    "score",
]
