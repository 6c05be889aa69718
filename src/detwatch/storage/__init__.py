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
or ``postgresql://user@host/db``, or a scheme a program registered with
:func:`register_backend` (a backend of its own that implements the protocols).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

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
    ReviewProgress,
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
    "BackendOpener",
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
    "ReviewProgress",
    "ReviewStorage",
    "Storage",
    "StorageClosed",
    "StorageError",
    "StorageUnavailable",
    "TrainingJobRecord",
    "backend_for",
    "open_storage",
    "register_backend",
]


BackendOpener = Callable[[str], Storage]
"""Opens (without migrating) a backend for a database URL of its scheme."""


def _open_sqlite(url: str) -> Storage:
    from detwatch.storage.sqlite import SQLiteStorage

    return SQLiteStorage(url)


def _open_postgres(url: str) -> Storage:
    from detwatch.storage.postgres import PostgresStorage

    return PostgresStorage(url)


_BACKENDS: dict[str, BackendOpener] = {"sqlite": _open_sqlite, "postgresql": _open_postgres, "postgres": _open_postgres}
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def register_backend(scheme: str, opener: BackendOpener) -> None:
    """Make ``open_storage`` open URLs of ``scheme`` (``"mystore"`` for ``mystore://...``) with ``opener``.

    A backend implements the :class:`Storage` protocols; it need not derive from the SQL
    backends. Register it before the companion opens its storage (before ``create_app``,
    or at import of the module that gunicorn loads), in every process: each process
    opens its own storage, after the fork.
    """
    if not _SCHEME.fullmatch(scheme + ":"):
        raise ValueError(f"scheme: expected letters, digits, '+', '.' or '-' after a letter, got {scheme!r}")
    _BACKENDS[scheme.lower()] = opener


def backend_for(url: str) -> BackendOpener:
    """The opener registered for ``url``'s scheme; ``ValueError`` naming the known schemes if none is."""
    found = _SCHEME.match(url)
    opener = _BACKENDS.get(found.group(1).lower()) if found else None
    if opener is None:
        known = ", ".join(f"{scheme}:" for scheme in _BACKENDS)
        raise ValueError(f"database url: expected sqlite:///path or postgresql://... (schemes: {known}), got {url!r}")
    return opener


def open_storage(url: str) -> Storage:
    """Open (without migrating) the backend for ``url``: SQLite, PostgreSQL or a registered one."""
    return backend_for(url)(url)
