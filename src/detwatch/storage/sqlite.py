"""SQLite backend: one file in WAL mode, shared by every gunicorn worker of one machine.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``. Query
parameters are handed to SQLite's URI parser (``?mode=ro`` opens the file
read-only), except ``synchronous`` (``NORMAL`` or ``FULL``, see below) and
``ingest_chunk`` (after how many events an ingest transaction looks for a waiting
writer, 128 by default; 0 for a whole batch in one whatever waits), which this
backend reads itself.

Settings and why:

- ``journal_mode=WAL``: readers never block the writer nor the writer readers, and
  several processes may use the file at once.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock at the
  start, so two workers never both read and then fail to upgrade to a write (the
  ``database is locked`` a deferred transaction would get); a waiting writer tries
  again every 0.2 ms (ingest every 2 ms, so that feedback goes first) for up to
  ``busy_timeout`` (10 s) before the request fails with :class:`StorageUnavailable`
  (a 503 the sender retries).
- An ingest transaction stores a whole batch unless another writer waits: a writer
  that finds the lock taken stamps a marker file (``<database>-waiting``) with the
  time, again at every try, and ingest looks at it after every ``ingest_chunk``
  events; when it was stamped since the transaction began, ingest commits what it
  has and begins again after the waiting writer (see ``SQLStorage._ingest_run``).
- ``synchronous=NORMAL``: in WAL mode a commit is written to the WAL file before it
  returns but fsynced only at checkpoints. A worker killed at any point (SIGKILL,
  OOM killer) loses nothing it acknowledged, because the data is already in the
  operating system's page cache; only a power failure or kernel crash can lose the
  last transactions, never corrupt the file. For telemetry that trade-off is right
  (an fsync per request would cap ingest at the disk's fsync rate); pass
  ``?synchronous=FULL`` to fsync every commit.
- Errors that mean "cannot write now" (disk full, read-only file or file system,
  locked past the timeout, I/O error, cannot open) become
  :class:`StorageUnavailable`; others :class:`StorageError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final

from detwatch.storage._sql import SQLStorage
from detwatch.storage.records import StorageError, StorageUnavailable

__all__ = ["SQLiteStorage"]

BUSY_TIMEOUT_S: Final = 10.0
CHECKPOINT_EVENTS: Final = 2048
"""Events ingested by a process between its WAL checkpoints (about 4 MB of WAL, SQLite's own default).

A checkpoint copies every page changed since the last one into the database file;
pages that ingest changes again and again (the aggregate cells, the id index's inner
pages) are copied once per checkpoint, so fewer checkpoints copy less. Measured in
process when ingest still wrote 128-event transactions: about 10 % less ingest CPU
than a checkpoint every 512 events.
"""
AUTOCHECKPOINT_PAGES: Final = 10_000
"""SQLite's own checkpoint threshold (default 1000 pages), a backstop when no ingest checkpoints."""
POLL_S: Final = 0.0002
BULK_POLL_S: Final = 0.002
"""How often a writer waiting for the write lock tries again (see ``_begin``)."""
WAITER_FRESH_NS: Final = 1_000_000
"""A marker stamped this recently means a writer is waiting now (it stamps every ``POLL_S``)."""
MARKER_AHEAD_NS: Final = 1_000_000_000
"""A stamp further ahead of the clock than this is ignored: it was made before the clock stepped back
(NTP), and would otherwise keep bulk ingest deferring, a busy timeout per transaction, until the clock
caught up."""

# Primary result codes (the low byte of the extended code) that mean "not now".
_UNAVAILABLE: Final = {
    5: "database is locked",  # SQLITE_BUSY
    6: "table is locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "read-only database",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "cannot open the database file",  # SQLITE_CANTOPEN
    15: "locking protocol error",  # SQLITE_PROTOCOL
}
MIN_FREE_BYTES: Final = 1 << 20
"""Below this much free space where the file lives, :meth:`SQLiteStorage.check_writable` says "disk full"."""

# What a caller is told (StorageUnavailable.reason); the rest goes to the log only.
_REASONS: Final = {5: "busy", 6: "busy", 8: "read-only", 13: "disk full"}


class _Checkpointer:
    """A thread of this process that runs PASSIVE WAL checkpoints when asked.

    A checkpoint copies the WAL's pages into the database file and fsyncs it: about
    18 ms for 2048 events here, 7 of them CPU and the rest waiting for the disk. Run
    after the ingest's commit but before its answer, it delayed the sender's next
    batch; on its own thread and connection (SQLite releases the GIL) it overlaps the
    next request. Measured in process (decode, extract and store 40 batches of 512,
    three interleaved pairs): 59.5 / 59.9 / 56.6 us per event inline, 51.6 / 49.3 /
    49.3 here. Started lazily, in the process that asks (a forked worker gets its own).
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._wanted = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._starting = threading.Lock()

    def request(self) -> None:
        if self._closed:
            return
        with self._starting:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="detwatch-wal-checkpoint", daemon=True)
                self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closed:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # best effort: the next request, or SQLite's own, catches up
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self._closed = True
        self._wanted.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            thread.join(timeout=10)


class SQLiteStorage(SQLStorage):
    """The default backend (see the module docstring)."""

    dialect = "sqlite"
    errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    # The one write lock is held while a transaction runs; feedback waits for it. Ingest
    # yields it after at most 128 events to a writer that waits (a few ms, not the 20 or
    # more of a batch), and keeps it for the whole batch otherwise: the aggregate cells,
    # about as many per batch of 512 as per 128 events, are upserted once. Ingest stays
    # idempotent, so a batch that fails part-way is completed by the sender's retry
    # without duplicates, and nothing is acknowledged before all of it is stored.
    # ``?ingest_chunk=0`` in the URL never yields.
    ingest_chunk = 128

    def __init__(self, url: str, *, pool_size: int = 8, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        if not url.startswith("sqlite:///"):
            raise ValueError(f"sqlite url: expected sqlite:///path/to/file.db, got {url!r}")
        path_part, _, query = url.removeprefix("sqlite:///").partition("?")
        if not path_part or path_part == ":memory:":
            raise ValueError("sqlite url: name a file (an in-memory database is private to one connection)")
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        synchronous = "NORMAL"
        passed: list[tuple[str, str]] = []
        for key, value in params:
            if key == "ingest_chunk":
                if not value.isdigit():
                    raise ValueError("sqlite url: ingest_chunk must be a whole number (0: a batch per transaction)")
                self.ingest_chunk = int(value)
            elif key == "synchronous":
                synchronous = value.upper()
                if synchronous not in ("NORMAL", "FULL", "EXTRA"):
                    raise ValueError("sqlite url: synchronous must be NORMAL, FULL or EXTRA")
            else:
                passed.append((key, value))
        super().__init__(url, pool_size=pool_size, pool_timeout=busy_timeout)
        self.path = Path(urllib.parse.unquote(path_part)).absolute()
        self._read_only = ("mode", "ro") in passed
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._uncheckpointed = 0
        self._checkpointer = _Checkpointer(self._connect)
        self._waiting_marker = Path(f"{self.path}-waiting")
        self._uri = f"file:{urllib.parse.quote(str(self.path))}"
        if passed:
            self._uri += "?" + urllib.parse.urlencode(passed)

    def _connect(self) -> sqlite3.Connection:
        if not self._read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable(f"cannot create {self.path.parent}: {exc}", reason="read-only") from exc
        # isolation_level=None: no implicit transactions, this module says BEGIN itself.
        # check_same_thread=False: the pool lends a connection to one thread at a time.
        conn = sqlite3.connect(
            self._uri, uri=True, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if not self._read_only:
                self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs a moment of exclusive access; several workers
        # starting at once may find it busy, and this pragma does not always wait.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _after_commit(self, conn: Any, *, bulk: bool) -> None:
        # Checkpoints (copying the WAL into the database file, with an fsync) are asked for by
        # ingest after its commit and run by _Checkpointer. Left to SQLite's automatic
        # checkpoint, whichever commit crosses the threshold pays for it, often a feedback
        # post that then waited tens of ms. PASSIVE never waits for readers or writers; the
        # automatic checkpoint stays as a backstop at a larger size for a database that only
        # takes feedback.
        if bulk and not self._read_only and self._uncheckpointed >= CHECKPOINT_EVENTS:
            self._uncheckpointed = 0
            self._checkpointer.request()

    def close(self) -> None:
        self._checkpointer.close()
        super().close()

    def _ingested(self, events: int) -> None:
        self._uncheckpointed += events  # per process; a race between threads only moves a checkpoint

    def _writer_waiting(self, since_unix_nano: int) -> bool:
        return self._stamped_after(since_unix_nano)

    def _stamped_after(self, unix_nano: int) -> bool:
        try:
            stamp = os.stat(self._waiting_marker).st_mtime_ns
        except OSError:
            return False
        return unix_nano < stamp <= time.time_ns() + MARKER_AHEAD_NS

    def _signal_waiting(self) -> None:
        """Stamp the marker with the time: a writer waits (best effort; ingest then yields sooner)."""
        now = time.time_ns()
        try:
            os.utime(self._waiting_marker, ns=(now, now))
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                self._waiting_marker.touch()
                os.utime(self._waiting_marker, ns=(now, now))
        except OSError:
            pass

    def _usable(self, conn: Any) -> bool:
        return not bool(conn.in_transaction)

    def _begin(self, conn: Any, *, write: bool, bulk: bool = False) -> Any:
        cursor = conn.cursor()
        if not write:
            # A read is a deferred transaction: one consistent snapshot, no lock against writers.
            cursor.execute("BEGIN")
            return cursor
        # SQLite's own busy handler sleeps ever longer between tries (up to 100 ms), so a
        # short feedback write could wait through several ingest transactions that kept
        # taking the write lock first. The lock is polled here instead: every 0.2 ms for
        # ordinary writes, which stamp the marker at every try; bulk ingest polls every
        # 2 ms and does not even try while the marker is fresh, so that when an ingest
        # commits (or yields), a waiting feedback post goes next rather than racing the
        # ingest's next transaction. The busy timeout still bounds the wait.
        poll = BULK_POLL_S if bulk else POLL_S
        deadline = time.monotonic() + self._busy_timeout
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                late = time.monotonic() > deadline
                if late or not (bulk and self._stamped_after(time.time_ns() - WAITER_FRESH_NS)):
                    try:
                        cursor.execute("BEGIN IMMEDIATE")
                        return cursor
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or late:
                            raise
                    if not bulk:
                        self._signal_waiting()  # at every try: an ingest that began after the last one sees it
                time.sleep(poll)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    def check_writable(self) -> None:
        # A rolled-back write touches no disk: the free space is looked at too, where the file lives.
        super().check_writable()
        try:
            found = os.statvfs(self.path.parent)
        except OSError as exc:
            raise StorageUnavailable(f"SQLite {self.path}: {exc}") from exc
        if found.f_bavail * found.f_frsize < MIN_FREE_BYTES:
            raise StorageUnavailable(
                f"SQLite {self.path}: {found.f_bavail * found.f_frsize} bytes free", reason="disk full"
            )

    def _rollback(self, conn: Any) -> None:
        # Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled the transaction back.
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _translate(self, exc: Exception) -> StorageError:
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _UNAVAILABLE:
            reason = _REASONS.get(code & 0xFF, "unavailable")
            return StorageUnavailable(f"SQLite {self.path}: {_UNAVAILABLE[code & 0xFF]} ({exc})", reason=reason)
        return StorageError(f"SQLite {self.path}: {exc}")
