"""The SQL both backends share: one implementation of :class:`~detwatch.storage.Storage`.

Every query is written once, with ``?`` placeholders (PostgreSQL's backend turns
them into ``%s``), so that SQLite and PostgreSQL behave identically; a backend
supplies only connections, transaction statements, locks and the mapping of its
errors to :class:`StorageUnavailable`.

Decisions the code cannot show:

- **Connections.** A small pool per process (at most ``pool_size`` open, each used
  by one thread at a time), rather than one connection per thread: gunicorn's
  ``gthread`` workers and Flask's dev server come and go with threads, and a
  connection left behind by a finished thread would stay open until garbage
  collection. A connection that failed is closed instead of being returned; one
  taken from the pool that turns out dead when its transaction begins (the server
  restarted while it was idle) is replaced once, transparently. After a ``fork``
  the child never touches its parent's connections.
- **Idempotent ingest.** One query for the batch's ids that are stored already;
  only the others are inserted (plain INSERT, COPY on PostgreSQL) and update models
  and aggregates, in the same transaction, so a re-sent batch changes nothing. On
  SQLite the write lock, taken at BEGIN, makes check-then-insert safe; on PostgreSQL
  two transactions inserting the same new id collide on the primary key, and the
  later one redoes its insert with ``ON CONFLICT DO NOTHING`` inside a savepoint.
- **Mergeable aggregates.** A batch is summed per cell in Python first, then one
  ``INSERT ... ON CONFLICT ... DO UPDATE SET count = aggregates.count +
  excluded.count`` per cell.
- **Lock order.** Writers touch rows in one global order (predictions by id, then
  models, versions, aggregate cells and feedback rows, each sorted) so that
  concurrent PostgreSQL transactions cannot deadlock on each other; a deadlock or
  serialization failure that happens anyway is retried.
- **Late joins.** A feedback post and the ingest of its prediction may run at the
  same time; under PostgreSQL's READ COMMITTED neither would see the other's
  uncommitted row and the join would be lost. Ingest therefore holds a *shared*
  lock and feedback whose prediction is not stored yet an *exclusive* one (SQLite's
  write lock already serialises them), so the later of the two always sees the
  other. Feedback on a stored prediction (the usual case) cannot race and takes no
  lock, so it never waits behind ingest batches.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, cast

from detwatch.contract.bins import CONFIDENCE_BINS, confidence_bin
from detwatch.contract.feedback import FeedbackInput, FeedbackType
from detwatch.contract.predictions import Prediction
from detwatch.storage import (
    _abtests,
    _alerts,
    _cells,
    _compaction,
    _missed_objects,
    _review,
    _snapshots,
    _training_jobs,
    _version_predictions,
)
from detwatch.storage._aggregate import AggregateKey, BatchMeasures, Cell, aggregate_cells
from detwatch.storage._rows import (
    _PREDICTION_COLUMNS,
    _PREDICTION_WIDTH,
    _dumps,
    _prediction_from_row,
    _prediction_row,
)
from detwatch.storage._schema import (
    CELL_SUMS,
    LATEST_VERSION,
    MIGRATIONS,
    SCHEMA_MIGRATIONS_TABLE,
    TABLES,
    Dialect,
    statements_for,
)
from detwatch.storage._transaction import Transaction
from detwatch.storage.protocols import MAX_LABELLED_ITEMS, FlagFunction, IngestHook
from detwatch.storage.records import (
    ABTestRecord,
    AggregateRow,
    AlertRecord,
    AlertWrite,
    DatasetRecord,
    DatasetSnapshotRecord,
    DatasetVersionRecord,
    FeedbackRecord,
    FlaggedItemRecord,
    FlagPage,
    IngestResult,
    ItemPage,
    ModelRecord,
    PolicyRecord,
    ReviewProgress,
    StorageClosed,
    StorageError,
    StorageUnavailable,
    TrainingJobRecord,
)

__all__ = ["CONFIDENCE_BINS", "LockName", "SQLStorage", "Transaction", "aggregate_cells", "confidence_bin"]

T = TypeVar("T")
C = TypeVar("C")

NS_PER_SECOND: Final = 1_000_000_000
SECONDS_PER_HOUR: Final = 3600

CHUNK_ROWS: Final = 500
"""Values per IN list, far below SQLite's 32766 and PostgreSQL's 65535 bound parameters."""

EXPIRE_CHUNK: Final = 5000
"""Predictions deleted per transaction, so that expiry never holds the write lock long."""

WRITE_ATTEMPTS: Final = 5
"""Tries of a write transaction that failed with a deadlock or serialization failure."""

DATASET_FIRST_VERSION: Final = "v1"

LockName = Literal["migrate", "feedback_join"]


class _Pool(Generic[C]):
    """At most ``size`` connections of one process, each lent to one thread at a time."""

    def __init__(
        self,
        connect: Callable[[], C],
        discard: Callable[[C], None],
        usable: Callable[[C], bool],
        size: int,
        timeout: float,
    ) -> None:
        if size < 1:
            raise ValueError("pool_size must be at least 1")
        self._connect = connect
        self._discard = discard
        self._usable = usable
        self._size = size
        self._timeout = timeout
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[C] = []
        self._closed = False
        self._pid = os.getpid()
        self._orphans: list[C] = []

    def _after_fork(self) -> None:
        # A forked child shares its parent's sockets and file handles: closing them here
        # would end the parent's PostgreSQL sessions, so they are only forgotten (kept
        # referenced, so that no finaliser runs on them either).
        with self._lock:
            if self._pid != os.getpid():
                self._orphans.extend(self._idle)
                self._idle = []
                self._slots = threading.BoundedSemaphore(self._size)
                self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[tuple[C, bool]]:
        """Lend a connection; the flag says whether it was reused from the pool."""
        if self._pid != os.getpid():
            self._after_fork()
        if self._closed:
            raise StorageClosed("storage is closed")
        slots = self._slots
        if not slots.acquire(timeout=self._timeout):
            raise StorageUnavailable(
                f"all {self._size} database connections stayed busy for {self._timeout:g} s", reason="busy"
            )
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            if conn is None:
                conn = self._connect()
            keep = False
            try:
                yield conn, reused
                keep = True
            finally:
                keep = keep or self._usable(conn)
                with self._lock:
                    if keep and not self._closed and self._pid == os.getpid():
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    self._discard_quietly(conn)
        finally:
            slots.release()

    def _discard_quietly(self, conn: C) -> None:
        # Closing a broken connection may fail too; that must not mask the real error.
        with contextlib.suppress(Exception):
            self._discard(conn)

    def purge(self) -> None:
        """Close the idle connections (one was found dead: the others likely are too).

        In a forked child that has not used the pool yet, the idle connections are the
        parent's: they are forgotten (:meth:`_after_fork`), never closed from here.
        """
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard_quietly(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.purge()


class _RolledBack(Exception):
    """Raised inside a transaction only to roll it back (:meth:`SQLStorage.check_writable`)."""


_MIGRATIONS_TABLE_NAME: Final = "schema_migrations"


class _StaleConnection(Exception):
    """A pooled connection was found dead when its transaction began: use a fresh one."""


def _chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _ceil_seconds(unix_nano: int) -> int:
    return -(-unix_nano // NS_PER_SECOND)


_FEEDBACK_COLUMNS: Final = (
    "id, type, prediction_id, trace_id, span_id, detection_index, corrected_class, corrected_box, reviewer, comment, "
    "time_unix_nano, model_id"
)

_INSERT_PREDICTION: Final = f"INSERT INTO predictions ({_PREDICTION_COLUMNS}) VALUES ({_marks(_PREDICTION_WIDTH)})"


def _cell_rows(cells: dict[AggregateKey, Cell]) -> list[tuple[Any, ...]]:
    """Cells as upsert rows, in the global lock order (sorted)."""
    return [(*key, *cell) for key, cell in sorted(cells.items())]


_UPSERT_AGGREGATE: Final = f"""
INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, {", ".join(CELL_SUMS)})
VALUES ({_marks(6 + len(CELL_SUMS))})
ON CONFLICT (model_id, model_version, ab_variant, hour_unix, kind, key) DO UPDATE SET
    {", ".join(f"{c} = aggregates.{c} + excluded.{c}" for c in CELL_SUMS)}
"""

# Portable LEAST/GREATEST: SQLite spells them min()/max(), PostgreSQL does not.
_UPSERT_MODEL_SEEN: Final = """
INSERT INTO models (model_id, metadata, first_seen_unix_nano, last_seen_unix_nano) VALUES (?, '{}', ?, ?)
ON CONFLICT (model_id) DO UPDATE SET
    first_seen_unix_nano = CASE WHEN excluded.first_seen_unix_nano < models.first_seen_unix_nano
        THEN excluded.first_seen_unix_nano ELSE models.first_seen_unix_nano END,
    last_seen_unix_nano = CASE WHEN excluded.last_seen_unix_nano > models.last_seen_unix_nano
        THEN excluded.last_seen_unix_nano ELSE models.last_seen_unix_nano END
WHERE excluded.first_seen_unix_nano < models.first_seen_unix_nano
    OR excluded.last_seen_unix_nano > models.last_seen_unix_nano
"""

_UPSERT_VERSION_SEEN: Final = """
INSERT INTO model_versions (model_id, version, first_seen_unix_nano, last_seen_unix_nano) VALUES (?, ?, ?, ?)
ON CONFLICT (model_id, version) DO UPDATE SET
    first_seen_unix_nano = CASE WHEN excluded.first_seen_unix_nano < model_versions.first_seen_unix_nano
        THEN excluded.first_seen_unix_nano ELSE model_versions.first_seen_unix_nano END,
    last_seen_unix_nano = CASE WHEN excluded.last_seen_unix_nano > model_versions.last_seen_unix_nano
        THEN excluded.last_seen_unix_nano ELSE model_versions.last_seen_unix_nano END
WHERE excluded.first_seen_unix_nano < model_versions.first_seen_unix_nano
    OR excluded.last_seen_unix_nano > model_versions.last_seen_unix_nano
"""


class SQLStorage:
    """The shared implementation; subclasses provide the connection-level hooks below."""

    dialect: ClassVar[Dialect]
    errors: ClassVar[tuple[type[Exception], ...]]
    """The driver's exception base classes, translated by :meth:`_translate`."""
    table_exists_sql: ClassVar[str]
    ingest_chunk: int = 0
    """Events between ingest's looks for a waiting writer (0: never look, a whole batch per transaction).

    A backend's default, set per instance; see :meth:`_writer_waiting`.
    """

    url: str

    def __init__(self, url: str, *, pool_size: int, pool_timeout: float) -> None:
        self.url = url
        self._pool: _Pool[Any] = _Pool(self._connect, self._discard, self._usable, pool_size, pool_timeout)
        self._ingest_hooks: tuple[IngestHook, ...] = ()

    def add_ingest_hook(self, hook: IngestHook) -> None:
        """Call ``hook`` inside every later ingest and feedback transaction (see :class:`IngestHook`)."""
        self._ingest_hooks = (*self._ingest_hooks, hook)  # replaced, never mutated: ingest threads iterate it

    # ------------------------------------------------------------------ backend hooks

    def _connect(self) -> Any:
        raise NotImplementedError

    def _discard(self, conn: Any) -> None:
        conn.close()

    def _usable(self, conn: Any) -> bool:
        """Whether ``conn`` can go back to the pool (no transaction left open, not broken)."""
        raise NotImplementedError

    def _begin(self, conn: Any, *, write: bool, bulk: bool = False) -> Any:
        """Start a transaction; returns the cursor to run it on. ``bulk``: ingest, which may yield to others."""
        raise NotImplementedError

    def _rollback(self, conn: Any) -> None:
        raise NotImplementedError

    def _convert(self, sql: str) -> str:
        return sql

    def _returning_many(self, cursor: Any, sql: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Run ``sql`` once per row, collecting what it returns (in process, one by one is cheap)."""
        out: list[tuple[Any, ...]] = []
        for row in rows:
            cursor.execute(sql, row)
            out.extend(tuple(r) for r in cursor.fetchall())
        return out

    def _existing_ids(self, tx: Transaction, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored (one indexed lookup per id, a query per chunk)."""
        found: set[str] = set()
        for chunk in _chunks(ids):
            sql = f"SELECT prediction_id FROM predictions WHERE prediction_id IN ({_marks(len(chunk))})"
            found.update(str(r[0]) for r in tx.query(sql, chunk))
        return found

    def _insert_predictions(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> set[str] | None:
        """Insert prediction rows the caller found not stored; the ids inserted if not all were, else None.

        Here the write lock, taken at BEGIN, keeps every other writer out: all are new.
        """
        tx.executemany(_INSERT_PREDICTION, rows)
        return None

    def _upsert_aggregates(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> None:
        """Merge cells ``(model_id, version, ab_variant, hour_unix, kind, key, count, value, value_sq)``."""
        tx.executemany(_UPSERT_AGGREGATE, rows)

    def _lock(self, tx: Transaction, name: LockName, *, shared: bool = False) -> None:
        """Take a transaction-scoped lock (no-op where the write lock already serialises writers)."""

    def _translate(self, exc: Exception) -> StorageError:
        raise NotImplementedError

    def _retryable(self, exc: Exception) -> bool:
        return False

    # ------------------------------------------------------------------ transactions

    def _run(self, work: Callable[[Transaction], T], *, write: bool, bulk: bool = False) -> T:
        """Run ``work`` in one transaction, retrying deadlocks; driver errors become StorageError."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._pool.connection() as (conn, reused):
                    return self._transaction(conn, reused, work, write=write, bulk=bulk)
            except _StaleConnection as stale:
                self._pool.purge()
                if attempt >= WRITE_ATTEMPTS:
                    raise self._translate(cast(Exception, stale.__cause__)) from stale.__cause__
            except self.errors as exc:
                if self._retryable(exc) and attempt < WRITE_ATTEMPTS:
                    time.sleep(random.uniform(0.0, 0.02 * attempt))
                    continue
                raise self._translate(exc) from exc

    def _transaction(
        self, conn: Any, reused: bool, work: Callable[[Transaction], T], *, write: bool, bulk: bool = False
    ) -> T:
        try:
            cursor = self._begin(conn, write=write, bulk=bulk)
        except self.errors as exc:
            if reused and not self._usable(conn):
                raise _StaleConnection() from exc
            raise
        try:
            result = work(Transaction(cursor, self._convert, self._returning_many))
            cursor.execute("COMMIT")
        except BaseException:
            # The original error matters; a connection that cannot roll back is dropped by the pool.
            with contextlib.suppress(Exception):
                self._rollback(conn)
            raise
        if write:
            self._after_commit(conn, bulk=bulk)
        return result

    def _after_commit(self, conn: Any, *, bulk: bool) -> None:
        """Housekeeping after a write committed, outside the transaction (the SQLite WAL checkpoint)."""

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ migrations

    def _schema_version(self, tx: Transaction) -> int:
        if not tx.query(self.table_exists_sql, ("schema_migrations",)):
            return 0
        rows = tx.query("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    def migrate(self) -> int:
        current = self._run(self._schema_version, write=False)
        if current > LATEST_VERSION:
            raise StorageError(
                f"the database schema is version {current}, newer than this detwatch knows ({LATEST_VERSION}): "
                "upgrade detwatch"
            )
        if current == LATEST_VERSION:
            return current  # the common start-up: no write lock taken, works on a read-only database
        return self._run(self._apply_migrations, write=True)

    def _apply_migrations(self, tx: Transaction) -> int:
        self._lock(tx, "migrate")
        tx.execute(SCHEMA_MIGRATIONS_TABLE)
        applied = {int(row[0]) for row in tx.query("SELECT version FROM schema_migrations")}
        now = time.time_ns()
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            for statement in statements_for(statements, self.dialect):
                tx.execute(statement)
            tx.execute("INSERT INTO schema_migrations (version, applied_unix_nano) VALUES (?, ?)", (version, now))
            applied.add(version)
        return max(applied)

    # ------------------------------------------------------------------ predictions

    def ingest_predictions(self, predictions: Sequence[Prediction]) -> IngestResult:
        if not predictions:
            return IngestResult(inserted=0, duplicates=0)
        unique: dict[str, Prediction] = {}
        for p in predictions:
            unique.setdefault(p.prediction_id, p)
        ordered = [unique[k] for k in sorted(unique)]
        received = time.time_ns()
        rows = [_prediction_row(p, received) for p in ordered]
        # Measured (bins and all) once for the batch, and summed before any transaction
        # (which holds SQLite's write lock): the common case is a batch of new events in
        # one transaction. A transaction that stores less sums its own cells.
        measures = BatchMeasures(ordered)
        whole = _cell_rows(measures.cells(0, len(ordered)))
        inserted = joined = start = 0
        while start < len(ordered):
            start, done, found = self._ingest_run(ordered, rows, measures, whole, start)
            inserted, joined = inserted + done, joined + found
        return IngestResult(inserted=inserted, duplicates=len(predictions) - inserted, feedback_joined=joined)

    def _ingest_run(
        self,
        ordered: list[Prediction],
        rows: list[tuple[Any, ...]],
        measures: BatchMeasures,
        whole: list[tuple[Any, ...]],
        start: int,
    ) -> tuple[int, int, int]:
        """One write transaction: the new events of ``ordered`` (sorted by id) from ``start`` on.

        Events go in runs of :attr:`ingest_chunk`; after each run, when another writer is
        waiting (:meth:`_writer_waiting`), the transaction ends there with the aggregates
        and joins of what it stored, and the caller goes on from the returned index. So a
        batch is one transaction while nobody waits (the fewest upserts of aggregate cells,
        which are per batch, not per event), and a feedback post waits for one run at most.
        Returns (index reached, events inserted, feedback rows joined).
        """
        step = self.ingest_chunk or len(ordered)

        def work(tx: Transaction) -> tuple[int, int, int]:
            self._lock(tx, "feedback_join", shared=True)
            began = time.time_ns()
            new: list[Prediction] = []
            every_one_new = True
            stop = start
            while stop < len(ordered):
                end = min(stop + step, len(ordered))
                run, run_rows = ordered[stop:end], rows[stop:end]
                existing = self._existing_ids(tx, [p.prediction_id for p in run])
                if existing:
                    run = [p for p in run if p.prediction_id not in existing]
                    run_rows = [r for r in run_rows if r[0] not in existing]
                if run:
                    inserted = self._insert_predictions(tx, run_rows)
                    if inserted is not None and len(inserted) < len(run):  # a concurrent writer stored some first
                        run = [p for p in run if p.prediction_id in inserted]
                    new += run
                every_one_new = every_one_new and len(run) == end - stop
                stop = end
                if stop < len(ordered) and self._writer_waiting(began):
                    break
            if not new:
                return stop, 0, 0
            if every_one_new and start == 0 and stop == len(ordered):
                cells = whole
            else:
                cells = _cell_rows(measures.cells(start, stop) if every_one_new else aggregate_cells(new))
            self._record_models(tx, new)
            self._upsert_aggregates(tx, cells)
            joined = self._join_feedback(tx, new)
            if self._ingest_hooks:  # after the join: feedback that came first counts too
                writer = _review.SQLFlagWriter(tx, self.dialect)
                for hook in self._ingest_hooks:
                    hook.predictions_stored(writer, new, joined)
            self._ingested(len(new))
            return stop, len(new), joined

        return self._run(work, write=True, bulk=True)

    def _writer_waiting(self, since_unix_nano: int) -> bool:
        """Whether another writer has been waiting for the write lock since ``since_unix_nano``.

        Only where one writer at a time holds the whole database (SQLite); elsewhere ingest
        and feedback lock different rows and nobody waits for a whole batch.
        """
        return False

    def _ingested(self, events: int) -> None:
        """Count events stored by this process (SQLite schedules its checkpoints by it)."""

    def _record_models(self, tx: Transaction, new: Sequence[Prediction]) -> None:
        models: dict[str, tuple[int, int]] = {}
        versions: dict[tuple[str, str], tuple[int, int]] = {}
        for p in new:
            t = p.time_unix_nano
            first, last = models.get(p.model_id, (t, t))
            models[p.model_id] = (min(first, t), max(last, t))
            if p.model_version:
                key = (p.model_id, p.model_version)
                first, last = versions.get(key, (t, t))
                versions[key] = (min(first, t), max(last, t))
        tx.executemany(_UPSERT_MODEL_SEEN, [(m, f, la) for m, (f, la) in sorted(models.items())])
        tx.executemany(_UPSERT_VERSION_SEEN, [(m, v, f, la) for (m, v), (f, la) in sorted(versions.items())])

    def _join_feedback(self, tx: Transaction, new: Sequence[Prediction]) -> int:
        """Attach feedback that arrived before these (new) predictions; returns how many rows."""
        # Feedback waits unjoined only until its prediction arrives: usually none does, and
        # one indexed probe saves the per-id lookups. (Feedback holds the exclusive side of
        # the join lock, so none can appear while this transaction runs.)
        if not tx.query("SELECT 1 FROM feedback WHERE model_id IS NULL LIMIT 1"):
            return 0
        by_id = {p.prediction_id: p for p in new}
        updates: list[tuple[str, str, tuple[Any, ...]]] = []  # (feedback id, sql, params)

        # Feedback that named the prediction by id: it only lacks the model (and maybe the span).
        waiting_by_id: list[tuple[Any, ...]] = []
        for chunk in _chunks(list(by_id)):
            waiting_by_id += tx.query(
                "SELECT id, prediction_id FROM feedback "
                f"WHERE model_id IS NULL AND prediction_id IN ({_marks(len(chunk))})",
                chunk,
            )
        for feedback_id, prediction_id in waiting_by_id:
            p = by_id[prediction_id]
            updates.append(
                (
                    feedback_id,
                    "UPDATE feedback SET model_id = ?, trace_id = COALESCE(trace_id, ?), "
                    "span_id = COALESCE(span_id, ?) WHERE id = ? AND model_id IS NULL",
                    (p.model_id, p.trace_id, p.span_id, feedback_id),
                )
            )

        # Feedback that named the span: joined when the span holds exactly one prediction.
        spans = {(p.trace_id, p.span_id) for p in new if p.trace_id is not None and p.span_id is not None}
        waiting_by_span: dict[tuple[str, str], list[str]] = {}
        traces = sorted({trace for trace, _ in spans})
        for chunk in _chunks(traces):
            for feedback_id, trace_id, span_id in tx.query(
                "SELECT id, trace_id, span_id FROM feedback WHERE model_id IS NULL AND prediction_id IS NULL "
                f"AND trace_id IN ({_marks(len(chunk))})",
                chunk,
            ):
                if (trace_id, span_id) in spans:
                    waiting_by_span.setdefault((trace_id, span_id), []).append(feedback_id)
        for (trace_id, span_id), feedback_ids in waiting_by_span.items():
            found = tx.query(
                "SELECT prediction_id, model_id FROM predictions WHERE trace_id = ? AND span_id = ?",
                (trace_id, span_id),
            )
            models = {row[1] for row in found}
            for feedback_id in feedback_ids:
                if len(found) == 1:
                    sql = "UPDATE feedback SET prediction_id = ?, model_id = ? WHERE id = ? AND model_id IS NULL"
                    updates.append((feedback_id, sql, (found[0][0], found[0][1], feedback_id)))
                elif len(models) == 1:
                    # A batch span: which image is meant stays unknown; the model is not.
                    sql = "UPDATE feedback SET model_id = ? WHERE id = ? AND model_id IS NULL"
                    updates.append((feedback_id, sql, (found[0][1], feedback_id)))

        # "AND model_id IS NULL" on every join: two ingests of one span by different models hold
        # only the shared join lock, and on PostgreSQL the second would otherwise overwrite the
        # first's committed join once it got the row (it re-checks the WHERE, not its own read).
        joined = 0
        for _, sql, params in sorted(updates, key=lambda u: u[0]):
            joined += tx.execute(sql, params)
        return joined

    def get_prediction(self, prediction_id: str) -> Prediction | None:
        rows = self._run(
            lambda tx: tx.query(
                f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE prediction_id = ?", (prediction_id,)
            ),
            write=False,
        )
        return _prediction_from_row(rows[0]) if rows else None

    def find_predictions_by_span(self, trace_id: str, span_id: str) -> list[Prediction]:
        rows = self._run(
            lambda tx: tx.query(
                f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE trace_id = ? AND span_id = ? "
                "ORDER BY prediction_id",
                (trace_id, span_id),
            ),
            write=False,
        )
        return [_prediction_from_row(r) for r in rows]

    def expire_predictions(self, before_unix_nano: int) -> int:
        total = 0
        while True:
            deleted = self._run(
                lambda tx: tx.execute(
                    "DELETE FROM predictions WHERE prediction_id IN "
                    "(SELECT prediction_id FROM predictions WHERE time_unix_nano < ? LIMIT ?)",
                    (before_unix_nano, EXPIRE_CHUNK),
                ),
                write=True,
            )
            total += deleted
            if deleted < EXPIRE_CHUNK:
                return total

    # ------------------------------------------------------------------ feedback

    def add_feedback(self, items: Sequence[FeedbackInput]) -> list[FeedbackRecord]:
        if not items:
            return []
        received = time.time_ns()

        def work(tx: Transaction) -> list[FeedbackRecord]:
            if any(self._may_join_late(tx, item) for item in items):
                self._lock(tx, "feedback_join")
            out: list[FeedbackRecord] = []
            for item in items:
                if item.idempotency_key is not None:
                    stored = self._feedback_by_key(tx, item.idempotency_key)
                    if stored is not None:
                        out.append(replace(stored, duplicate=True))
                        continue
                record = self._resolve_feedback(tx, item, received)
                inserted = tx.query(
                    f"INSERT INTO feedback (idempotency_key, received_unix_nano, {_FEEDBACK_COLUMNS}) "
                    f"VALUES ({_marks(14)}) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                    (item.idempotency_key, received, *_feedback_row(record)),
                )
                if not inserted:  # a concurrent post with the same key won
                    assert item.idempotency_key is not None
                    stored = self._feedback_by_key(tx, item.idempotency_key)
                    assert stored is not None
                    record = replace(stored, duplicate=True)
                out.append(record)
            if self._ingest_hooks:
                writer = _review.SQLFlagWriter(tx, self.dialect)
                for hook in self._ingest_hooks:
                    hook.feedback_stored(writer, out)
            return out

        return self._run(work, write=True)

    def _may_join_late(self, tx: Transaction, item: FeedbackInput) -> bool:
        """Whether ``item``'s prediction may be arriving right now, so that the join lock is needed.

        Feedback usually names a prediction stored long before: then nothing can race and
        feedback never waits for ingest transactions (which hold the lock's shared side).
        Feedback naming a span, or a prediction not stored yet, takes the exclusive side
        before it writes anything (so no row lock is held while waiting for it).
        """
        if item.prediction_id is None:
            return True
        return not tx.query("SELECT 1 FROM predictions WHERE prediction_id = ?", (item.prediction_id,))

    def _feedback_by_key(self, tx: Transaction, key: str) -> FeedbackRecord | None:
        rows = tx.query(f"SELECT {_FEEDBACK_COLUMNS} FROM feedback WHERE idempotency_key = ?", (key,))
        return _feedback_from_row(rows[0]) if rows else None

    def _resolve_feedback(self, tx: Transaction, item: FeedbackInput, received: int) -> FeedbackRecord:
        prediction_id = item.prediction_id
        trace_id, span_id, model_id = item.trace_id, item.span_id, None
        if prediction_id is not None:
            rows = tx.query(
                "SELECT model_id, trace_id, span_id FROM predictions WHERE prediction_id = ?", (prediction_id,)
            )
            if rows:
                model_id = rows[0][0]
                trace_id = trace_id if trace_id is not None else rows[0][1]
                span_id = span_id if span_id is not None else rows[0][2]
        elif trace_id is not None and span_id is not None:
            rows = tx.query(
                "SELECT prediction_id, model_id FROM predictions WHERE trace_id = ? AND span_id = ?",
                (trace_id, span_id),
            )
            if len(rows) == 1:
                prediction_id, model_id = rows[0]
            elif len({row[1] for row in rows}) == 1:
                model_id = rows[0][1]  # a batch span: the image stays unknown, the model does not
        return FeedbackRecord(
            id=uuid.uuid4().hex,
            type=item.type,
            prediction_id=prediction_id,
            trace_id=trace_id,
            span_id=span_id,
            detection_index=item.detection_index,
            corrected_class=item.corrected_class,
            corrected_box=item.corrected_box,
            reviewer=item.reviewer,
            comment=item.comment,
            time_unix_nano=item.time_unix_nano or received,
            model_id=model_id,
        )

    def list_feedback(self, *, model_id: str | None = None, limit: int = 100) -> list[FeedbackRecord]:
        where, params = ("WHERE model_id = ? ", (model_id,)) if model_id is not None else ("", ())
        rows = self._run(
            lambda tx: tx.query(
                f"SELECT {_FEEDBACK_COLUMNS} FROM feedback {where}ORDER BY time_unix_nano DESC, id LIMIT ?",
                (*params, max(0, limit)),
            ),
            write=False,
        )
        return [_feedback_from_row(r) for r in rows]

    # ------------------------------------------------------------------ models

    def register_model(self, model_id: str, version: str | None, metadata: dict[str, Any]) -> ModelRecord:
        """Create or update a model; non-empty ``metadata`` replaces the stored one, empty keeps it."""
        now = time.time_ns()

        def work(tx: Transaction) -> ModelRecord:
            conflict = "DO UPDATE SET metadata = excluded.metadata" if metadata else "DO NOTHING"
            tx.execute(
                "INSERT INTO models (model_id, metadata, first_seen_unix_nano, last_seen_unix_nano) "
                f"VALUES (?, ?, ?, ?) ON CONFLICT (model_id) {conflict}",
                (model_id, _dumps(metadata), now, now),
            )
            if version:
                tx.execute(
                    "INSERT INTO model_versions (model_id, version, first_seen_unix_nano, last_seen_unix_nano) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (model_id, version) DO NOTHING",
                    (model_id, version, now, now),
                )
            return self._models(tx, model_id)[0]

        return self._run(work, write=True)

    def _models(self, tx: Transaction, model_id: str | None) -> list[ModelRecord]:
        where, params = ("WHERE model_id = ? ", (model_id,)) if model_id is not None else ("", ())
        models = tx.query(
            f"SELECT model_id, metadata, first_seen_unix_nano, last_seen_unix_nano FROM models {where}"
            "ORDER BY model_id",
            params,
        )
        versions: dict[str, list[str]] = {}
        for mid, version in tx.query(
            f"SELECT model_id, version FROM model_versions {where}ORDER BY model_id, first_seen_unix_nano, version",
            params,
        ):
            versions.setdefault(mid, []).append(version)
        return [
            ModelRecord(
                id=mid,
                versions=tuple(versions.get(mid, ())),
                first_seen_unix_nano=int(first),
                last_seen_unix_nano=int(last),
                metadata=json.loads(meta),
            )
            for mid, meta, first, last in models
        ]

    def get_model(self, model_id: str) -> ModelRecord | None:
        found = self._run(lambda tx: self._models(tx, model_id), write=False)
        return found[0] if found else None

    def list_models(self) -> list[ModelRecord]:
        return self._run(lambda tx: self._models(tx, None), write=False)

    # ------------------------------------------------------------------ datasets

    def create_dataset(self, name: str, description: str) -> DatasetRecord:
        now = time.time_ns()
        dataset_id, version_id = uuid.uuid4().hex, uuid.uuid4().hex

        def work(tx: Transaction) -> None:
            tx.execute(
                "INSERT INTO datasets (id, name, description, created_unix_nano) VALUES (?, ?, ?, ?)",
                (dataset_id, name, description, now),
            )
            tx.execute(
                "INSERT INTO dataset_versions (id, dataset_id, name, parent_version_id, created_unix_nano) "
                "VALUES (?, ?, ?, NULL, ?)",
                (version_id, dataset_id, DATASET_FIRST_VERSION, now),
            )

        self._run(work, write=True)
        version = DatasetVersionRecord(version_id, dataset_id, DATASET_FIRST_VERSION, None, now)
        return DatasetRecord(dataset_id, name, description, now, (version,))

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        def work(tx: Transaction) -> DatasetRecord | None:
            rows = tx.query("SELECT name, description, created_unix_nano FROM datasets WHERE id = ?", (dataset_id,))
            if not rows:
                return None
            versions = tx.query(
                "SELECT id, dataset_id, name, parent_version_id, created_unix_nano FROM dataset_versions "
                "WHERE dataset_id = ? ORDER BY created_unix_nano, id",
                (dataset_id,),
            )
            name, description, created = rows[0]
            return DatasetRecord(
                dataset_id,
                name,
                description,
                int(created),
                tuple(DatasetVersionRecord(v[0], v[1], v[2], v[3], int(v[4])) for v in versions),
            )

        return self._run(work, write=False)

    def create_dataset_version(self, dataset_id: str, name: str, parent_version_id: str | None) -> DatasetVersionRecord:
        """A new version, ordered after every existing one; raises ``LookupError`` for an unknown dataset."""
        version_id = uuid.uuid4().hex

        def work(tx: Transaction) -> DatasetVersionRecord:
            if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)):
                raise LookupError(f"no dataset {dataset_id!r}")
            latest = tx.query("SELECT MAX(created_unix_nano) FROM dataset_versions WHERE dataset_id = ?", (dataset_id,))
            # The latest version is the last by creation time: never let a clock step make it older.
            created = max(time.time_ns(), int(latest[0][0] or 0) + 1)
            tx.execute(
                "INSERT INTO dataset_versions (id, dataset_id, name, parent_version_id, created_unix_nano) "
                "VALUES (?, ?, ?, ?, ?)",
                (version_id, dataset_id, name, parent_version_id, created),
            )
            return DatasetVersionRecord(version_id, dataset_id, name, parent_version_id, created)

        return self._run(work, write=True)

    # ------------------------------------------------------------------ aggregates, counts

    def aggregates(
        self, model_id: str, start_unix_nano: int, end_unix_nano: int, kinds: Sequence[str] | None = None
    ) -> list[AggregateRow]:
        """Cells of ``model_id`` whose hour (or, once compacted, day) starts in ``[start, end)``.

        Hourly and daily cells come together (see :mod:`._compaction`): a daily cell's
        ``hour_unix`` is its day's start.
        """
        if kinds is not None and not kinds:
            return []
        window: list[Any] = [model_id, _ceil_seconds(start_unix_nano), _ceil_seconds(end_unix_nano)]
        kind_filter = "" if kinds is None else f" AND kind IN ({_marks(len(kinds))})"
        params = window + list(kinds or ()) + window + list(kinds or ())
        columns = "model_id, model_version, ab_variant, {t}, kind, key, " + ", ".join(CELL_SUMS)
        sql = (
            f"SELECT {columns.format(t='hour_unix')} FROM aggregates "
            f"WHERE model_id = ? AND hour_unix >= ? AND hour_unix < ?{kind_filter} UNION ALL "
            f"SELECT {columns.format(t='day_unix')} FROM aggregates_daily "
            f"WHERE model_id = ? AND day_unix >= ? AND day_unix < ?{kind_filter} "
            "ORDER BY 4, 2, 3, 5, 6"
        )
        rows = self._run(lambda tx: tx.query(sql, params), write=False)
        return [
            AggregateRow(
                r[0],
                r[1],
                r[2],
                int(r[3]),
                r[4],
                r[5],
                int(r[6]),
                float(r[7]),
                float(r[8]),
                images=int(r[9]),
                count_sq=float(r[10]),
                image_value_sq=float(r[11]),
                count_value=float(r[12]),
                count_total=float(r[13]),
            )
            for r in rows
        ]

    def aggregate_counts(
        self,
        model_id: str,
        start_unix_nano: int,
        end_unix_nano: int,
        kind: str,
        *,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> dict[str, int]:
        """Per key, the summed count of one kind's hourly and daily cells in ``[start, end)``, as :meth:`aggregates`."""
        where, extra = _cells.filters(kind, model_version, ab_variant)
        sql = f"SELECT key, SUM(count) FROM {_cells.union('key, count', where)} GROUP BY key"
        params = _cells.union_params(model_id, start_unix_nano, end_unix_nano, extra)
        rows = self._run(lambda tx: tx.query(sql, params), write=False)
        return {str(key): int(total) for key, total in rows}

    def compact_aggregates(self, before_unix_nano: int) -> int:
        """Roll hourly cells of whole days before ``before`` into daily cells, a day per transaction.

        Returns the hourly rows removed. Totals over any period of whole days are unchanged
        (:mod:`._compaction`).
        """
        before_day = before_unix_nano // NS_PER_SECOND
        before_day -= before_day % _compaction.SECONDS_PER_DAY
        removed = 0
        while True:
            day = self._run(lambda tx: _compaction.oldest_day_before(tx, before_day), write=False)
            if day is None:
                return removed
            removed += self._run(functools.partial(_compaction.roll_up_day, dialect=self.dialect, day=day), write=True)

    def check_writable(self) -> None:
        def work(tx: Transaction) -> None:
            # A row no migration ever writes (versions start at 1), inserted only to be rolled back.
            tx.execute(f"INSERT INTO {_MIGRATIONS_TABLE_NAME} (version, applied_unix_nano) VALUES (?, ?)", (-1, 0))
            raise _RolledBack

        with contextlib.suppress(_RolledBack):
            self._run(work, write=True)

    def counts(self) -> dict[str, int]:
        def work(tx: Transaction) -> dict[str, int]:
            # Table names come from the schema module, never from input.
            return {table: int(tx.query(f"SELECT COUNT(*) FROM {table}")[0][0]) for table in TABLES}

        return self._run(work, write=False)

    # ------------------------------------------------------------------ A/B tests

    def create_ab_test(
        self,
        *,
        name: str,
        model_a_id: str,
        model_b_id: str,
        config: dict[str, Any],
        start_unix_nano: int,
        end_unix_nano: int,
    ) -> ABTestRecord:
        created = time.time_ns()
        return self._run(
            lambda tx: _abtests.insert(
                tx,
                name=name,
                model_a_id=model_a_id,
                model_b_id=model_b_id,
                config=config,
                created_unix_nano=created,
                start_unix_nano=start_unix_nano,
                end_unix_nano=end_unix_nano,
            ),
            write=True,
        )

    def get_ab_test(self, ab_test_id: str) -> ABTestRecord | None:
        return self._run(lambda tx: _abtests.get(tx, ab_test_id), write=False)

    def list_ab_tests(self, limit: int = 100) -> list[ABTestRecord]:
        return self._run(lambda tx: _abtests.list_all(tx, limit), write=False)

    def set_ab_test_status(self, ab_test_id: str, status: str, end_unix_nano: int | None = None) -> bool:
        return self._run(lambda tx: _abtests.set_status(tx, ab_test_id, status, end_unix_nano), write=True)

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
        return self._run(
            lambda tx: _abtests.arm_sums(
                tx,
                model_id=model_id,
                version=version,
                variant=variant,
                start_hour=start_hour,
                end_hour=end_hour,
                kinds=kinds,
                by_hour=by_hour,
            ),
            write=False,
        )

    def ab_feedback_image_sums(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, int, int, int, int, int, int]]:
        return self._run(
            lambda tx: _abtests.feedback_image_sums(
                tx,
                model_id=model_id,
                version=version,
                variant=variant,
                start_unix_nano=start_unix_nano,
                end_unix_nano=end_unix_nano,
            ),
            write=False,
        )

    def ab_feedback_counts(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, str, int]]:
        return self._run(
            lambda tx: _abtests.feedback_counts(
                tx,
                model_id=model_id,
                version=version,
                variant=variant,
                start_unix_nano=start_unix_nano,
                end_unix_nano=end_unix_nano,
            ),
            write=False,
        )

    # ------------------------------------------------------------------ alerts

    def alerts_revision(self) -> int:
        return self._run(_alerts.revision, write=False)

    def list_alerts(self) -> list[AlertRecord]:
        return self._run(_alerts.list_all, write=False)

    def put_alert(self, *, slug: str, name: str, model_id: str, definition: dict[str, Any]) -> AlertWrite:
        now = time.time_ns()
        return self._run(
            lambda tx: _alerts.put(
                tx, slug=slug, name=name, model_id=model_id, definition=definition, now_unix_nano=now
            ),
            write=True,
        )

    def import_alerts(self, alerts: Sequence[tuple[str, str, str, dict[str, Any]]]) -> int:
        now = time.time_ns()
        return self._run(lambda tx: _alerts.insert_missing(tx, alerts, now), write=True)

    # ------------------------------------------------------------------ the data engine (review)

    def set_flag_policy(self, model_id: str, config: Mapping[str, Any], target_dataset_id: str) -> PolicyRecord:
        now = time.time_ns()
        self._run(lambda tx: _review.set_policy(tx, model_id, config, target_dataset_id, now), write=True)
        return PolicyRecord(model_id, dict(config), target_dataset_id, now)

    def get_flag_policy(self, model_id: str) -> PolicyRecord | None:
        return self._run(lambda tx: _review.policies(tx, [model_id]), write=False).get(model_id)

    def box_area_counts(self, model_id: str, since_hour_unix: int) -> list[tuple[str, int]]:
        return self._run(lambda tx: _review.box_area_counts(tx, model_id, since_hour_unix), write=False)

    def flag_predictions_page(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        before: tuple[int, str] | None,
        limit: int,
        flag: FlagFunction,
    ) -> FlagPage:
        return self._run(
            lambda tx: _review.flag_page(
                tx,
                _review.SQLFlagWriter(tx, self.dialect),
                model_id,
                since_unix_nano=since_unix_nano,
                until_unix_nano=until_unix_nano,
                before=before,
                limit=limit,
                flag=flag,
            ),
            write=True,
        )

    def predictions_named_by_feedback(
        self, model_id: str, *, since_unix_nano: int, until_unix_nano: int, older_than: int, limit: int
    ) -> list[str]:
        return self._run(
            lambda tx: _review.named_by_feedback(
                tx,
                model_id,
                since_unix_nano=since_unix_nano,
                until_unix_nano=until_unix_nano,
                older_than=older_than,
                limit=limit,
            ),
            write=False,
        )

    def flag_named_predictions(self, model_id: str, prediction_ids: Sequence[str], flag: FlagFunction) -> FlagPage:
        return self._run(
            lambda tx: _review.flag_named(tx, _review.SQLFlagWriter(tx, self.dialect), model_id, prediction_ids, flag),
            write=True,
        )

    def dataset_exists(self, dataset_id: str) -> bool:
        return self._run(lambda tx: _review.dataset_exists(tx, dataset_id), write=False)

    def list_flagged_items(
        self, dataset_id: str, *, status: str | None, limit: int, after: tuple[int, str] | None = None
    ) -> ItemPage:
        return self._run(
            lambda tx: _review.list_items(tx, dataset_id, status=status, limit=limit, after=after), write=False
        )

    def detections_by_image_key(
        self, model_id: str, model_version: str, image_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        return self._run(
            lambda tx: _version_predictions.detections_by_image_key(tx, model_id, model_version, image_keys),
            write=False,
        )

    def labelled_items(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        model_version: str | None = None,
        limit: int = MAX_LABELLED_ITEMS,
        ab_variant: str | None = None,
    ) -> list[FlaggedItemRecord]:
        return self._run(
            lambda tx: _review.labelled_items(
                tx,
                model_id,
                since_unix_nano=since_unix_nano,
                until_unix_nano=until_unix_nano,
                model_version=model_version,
                limit=limit,
                ab_variant=ab_variant,
            ),
            write=False,
        )

    def missed_object_counts(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> tuple[int, int]:
        return self._run(
            lambda tx: _missed_objects.missed_object_counts(
                tx,
                model_id,
                since_unix_nano=since_unix_nano,
                until_unix_nano=until_unix_nano,
                model_version=model_version,
                ab_variant=ab_variant,
            ),
            write=False,
        )

    def get_flagged_item(self, dataset_id: str, item_id: str) -> FlaggedItemRecord | None:
        return self._run(lambda tx: _review.get_item(tx, dataset_id, item_id), write=False)

    def claim_flagged_items(
        self, dataset_id: str, *, reviewer: str, limit: int, lease_s: float, skip: Sequence[str] = ()
    ) -> list[FlaggedItemRecord]:
        now = time.time_ns()
        return self._run(
            lambda tx: _review.claim(
                tx, self.dialect, dataset_id, reviewer=reviewer, limit=limit, lease_s=lease_s, now=now, skip=skip
            ),
            write=True,
        )

    def claimed_flagged_items(self, dataset_id: str, *, reviewer: str, lease_s: float) -> list[FlaggedItemRecord]:
        now = time.time_ns()
        return self._run(lambda tx: _review.claimed_by(tx, dataset_id, reviewer, lease_s=lease_s, now=now), write=False)

    def release_flagged_item(self, dataset_id: str, item_id: str, *, reviewer: str) -> bool:
        now = time.time_ns()
        return self._run(lambda tx: _review.release(tx, dataset_id, item_id, reviewer, now), write=True)

    def review_progress(self, dataset_id: str) -> ReviewProgress:
        return self._run(lambda tx: _review.progress(tx, dataset_id), write=False)

    def review_flagged_item(
        self,
        dataset_id: str,
        item_id: str,
        *,
        outcome: Literal["labeled", "rejected"],
        annotations: Sequence[Mapping[str, Any]] | None,
        reviewer: str | None,
    ) -> FlaggedItemRecord | None:
        now = time.time_ns()
        return self._run(
            lambda tx: _review.review(
                tx,
                self.dialect,
                dataset_id,
                item_id,
                outcome=outcome,
                annotations=annotations,
                reviewer=reviewer,
                now=now,
            ),
            write=True,
        )

    def expire_reviewed(self, before_unix_nano: int, *, chunk: int = 5000) -> int:
        total = 0
        while True:
            deleted = self._run(lambda tx: _review.expire_reviewed_chunk(tx, before_unix_nano, chunk), write=True)
            total += deleted
            if deleted < chunk:
                return total

    def snapshot_dataset_version(
        self, dataset_id: str, name: str, parent_version_id: str | None
    ) -> DatasetSnapshotRecord:
        version_id = uuid.uuid4().hex
        return self._run(lambda tx: _snapshots.create(tx, version_id, dataset_id, name, parent_version_id), write=True)

    def get_dataset_snapshot(self, dataset_id: str, version_id: str) -> DatasetSnapshotRecord | None:
        return self._run(lambda tx: _snapshots.get(tx, dataset_id, version_id), write=False)

    def dataset_snapshot_items(self, version_id: str) -> dict[str, dict[str, Any]]:
        return self._run(lambda tx: _snapshots.snapshot_items(tx, version_id), write=False)

    def create_training_job(
        self,
        *,
        name: str,
        dataset_id: str,
        version_id: str,
        base_model_id: str | None,
        options: Mapping[str, Any],
        callback_url_base: str | None,
        gate: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord:
        now = time.time_ns()
        job_id = uuid.uuid4().hex
        callback_url = f"{callback_url_base}/v1/training-jobs/{job_id}/status" if callback_url_base else None
        return self._run(
            lambda tx: _training_jobs.insert(
                tx,
                job_id=job_id,
                name=name,
                dataset_id=dataset_id,
                version_id=version_id,
                base_model_id=base_model_id,
                options=options,
                callback_url=callback_url,
                now=now,
                gate=gate,
            ),
            write=True,
        )

    def get_training_job(self, job_id: str) -> TrainingJobRecord | None:
        return self._run(lambda tx: _training_jobs.get(tx, job_id), write=False)

    def take_due_training_job(self, *, lease_s: float) -> TrainingJobRecord | None:
        now = time.time_ns()
        return self._run(lambda tx: _training_jobs.take_due(tx, self.dialect, lease_s=lease_s, now=now), write=True)

    def next_training_job_due(self) -> int | None:
        return self._run(_training_jobs.next_due, write=False)

    def record_training_dispatch(self, job_id: str, *, error: str | None, retry_in_s: float | None) -> None:
        now = time.time_ns()
        self._run(
            lambda tx: _training_jobs.record_dispatch(
                tx, self.dialect, job_id, error=error, retry_in_s=retry_in_s, now=now
            ),
            write=True,
        )

    def update_training_job_status(
        self,
        job_id: str,
        *,
        status: str,
        model_version: str | None,
        message: str | None,
        metrics: Mapping[str, Any],
        gate_result: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord | None:
        now = time.time_ns()
        return self._run(
            lambda tx: _training_jobs.update_status(
                tx,
                self.dialect,
                job_id,
                status=status,
                model_version=model_version,
                message=message,
                metrics=metrics,
                now=now,
                gate_result=gate_result,
            ),
            write=True,
        )

    def put_training_job_detections(self, job_id: str, detections: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        now = time.time_ns()
        self._run(lambda tx: _training_jobs.put_detections(tx, job_id, detections, now), write=True)

    def training_job_detections(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        return self._run(lambda tx: _training_jobs.detections(tx, job_id), write=False)


def _box(values: Sequence[Any]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _feedback_row(r: FeedbackRecord) -> tuple[Any, ...]:
    box = None if r.corrected_box is None else _dumps(list(r.corrected_box))
    return (
        r.id,
        r.type,
        r.prediction_id,
        r.trace_id,
        r.span_id,
        r.detection_index,
        r.corrected_class,
        box,
        r.reviewer,
        r.comment,
        r.time_unix_nano,
        r.model_id,
    )


def _feedback_from_row(row: Sequence[Any]) -> FeedbackRecord:
    box = None if row[7] is None else _box(json.loads(row[7]))
    return FeedbackRecord(
        id=row[0],
        type=cast(FeedbackType, row[1]),
        prediction_id=row[2],
        trace_id=row[3],
        span_id=row[4],
        detection_index=None if row[5] is None else int(row[5]),
        corrected_class=row[6],
        corrected_box=box,
        reviewer=row[8],
        comment=row[9],
        time_unix_nano=int(row[10]),
        model_id=row[11],
    )
