"""Retention: raw prediction events older than ``DETWATCH_RETENTION_DAYS`` are deleted on a schedule.

Storage stays bounded (DESIGN.md): drift and A/B read the per-hour aggregates, which
are kept forever; raw events (what feedback joins and reviews open) are kept for the
retention window, counted by the events' *own* time, like every analysis (and
reviewed data-engine items, by the time of their review, once a dataset version holds
them or they were rejected; and hourly aggregate cells older than
``DETWATCH_AGGREGATE_HOURLY_DAYS``, 7 by default, are rolled up into daily cells, see
:mod:`detwatch.storage._compaction`). A
back-filled event already older than the window therefore keeps only its
aggregates: it is deleted at the next run.

Every worker process starts one daemon thread when it builds its app (``create_app``,
after gunicorn's fork, never at import), which opens the storage only when it first runs
and then runs :meth:`Storage.expire_predictions` every
``DETWATCH_RETENTION_INTERVAL`` seconds (an hour by default; the first run one
interval after start, so a short-lived process, a test's app, never expires), with
a little jitter so that workers started together do not wake together. A run
takes ``<data dir>/retention.lock`` without waiting: on one machine one worker
expires while the others skip that round. Replicas on other machines may expire
concurrently; deletion is idempotent and chunked (the storage deletes a few thousand
rows per transaction), so that costs only duplicate work. A failed run (database
down) is logged and tried again at the next interval.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from detwatch.storage import Storage, StorageClosed, StorageError

__all__ = ["RetentionScheduler"]

_logger = logging.getLogger("detwatch.jobs.retention")

NS_PER_DAY: Final = 86_400 * 1_000_000_000


class RetentionScheduler:
    """Expire raw events of ``storage`` older than ``days``, every ``interval_s`` seconds, in a daemon thread."""

    def __init__(
        self,
        storage: Storage | Callable[[], Storage],
        *,
        days: float,
        interval_s: float,
        lock_path: Path,
        hourly_days: float = 7.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._storage = storage
        self.days = days
        self.hourly_days = hourly_days
        self.interval_s = interval_s
        self.lock_path = lock_path
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Runs that expired (not those skipped because another process held the lock)."""

    @property
    def storage(self) -> Storage:
        """The storage expired: given, or opened by the provider given (an app's, on first use)."""
        return self._storage() if callable(self._storage) else self._storage

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="detwatch-retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s * random.uniform(0.9, 1.1)):
            try:
                self.run_once()
            except Exception:  # a bug must not end expiry (and compaction) for the life of the worker
                _logger.exception("retention: run failed; retried at the next interval")

    def run_once(self) -> int | None:
        """Expire once if no other process on this machine is; the number deleted, or None when skipped."""
        cutoff = self._clock() - int(self.days * NS_PER_DAY)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            _logger.warning("retention: cannot open %s (%s); expiring without it", self.lock_path, exc)
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return None  # another worker of this machine is expiring
            try:
                deleted = self.storage.expire_predictions(cutoff)
                # Reviewed data-engine items whose review lives on in a dataset version (or
                # that were rejected) go with the same window; waiting items never expire.
                reviewed = self.storage.expire_reviewed(cutoff)
                # Hourly aggregate cells older than hourly_days become daily cells (totals unchanged).
                self.storage.compact_aggregates(self._clock() - int(self.hourly_days * NS_PER_DAY))
            except StorageClosed:  # the app shut down: no more runs
                self._stop.set()
                return None
            except StorageError as exc:
                _logger.warning("retention: expiry failed, retried at the next interval: %s", exc)
                return None
            self.runs += 1
            if deleted or reviewed:
                _logger.info(
                    "retention: deleted %d prediction events and %d reviewed items older than %g days",
                    deleted,
                    reviewed,
                    self.days,
                )
            return deleted
        finally:
            if fd >= 0:
                os.close(fd)
