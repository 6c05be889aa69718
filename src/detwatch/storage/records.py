"""What storage returns: records, aggregate rows and the errors a backend raises.

One module for the shapes every backend shares, so that a backend (``sqlite``,
``postgres``, or a new one implementing :mod:`detwatch.storage.protocols`) and the
analyses above it import them from one place below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detwatch.contract.feedback import FeedbackType
from detwatch.contract.predictions import ImageRef, Prediction

AGGREGATE_KINDS: tuple[str, ...] = (
    "images",
    "empty_images",
    "image_detections",
    "detections",
    "confidence",
    "box_area",
    "aspect_ratio",
    "latency_ms_sum",
    "latency_ms",
    "confidence_all",
    "box_log10_area",
    "box_log2_aspect",
)
"""Every ``kind`` of :class:`AggregateRow` (see its docstring)."""


class StorageError(Exception):
    """Base class of storage failures."""


class StorageClosed(StorageError):
    """The storage was closed by its owner (the app shut down): nothing more will be done on it."""


class StorageUnavailable(StorageError):
    """The database cannot take writes now (disk full, read-only, locked, down): retry later (503).

    The message is for the log: it may name the database file, the server's socket or
    the statement that failed. ``reason`` is what a caller may be told: one of a few
    fixed words (``disk full``, ``read-only``, ``busy``, ``unreachable``,
    ``unavailable``), so that an answer to a webhook sender never carries paths or
    connection details.
    """

    def __init__(self, message: str, *, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class IngestResult:
    """Outcome of :meth:`Storage.ingest_predictions`."""

    inserted: int
    duplicates: int
    feedback_joined: int = 0


@dataclass(frozen=True)
class FeedbackRecord:
    """Stored feedback; ``prediction_id`` is filled once the prediction is known."""

    id: str
    type: FeedbackType
    prediction_id: str | None
    trace_id: str | None
    span_id: str | None
    detection_index: int | None
    corrected_class: str | None
    corrected_box: tuple[float, float, float, float] | None
    reviewer: str | None
    comment: str | None
    time_unix_nano: int
    model_id: str | None = None
    duplicate: bool = False
    """True when this post repeated an idempotency key: the stored record is returned."""


@dataclass(frozen=True)
class ModelRecord:
    """A model seen in telemetry or registered; ``id`` is the ``model_id``."""

    id: str
    versions: tuple[str, ...]
    first_seen_unix_nano: int
    last_seen_unix_nano: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetVersionRecord:
    id: str
    dataset_id: str
    name: str
    parent_version_id: str | None
    created_unix_nano: int


@dataclass(frozen=True)
class DatasetRecord:
    id: str
    name: str
    description: str
    created_unix_nano: int
    versions: tuple[DatasetVersionRecord, ...]

    @property
    def version(self) -> DatasetVersionRecord:
        """The latest version (a new dataset has one, empty)."""
        return self.versions[-1]


@dataclass(frozen=True)
class AggregateRow:
    """One mergeable per-hour aggregate cell.

    Every cell holds ``count`` things counted, ``value`` the sum of one measured
    quantity over them and ``value_sq`` the sum of its squares, so that cells of
    several hours, versions or arms add up and still give a mean *and* a variance
    (``var = value_sq / count - (value / count) ** 2``). The bins are those of
    :mod:`detwatch.contract.bins` (fixed forever); ``key`` is ``str(bin)``, prefixed by
    ``class|`` where the class matters (split on the *last* ``|``: a class name may
    contain one).

    - ``images`` (key ""): count images, value their detections;
    - ``empty_images`` (""): count images without a detection, value 0;
    - ``image_detections`` (``detections_bin(n)``): count images, value n;
    - ``detections`` (class): count detections, value their confidences;
    - ``confidence`` (``class|confidence_bin``): count detections, value confidences;
    - ``box_area`` (``class|area_bin``): count detections, value the relative box
      area (w * h over the image's area);
    - ``aspect_ratio`` (``aspect_bin(w, h)``): count detections, value w / h;
    - ``latency_ms_sum`` (""): count images that reported a latency, value the ms;
    - ``latency_ms`` (``latency_bin(ms)``): the same per latency bin.

    ``box_area`` needs the image size (``image.width``/``height``), or boxes that are
    relative already (an event without an image size whose boxes all lie within
    ``[0, 1]``: what the decorator sends for normalised boxes on an image of unknown
    size). ``aspect_ratio`` is counted for boxes in pixels only: a ratio of normalised
    coordinates is not the box's shape. Both follow the ``objdet.detection.box.*``
    histograms.

    - ``confidence_all`` (""): count detections of every class, value confidences;
    - ``box_log10_area`` (""): count boxes with a (non-zero) relative area, value its
      log10;
    - ``box_log2_aspect`` (""): count boxes in pixels, value log2(w / h).

    ``ab_variant`` is "" outside an A/B test; ``hour_unix`` is the start of the hour
    (UTC seconds) of the events' own time. Cells written before schema version 2 have
    ``value_sq`` 0 and none of the kinds it added.

    **Per-image sums.** Detections of one image move together (a dark frame lowers all
    its confidences), so the image, not the detection, is the unit of independent
    evidence. The kinds that count detections for a statistic (``detections``,
    ``confidence_all``, ``box_log10_area``, ``box_log2_aspect``) also keep, with
    ``n_i`` and ``s_i`` the count and value sum of image ``i`` in the cell and ``N_i``
    its count in the whole kind (its detections, for ``detections``): ``images`` (the
    images with ``n_i > 0``), ``count_sq`` (sum of ``n_i**2``), ``image_value_sq``
    (``s_i**2``), ``count_value`` (``n_i * s_i``) and ``count_total`` (``n_i *
    N_i``). They are sums over images, so they add up like the rest (an image lies in
    one hour); :mod:`detwatch.stats.clustered` turns them into cluster-robust variances.
    Other kinds leave them 0, and so do cells written before schema version 6 (``images
    == 0`` with ``count > 0``): readers take those detections as independent.
    """

    model_id: str
    model_version: str
    ab_variant: str
    hour_unix: int
    kind: str
    key: str
    count: int
    value: float
    value_sq: float = 0.0
    images: int = 0
    count_sq: float = 0.0
    image_value_sq: float = 0.0
    count_value: float = 0.0
    count_total: float = 0.0


@dataclass(frozen=True)
class ABTestRecord:
    """An A/B test as stored; ``config`` is the validated configuration as JSON."""

    id: str
    name: str
    model_a_id: str
    model_b_id: str
    config: dict[str, Any]
    status: str
    created_unix_nano: int
    start_unix_nano: int
    end_unix_nano: int


# ---------------------------------------------------------------- the data engine (review)

# The statuses are the wire's (one home: the contract's review shapes).


class ConflictError(Exception):
    """A state change that the item's or job's current state does not allow (409)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PolicyRecord:
    """A model's stored flagging policy (its configuration as given) and the dataset its items go to."""

    model_id: str
    config: dict[str, Any]
    target_dataset_id: str
    updated_unix_nano: int


@dataclass(frozen=True)
class NewFlag:
    """A prediction the review policy selected, as an ingest hook hands it to storage."""

    dataset_id: str
    prediction: Prediction
    reasons: tuple[str, ...]
    created_unix_nano: int
    inclusion_probability: float | None = None
    """The chance the policy selected it (``None``: flagged by feedback only, not a probability sample)."""


@dataclass(frozen=True)
class ItemFeedback:
    """Feedback on a flagged item's prediction, shown beside the item."""

    id: str
    type: str
    detection_index: int | None
    corrected_class: str | None
    corrected_box: list[float] | None
    reviewer: str | None
    comment: str | None
    time_unix_nano: int


@dataclass(frozen=True)
class FlaggedItemRecord:
    """A prediction in the review queue: what review needs of it, copied (raw events expire)."""

    id: str
    dataset_id: str
    prediction_id: str
    model_id: str
    model_version: str | None
    time_unix_nano: int
    reasons: list[str]
    detections: list[dict[str, Any]]
    """As stored: ``{"class", "confidence", "box"}`` each."""
    image: ImageRef
    status: str
    assignee: str | None
    claimed_unix_nano: int | None
    label: list[dict[str, Any]] | None
    """The reviewer's annotations (``{"class", "box"}``), canonical order; ``None`` until labelled."""
    reviewer: str | None
    feedback: tuple[ItemFeedback, ...]
    created_unix_nano: int
    updated_unix_nano: int
    inclusion_probability: float | None = None
    """The chance the flagging policy selected it, taken at flag time; ``None`` when only
    feedback flagged it (not a probability sample) or it was flagged before this was stored."""
    ab_variant: str | None = None
    """The A/B arm (``"a"``/``"b"``) its prediction was routed to; ``None`` outside a test, or for an
    item whose prediction had expired before arms were kept with items."""


@dataclass(frozen=True)
class AlertRecord:
    """A stored alert definition; ``definition`` is its input form (``AlertDefinition.to_json``).

    ``revision`` is the set's revision when this row was last written: a reader that
    parsed the row at that revision need not parse it again.
    """

    slug: str
    name: str
    model_id: str
    definition: dict[str, Any]
    revision: int
    created_unix_nano: int
    updated_unix_nano: int


@dataclass(frozen=True)
class ItemPage:
    """One page of the review queue and the keyset of the next one (``None`` at the end)."""

    items: list[FlaggedItemRecord]
    next_key: tuple[int, str] | None
    """``(created_unix_nano, id)`` of the page's last item."""


@dataclass(frozen=True)
class ReviewProgress:
    """How far a dataset's review queue is: items per status, and per reviewer per status."""

    by_status: dict[str, int]
    """``needs_review``, ``in_review``, ``labeled``, ``rejected``: every status, 0 when none."""
    by_reviewer: dict[str, dict[str, int]]
    """Per reviewer (the one who holds the claim, or who reviewed), items per status they hold."""


@dataclass(frozen=True)
class FlagPage:
    """What one page of a backfill evaluated (:meth:`ReviewStorage.flag_predictions_page`)."""

    examined: int
    flagged: int
    last: tuple[int, str]
    """``(time_unix_nano, prediction_id)`` of the oldest prediction of the page (``(0, "")`` when empty)."""


@dataclass(frozen=True)
class DatasetSnapshotRecord:
    """An immutable, content-addressed dataset version.

    The fields are in the order of the version's JSON document, which a dataclass keeps.
    """

    id: str
    dataset_id: str
    name: str
    parent_version_id: str | None
    created_unix_nano: int
    content_hash: str
    item_count: int
    class_counts: dict[str, int]
    diff: dict[str, Any]


@dataclass(frozen=True)
class TrainingJobRecord:
    """A training job; ``callback_url`` and ``callback_token`` are for its trainer only."""

    id: str
    name: str
    dataset_id: str
    version_id: str
    base_model_id: str | None
    options: dict[str, Any]
    status: str
    callback_url: str | None
    callback_token: str
    attempts: int
    handed_off: bool
    last_error: str | None
    model_version: str | None
    history: list[dict[str, Any]]
    created_unix_nano: int
    updated_unix_nano: int
    gate: dict[str, Any] | None = None
    """The rule the new version must pass to be registered (``{"metric", "max_drop"}``), or ``None``."""
    gate_result: dict[str, Any] | None = None
    """The gate's judgement, made when the trainer reported success."""


@dataclass(frozen=True)
class AlertWrite:
    """What :meth:`Storage.put_alert` did: the row as stored (its ``revision`` is the set's new one), and
    whether it replaced an alert of that name."""

    record: AlertRecord
    replaced: bool


class AlertNameTaken(ValueError):
    """The alert's name (its slug) is held by another model's alert; nothing was written.

    Names are global (they name rules and route notifications): replacing the other
    model's alert silently would drop it.
    """

    def __init__(self, existing: AlertRecord) -> None:
        super().__init__(f"an alert named {existing.name!r} exists for model {existing.model_id!r}")
        self.existing = existing
