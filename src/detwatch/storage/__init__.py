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

from detwatch.contract.bins import CONFIDENCE_BINS
from detwatch.contract.feedback import FEEDBACK_TYPES, FeedbackInput, FeedbackType
from detwatch.storage.protocols import (
    ABTestStorage,
    AlertStore,
    FeedbackStorage,
    FlagWriter,
    IngestHook,
    PredictionStorage,
    QualityStorage,
    RegistryStorage,
    ReviewStorage,
    Storage,
)
from detwatch.storage.records import (
    AGGREGATE_KINDS,
    ABTestRecord,
    AggregateRow,
    AlertNameTaken,
    AlertRecord,
    AlertWrite,
    ConflictError,
    DatasetRecord,
    DatasetSnapshotRecord,
    DatasetVersionRecord,
    FeedbackRecord,
    FlaggedItemRecord,
    IngestResult,
    ModelRecord,
    PolicyRecord,
    StorageClosed,
    StorageError,
    StorageUnavailable,
    TrainingJobRecord,
)

__all__ = [
    "AGGREGATE_KINDS",
    "CONFIDENCE_BINS",
    "FEEDBACK_TYPES",
    "ABTestRecord",
    "ABTestStorage",
    "AggregateRow",
    "AlertNameTaken",
    "AlertRecord",
    "AlertStore",
    "AlertWrite",
    "ConflictError",
    "DatasetRecord",
    "DatasetSnapshotRecord",
    "DatasetVersionRecord",
    "FeedbackInput",
    "FeedbackRecord",
    "FeedbackStorage",
    "FeedbackType",
    "FlagWriter",
    "FlaggedItemRecord",
    "IngestHook",
    "IngestResult",
    "ModelRecord",
    "PolicyRecord",
    "PredictionStorage",
    "QualityStorage",
    "RegistryStorage",
    "ReviewStorage",
    "Storage",
    "StorageClosed",
    "StorageError",
    "StorageUnavailable",
    "TrainingJobRecord",
    "open_storage",
]


def open_storage(url: str) -> Storage:
    """Open (without migrating) the backend for ``url``."""
    if url.startswith("sqlite:"):
        from detwatch.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url)
    if url.startswith(("postgresql:", "postgres:")):
        from detwatch.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    raise ValueError(f"database url: expected sqlite:///path or postgresql://..., got {url!r}")
