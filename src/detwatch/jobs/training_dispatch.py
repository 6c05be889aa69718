"""The training dispatcher: one thread per process hands due training jobs to the trainer.

Started by ``create_app`` (in each gunicorn worker, after the fork), never by a request:
it sleeps until the next job is due, at most :data:`CHECK_S` seconds, so that a job
left due by a process that stopped, or recorded by another replica, is picked up
without a request to trigger it; a new job wakes it at once (:meth:`wake`). What one
hand-off does (lease, post or run, record, back off) is
:func:`detwatch.review.training.dispatch_once`; jobs are leased in the database, so
several processes and replicas never hand off the same job twice. A database that is
away is logged and tried again at the next check: the jobs stay recorded and due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from detwatch.review import DataEngineStore
from detwatch.review.training import Trainer, dispatch_once
from detwatch.storage import StorageClosed, StorageError

__all__ = ["CHECK_S", "TrainingDispatcher"]

_logger = logging.getLogger("detwatch.jobs.training_dispatch")

CHECK_S: Final = 5.0
"""Longest sleep between looks for due jobs."""


class TrainingDispatcher:
    """Hand off due jobs of ``store()`` to ``trainer()`` in a daemon thread.

    Both are providers, read on every round: the store opens the app's storage on first
    use, and the trainer follows the app's current settings.
    """

    def __init__(
        self,
        store: Callable[[], DataEngineStore],
        trainer: Callable[[], Trainer],
        *,
        check_s: float = CHECK_S,
    ) -> None:
        self._store = store
        self._trainer = trainer
        self.check_s = check_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="detwatch-trainer-dispatch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def wake(self) -> None:
        """A job was recorded: look now rather than at the next check."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.run_round()
            self._wake.wait(min(wait, self.check_s))
            self._wake.clear()

    def run_round(self) -> float:
        """Hand off every job due now; the seconds until the next one is due (or the check interval)."""
        try:
            trainer = self._trainer()
            if not trainer.ready:
                return self.check_s
            store = self._store()
            while not self._stop.is_set() and dispatch_once(store, trainer):
                pass
            due_in = store.next_due_in()
        except StorageClosed:  # the app shut down: no more rounds
            self._stop.set()
            return 0.0
        except StorageError as exc:  # the database is away: the jobs stay recorded and due
            _logger.warning("training job dispatch failed, tried again in %.0f s: %s", self.check_s, exc)
            return self.check_s
        except Exception:  # a bug must not end hand-offs for the life of the worker
            _logger.exception("training job dispatch failed; tried again in %.0f s", self.check_s)
            return self.check_s
        return self.check_s if due_in is None else max(0.0, due_in)
