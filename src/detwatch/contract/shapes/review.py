"""Shapes of the data engine's routes: the flagging policy, the review queue, training jobs.

The item and job states live here, on the wire; :mod:`detwatch.review` imports them.
The policy's semantics are :mod:`detwatch_instrumentation.flagging`'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_COORDINATE, MAX_DETECTIONS
from detwatch.contract.shapes._common import Object, RejectedItem, one_of, present
from detwatch.contract.shapes.ingest import Detection
from detwatch.contract.textfields import NAME_PATTERN
from detwatch_instrumentation.flagging import EDGE_CONDITIONS

__all__ = [
    "CROSS_FIELD",
    "FINISHED_JOB_STATUSES",
    "GATE_METRICS",
    "ITEM_STATUSES",
    "JOB_STATUSES",
    "MAX_CANDIDATE_IMAGES",
    "MAX_CLAIM",
    "REPORTED_JOB_STATUSES",
    "Annotation",
    "Backfill",
    "CandidateImage",
    "CandidatePredictions",
    "CandidateResult",
    "Claim",
    "DataEngine",
    "DataEngineConfig",
    "FlaggedItem",
    "FlaggedItemPage",
    "FlaggingPolicy",
    "GateMetric",
    "GateResult",
    "ItemStatus",
    "JobStatus",
    "Label",
    "Reject",
    "ReportedJobStatus",
    "TrainingGate",
    "TrainingJob",
    "TrainingJobCreate",
    "TrainingJobStatus",
]

ItemStatus = Literal["needs_review", "in_review", "labeled", "rejected"]
ITEM_STATUSES: Final[tuple[ItemStatus, ...]] = ("needs_review", "in_review", "labeled", "rejected")
JobStatus = Literal["queued", "running", "succeeded", "failed", "gated"]
JOB_STATUSES: Final[tuple[JobStatus, ...]] = ("queued", "running", "succeeded", "failed", "gated")
ReportedJobStatus = Literal["running", "succeeded", "failed"]
REPORTED_JOB_STATUSES: Final[tuple[ReportedJobStatus, ...]] = ("running", "succeeded", "failed")
"""What a trainer may report; ``gated`` is the companion's verdict on a reported success, never the trainer's."""
FINISHED_JOB_STATUSES: Final[tuple[JobStatus, ...]] = ("succeeded", "failed", "gated")
GateMetric = Literal["precision", "recall", "ap50", "ap"]
GATE_METRICS: Final[tuple[GateMetric, ...]] = ("precision", "recall", "ap50", "ap")
MAX_CANDIDATE_IMAGES: Final = 1000
"""Most images one post of a candidate's detections carries."""
MAX_CLAIM: Final = 100
"""Most items one claim takes."""

_Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
_ReviewName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NAME_PATTERN, description="not blank")]


class LowConfidencePolicy(TypedDict, total=False):
    """An image with a detection below threshold (mode any; max: its best one), sampled at sample_rate."""

    enabled: bool
    threshold: _Rate
    sample_rate: _Rate
    mode: Literal["any", "max"]


class HighDensityPolicy(TypedDict, total=False):
    """Many detections, many of them overlapping."""

    min_detections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    iou_threshold: _Rate
    min_overlapping: Annotated[int, msgspec.Meta(ge=2, le=1_000_000)]


class UnusualSizePolicy(TypedDict, total=False):
    """Boxes outside the usual area range, given or learned per class."""

    min_area: _Rate
    max_area: Annotated[float, msgspec.Meta(ge=0)]
    learn: bool
    quantile: Annotated[float, msgspec.Meta(ge=0, le=0.5)]
    min_samples: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class EdgeCasePolicy(TypedDict, total=False):
    """Images that are unusual in themselves."""

    enabled: bool
    conditions: list[Annotated[str, one_of(EDGE_CONDITIONS)]]
    sample_rate: _Rate
    high_density: HighDensityPolicy
    unusual_size: UnusualSizePolicy


class RandomSamplePolicy(TypedDict, total=False):
    """A random share of all images."""

    enabled: bool
    rate: _Rate


class FlaggingPolicy(TypedDict, total=False):
    """The user guide's data-engine config; semantics in detwatch_instrumentation.flagging."""

    low_confidence: LowConfidencePolicy
    edge_cases: EdgeCasePolicy
    random_sample: RandomSamplePolicy


class DataEngineConfig(TypedDict):
    """A model's flagging policy and the dataset its flagged items go to."""

    config: FlaggingPolicy
    target_dataset_id: _ReviewName
    since: NotRequired[
        Annotated[
            str,
            msgspec.Meta(
                description="apply the policy to the retained predictions since then: a duration back from now "
                '("24h", "30m", "7d"), an RFC 3339 time, or "none"',
                extra_json_schema={
                    "anyOf": [
                        {"pattern": "^[0-9]{1,6} *(m|min|h|d|w)$"},
                        {"format": "date-time"},
                        {"const": "none"},
                    ],
                    "default": "24h",
                },
            ),
        ]
    ]


class Backfill(TypedDict, total=False):
    """PUT only: the policy applied to the retained predictions of a window."""

    since: str | None
    until: str
    examined: Annotated[int, msgspec.Meta(description="predictions evaluated")]
    flagged: Annotated[int, msgspec.Meta(description="items added to the review queue")]
    complete: Annotated[
        bool,
        msgspec.Meta(
            description="false when cut at the most predictions one change evaluates (newest first); since then "
            "says where it stopped"
        ),
    ]


class DataEngine(TypedDict):
    """A model's stored data-engine policy."""

    id: str
    model_id: str
    config: Object
    policy: NotRequired[Annotated[Object, msgspec.Meta(description="the effective policy, with learned size ranges")]]
    target_dataset_id: str
    updated_unix_nano: NotRequired[int]
    backfill: NotRequired[Backfill]


class FlaggedItem(TypedDict):
    """A flagged prediction in the review queue."""

    id: str
    dataset_id: str
    prediction_id: str
    model_id: str
    model_version: str | None
    time_unix_nano: int
    reasons: list[str]
    detections: list[Any]
    image: Object
    status: ItemStatus
    assignee: Annotated[str | None, msgspec.Meta(description="the reviewer who claimed it")]
    claimed_unix_nano: int | None
    label: list[Any] | None
    reviewer: str | None
    feedback: list[Any]
    suggested_label: list[Any]
    created_unix_nano: int
    updated_unix_nano: int
    ab_variant: Annotated[
        Literal["a", "b"] | None,
        msgspec.Meta(description="the A/B arm its prediction was routed to, kept with the item (null outside a test)"),
    ]
    inclusion_probability: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=1,
                description=(
                    "the chance the flagging policy picked it, taken when it was flagged (null where feedback alone"
                    " flagged it, or it was flagged before this was kept)"
                ),
            ),
        ]
        | None
    )


class FlaggedItemPage(TypedDict):
    """One page of the review queue; ``next_cursor`` fetches the next (null at the end)."""

    items: list[FlaggedItem]
    next_cursor: NotRequired[str | None]


class Claim(TypedDict):
    """Items to claim for one reviewer."""

    reviewer: _ReviewName
    limit: NotRequired[Annotated[int, msgspec.Meta(ge=1, le=MAX_CLAIM)]]
    lease_s: NotRequired[Annotated[float, msgspec.Meta(ge=1, le=604800)]]


Annotation = TypedDict(
    "Annotation",
    {
        "class": _ReviewName,
        "box": Annotated[
            list[Annotated[float, msgspec.Meta(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]],
            msgspec.Meta(min_length=4, max_length=4, description="[x1, y1, x2, y2] in pixels, x2 > x1 and y2 > y1"),
        ],
    },
)
Annotation.__doc__ = "A corrected box and its class."


class Label(TypedDict):
    """The corrected boxes and classes of an item."""

    annotations: Annotated[list[Annotation], msgspec.Meta(max_length=MAX_DETECTIONS)]
    reviewer: NotRequired[_ReviewName]


class CandidateImage(TypedDict):
    """What a job's candidate detected on one labelled image, found by its key."""

    image_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    detections: Annotated[list[Detection], msgspec.Meta(max_length=MAX_DETECTIONS)]


class CandidatePredictions(TypedDict):
    """A trainer's post of its candidate's detections on the base model's labelled images."""

    predictions: Annotated[list[CandidateImage], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATE_IMAGES)]


class CandidateResult(TypedDict):
    """Stored per image key; a key that is not a labelled image of the base model is rejected."""

    accepted: Annotated[int, msgspec.Meta(ge=0)]
    rejected: list[RejectedItem]


class Reject(TypedDict, total=False):
    """Who rejects the item."""

    reviewer: _ReviewName


class TrainingGate(TypedDict):
    """Register the new version only if ``metric`` is not worse than the base's by more than ``max_drop``.

    Judged on the base model's labelled images of the job's dataset, when the trainer
    reports success: the candidate's detections (posted by the trainer) against what
    the base detected, paired on the same images.
    """

    metric: Annotated[GateMetric, msgspec.Meta(description="precision, recall (IoU 0.5), ap50 or ap (AP@[.5:.95])")]
    max_drop: Annotated[float, msgspec.Meta(ge=0, le=1, description="largest allowed base - candidate")]


class GateResult(TypedDict):
    """The gate's judgement of a job's candidate, made when its trainer reported success."""

    passed: bool
    reason: Annotated[
        Literal["not_worse", "worse", "insufficient_data"],
        msgspec.Meta(description="insufficient_data: fewer paired images than the floor, or the metric undefined"),
    ]
    message: str
    metric: GateMetric
    max_drop: float
    base: float | None
    candidate: float | None
    difference: Annotated[float | None, msgspec.Meta(description="candidate - base on the paired images")]
    ci: Annotated[list[float | None], msgspec.Meta(description="95 % paired bootstrap interval of the difference")]
    n_images: Annotated[int, msgspec.Meta(ge=0, description="labelled images both base and candidate predicted")]
    labelled_images: Annotated[int, msgspec.Meta(ge=0, description="the base model's labelled images (by key)")]
    min_images: int


class TrainingJobCreate(TypedDict):
    """A training job to record and hand to the trainer; the trainer's own settings go in options."""

    name: _ReviewName
    dataset_id: _ReviewName
    version_id: _ReviewName
    base_model_id: NotRequired[Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NAME_PATTERN)] | None]
    options: NotRequired[Object | None]
    gate: NotRequired[TrainingGate | None]


class TrainingJob(TypedDict):
    """A training job with its history."""

    id: str
    name: str
    dataset_id: str
    version_id: str
    base_model_id: str | None
    options: Object
    status: JobStatus
    attempts: int
    handed_off: bool
    last_error: str | None
    model_version: str | None
    history: list[Any]
    created_unix_nano: int
    updated_unix_nano: int
    gate: Annotated[TrainingGate | None, msgspec.Meta(description="the rule the new version must pass, or null")]
    gate_result: Annotated[GateResult | None, msgspec.Meta(description="the gate's judgement, once made")]
    trainer: NotRequired[
        Annotated[str, msgspec.Meta(description="where the job goes: 'webhook URL', 'command ...' or 'none'")]
    ]
    warning: NotRequired[
        Annotated[
            str | None, msgspec.Meta(description="why the job cannot progress (no trainer configured), null otherwise")
        ]
    ]


class TrainingJobStatus(TypedDict):
    """The trainer's status callback."""

    status: ReportedJobStatus
    model_version: NotRequired[Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NAME_PATTERN)] | None]
    message: NotRequired[Annotated[str, msgspec.Meta(max_length=4096)] | None]
    metrics: NotRequired[Object | None]


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    name: {"additionalProperties": False}
    for name in (
        "DataEngineConfig",
        "FlaggingPolicy",
        "LowConfidencePolicy",
        "EdgeCasePolicy",
        "HighDensityPolicy",
        "UnusualSizePolicy",
        "RandomSamplePolicy",
        "TrainingGate",
    )
} | {
    # A gate compares the new version with its base: no base, no gate.
    "TrainingJobCreate": {"additionalProperties": False, "anyOf": [{"not": present("gate")}, present("base_model_id")]},
}
