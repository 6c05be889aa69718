"""Companion storage: one interface, SQLite by default, PostgreSQL for several replicas.

Why this shape:

- **Bounded.** Raw prediction events are kept for a retention window
  (:meth:`Storage.expire_predictions`); what analyses need for longer lives in
  mergeable per-hour aggregates (counts, fixed-bin histograms) updated in the same
  transaction that inserts the events, so a drift report over months reads a few
  thousand rows, whatever the traffic.
- **Idempotent.** A prediction is stored once per ``prediction_id`` (a Collector
  retrying a batch, a client re-sending) and only newly inserted events touch the
  aggregates. Feedback posted twice with the same idempotency key counts once.
- **Joins late.** Feedback may name a prediction that has not arrived yet (by
  ``prediction_id``, or by the span's ``trace_id``/``span_id``); it is kept and
  joined when the prediction arrives.
- **Portable SQL.** Ids are generated in Python (no autoincrement), upserts use
  ``INSERT ... ON CONFLICT``, which SQLite (>= 3.24) and PostgreSQL share; schema
  changes are numbered migrations applied at start-up under a lock.

Open a backend with :func:`open_storage` from a URL: ``sqlite:///path/to/file.db``
or ``postgresql://user@host/db``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..bins import CONFIDENCE_BINS
from ..predictions import Prediction

__all__ = [
    "AGGREGATE_KINDS",
    "CONFIDENCE_BINS",
    "FEEDBACK_TYPES",
    "ABTestRecord",
    "AggregateRow",
    "DatasetRecord",
    "DatasetVersionRecord",
    "FeedbackInput",
    "FeedbackRecord",
    "FeedbackType",
    "IngestResult",
    "ModelRecord",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "open_storage",
]

FeedbackType = Literal["correct", "wrong_label", "wrong_box", "false_positive", "missed_object"]
FEEDBACK_TYPES: tuple[FeedbackType, ...] = ("correct", "wrong_label", "wrong_box", "false_positive", "missed_object")

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
class FeedbackInput:
    """One feedback item as the webhook received it (already validated)."""

    type: FeedbackType
    prediction_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    detection_index: int | None = None
    corrected_class: str | None = None
    corrected_box: tuple[float, float, float, float] | None = None
    reviewer: str | None = None
    comment: str | None = None
    idempotency_key: str | None = None
    time_unix_nano: int = 0
    """When the feedback was given; 0 means when it is stored."""


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
    :mod:`detwatch.bins` (fixed forever); ``key`` is ``str(bin)``, prefixed by
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
    one hour); :mod:`detwatch.clustered` turns them into cluster-robust variances.
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


class Storage(Protocol):
    """What the companion needs from a database. Implementations are thread-safe."""

    url: str

    def migrate(self) -> int:
        """Apply pending migrations (idempotent, safe from several processes); returns the schema version."""
        ...

    def close(self) -> None: ...

    def check_writable(self) -> None:
        """Start a write and roll it back; raises :class:`StorageUnavailable` if it cannot be made now.

        The readiness probe (``/readyz``): it finds a server that is down, a read-only
        database (a standby, a read-only file) and a lock held too long, and commits nothing.
        """
        ...

    def ingest_predictions(self, predictions: Sequence[Prediction]) -> IngestResult:
        """Insert new predictions (by ``prediction_id``), update models and aggregates, join waiting feedback.

        Each event is stored in one transaction together with its aggregates and joins:
        a whole batch on PostgreSQL, chunks of a batch on SQLite (whose single write lock
        feedback waits for). A batch that fails part-way may be partly stored; nothing
        is acknowledged then, and the sender's retry stores the rest without duplicates.
        Raises :class:`StorageUnavailable` when the database cannot take writes.
        """
        ...

    def get_prediction(self, prediction_id: str) -> Prediction | None: ...

    def find_predictions_by_span(self, trace_id: str, span_id: str) -> list[Prediction]: ...

    def add_feedback(self, items: Sequence[FeedbackInput]) -> list[FeedbackRecord]:
        """Store feedback (one transaction); an item whose idempotency key was seen returns the stored record
        with ``duplicate=True`` and is not stored again.

        Feedback naming a span that holds several predictions (a batch) keeps the span and
        ``detection_index`` with ``prediction_id`` None (the model is filled in); feedback
        naming a prediction not stored yet is joined when it arrives.
        """
        ...

    def list_feedback(self, *, model_id: str | None = None, limit: int = 100) -> list[FeedbackRecord]: ...

    def register_model(self, model_id: str, version: str | None, metadata: dict[str, Any]) -> ModelRecord:
        """Create the model (or add ``version`` to it); non-empty ``metadata`` replaces the stored one."""
        ...

    def get_model(self, model_id: str) -> ModelRecord | None: ...

    def list_models(self) -> list[ModelRecord]: ...

    def create_dataset(self, name: str, description: str) -> DatasetRecord:
        """A new dataset with its first, empty version named ``v1``."""
        ...

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None: ...

    def create_dataset_version(self, dataset_id: str, name: str, parent_version_id: str | None) -> DatasetVersionRecord:
        """A version ordered after the existing ones; raises ``LookupError`` for an unknown dataset."""
        ...

    def aggregates(
        self, model_id: str, start_unix_nano: int, end_unix_nano: int, kinds: Sequence[str] | None = None
    ) -> list[AggregateRow]:
        """Cells of ``model_id`` whose hour *starts* in ``[start, end)``, all kinds or those named."""
        ...

    def compact_aggregates(self, before_unix_nano: int) -> int:
        """Roll hourly cells of whole days before the cutoff into daily cells; the hourly rows removed."""
        ...

    def expire_predictions(self, before_unix_nano: int) -> int:
        """Delete raw predictions older than the retention window; aggregates stay."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts per table, for ``detwatch status`` and tests."""
        ...

    def create_ab_test(
        self,
        *,
        name: str,
        model_a_id: str,
        model_b_id: str,
        config: dict[str, Any],
        start_unix_nano: int,
        end_unix_nano: int,
    ) -> ABTestRecord: ...

    def get_ab_test(self, ab_test_id: str) -> ABTestRecord | None: ...

    def list_ab_tests(self, limit: int = 100) -> list[ABTestRecord]: ...

    def set_ab_test_status(self, ab_test_id: str, status: str, end_unix_nano: int | None = None) -> bool:
        """Set ``status`` (and move the end, e.g. when stopped early); False for an unknown test or one already in it.

        A test already in ``status`` keeps its end: of two stops at once, the first one's stands.
        """
        ...

    def ab_arm_sums(
        self,
        *,
        model_id: str,
        version: str | None,
        variant: str | None,
        start_hour: int,
        end_hour: int,
        kinds: Sequence[str],
        by_hour: bool,
    ) -> list[tuple[int, str, str, int, float, float, int, float, float, float, float]]:
        """One A/B arm's cells summed per hour (keys added up) or per key (hours added up); hours in seconds.

        ``variant`` ``None`` takes the model's (and version's) traffic whatever its A/B tag.

        Each row is ``(hour_unix, kind, key, count, value, value_sq, images, count_sq,
        image_value_sq, count_value, count_total)``.
        """
        ...

    def ab_feedback_counts(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, str, int]]:
        """``(hour_unix, type, count)`` of feedback on one arm's predictions in ``[start, end)``."""
        ...

    def ab_feedback_image_sums(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, int, int, int, int, int, int]]:
        """Feedback on one arm's predictions summed per image, then per hour (``_abtests.feedback_image_sums``)."""
        ...


def open_storage(url: str) -> Storage:
    """Open (without migrating) the backend for ``url``."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStorage

        return SQLiteStorage(url)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresStorage

        return PostgresStorage(url)
    raise ValueError(f"database url: expected sqlite:///path or postgresql://..., got {url!r}")
