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

from ..predictions import Prediction

__all__ = [
    "FEEDBACK_TYPES",
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

CONFIDENCE_BINS = 20
"""Confidence histograms in aggregates: 20 bins of 0.05 (the metric's bounds)."""


class StorageError(Exception):
    """Base class of storage failures."""


class StorageUnavailable(StorageError):
    """The database cannot take writes now (disk full, read-only, locked, down): retry later (503)."""


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

    ``kind`` and ``key`` say what is counted: ``images`` (key ""), ``empty_images``
    (""), ``detections`` (class), ``confidence`` (``class|bin``, bin 0..19 of width
    0.05, ``min(int(confidence / 0.05), 19)``; split on the *last* ``|``, a class
    name may contain one), ``latency_ms_sum`` ("") with ``value`` the sum.

    ``value``: for ``images`` the number of detections on them; for ``detections``
    and ``confidence`` the sum of the confidences counted (means per class or bin);
    for ``latency_ms_sum`` the sum of the latencies of the ``count`` images that
    reported one; 0 for ``empty_images``. ``ab_variant`` is "" outside an A/B test;
    ``hour_unix`` is the start of the hour (UTC seconds) of the events' own time.
    """

    model_id: str
    model_version: str
    ab_variant: str
    hour_unix: int
    kind: str
    key: str
    count: int
    value: float


class Storage(Protocol):
    """What the companion needs from a database. Implementations are thread-safe."""

    url: str

    def migrate(self) -> int:
        """Apply pending migrations (idempotent, safe from several processes); returns the schema version."""
        ...

    def close(self) -> None: ...

    def ingest_predictions(self, predictions: Sequence[Prediction]) -> IngestResult:
        """Insert new predictions (by ``prediction_id``), update models and aggregates, join waiting feedback.

        All in one transaction: either the whole batch is stored or nothing is.
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

    def expire_predictions(self, before_unix_nano: int) -> int:
        """Delete raw predictions older than the retention window; aggregates stay."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts per table, for ``detwatch status`` and tests."""
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
