"""The skeleton the companion's gauge schedules share: a leader per machine, a loop, an interval setting.

The drift schedule (:mod:`.drift_schedule`) and the quality schedule
(:mod:`.quality_schedule`) compute figures from storage every ``interval`` and set
gauges. Both must run once per machine, not once per gunicorn worker: a job takes an
exclusive ``flock`` on its lock file without waiting, keeps it for the life of the
process, and a worker that lost the race retries at each interval (so a killed
worker's duty passes on). A failing run is logged; the loop outlives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Sized
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

from opentelemetry import metrics

from detwatch.config import ConfigError
from detwatch.instruments import CompanionInstruments

if TYPE_CHECKING:
    from detwatch.storage import Storage

__all__ = ["PeriodicJob", "Schedule", "open_migrated", "parse_interval", "start_schedule"]

_DURATION: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?) *(ms|s|m|h)")
_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(name: str, value: Any) -> float:
    """Seconds of an interval setting (``15m``, ``1h``, ``30s`` or a number of seconds).

    Raises ``ValueError`` naming the setting (``name``, e.g. ``quality.interval``).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{name}: expected a duration such as 15m, 1h or 30s, got {value!r}")
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if not 0.05 <= seconds <= 7 * 86_400:
        raise ValueError(f"{name}: between 50 ms and 7 days")
    return seconds


def open_migrated(database_url: str) -> Storage:
    """The storage a schedule reads, opened on its first run (in the worker, after gunicorn's fork)."""
    from detwatch.storage import open_storage

    opened = open_storage(database_url)
    opened.migrate()
    return opened


class Schedule(Protocol):
    """A validated settings section: how often, and the models it covers."""

    @property
    def interval_s(self) -> float: ...
    @property
    def models(self) -> Sized: ...


S = TypeVar("S", bound=Schedule)
T = TypeVar("T")


class PeriodicJob(Generic[S, T]):
    """Calls :meth:`run_once` every ``schedule.interval_s`` in a daemon thread, while this process holds ``lock_path``.

    Subclasses implement :meth:`run_once` (one pass; it may raise, the loop logs it),
    reading :attr:`storage` (``storage`` opened on first use, in the thread) and
    recording on :attr:`instruments` (``instruments``, or new ones on
    ``meter_provider``: the global provider by default, which the companion configures
    when a Collector is named, see :func:`detwatch.app.create_app`). ``lock_path``
    ``None``: no lock, every process runs (tests).
    """

    thread_name = "detwatch-periodic"
    logger = logging.getLogger("detwatch.jobs")

    def __init__(
        self,
        schedule: S,
        storage: Callable[[], T],
        *,
        meter_provider: metrics.MeterProvider | None = None,
        instruments: CompanionInstruments | None = None,
        lock_path: Path | None = None,
    ) -> None:
        self.schedule = schedule
        self.interval_s = schedule.interval_s
        self._storage_factory = storage
        self._storage: T | None = None
        self.instruments = instruments if instruments is not None else CompanionInstruments.create(meter_provider)
        self._lock_path = lock_path
        self._lock_file: IO[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        """Completed passes of :meth:`run_once`."""

    @property
    def storage(self) -> T:
        """The storage read, opened on first use."""
        if self._storage is None:
            self._storage = self._storage_factory()
        return self._storage

    def run_once(self, now_unix_nano: int | None = None) -> object:
        raise NotImplementedError

    def _leader(self) -> bool:
        if self._lock_path is None or self._lock_file is not None:
            return True
        handle = open(self._lock_path, "ab")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._leader():
                    self.run_once()
            except Exception:  # the schedule outlives a bad run (database down, ...)
                self.logger.exception("%s: run failed", self.thread_name)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.close()
            self._lock_file = None


J = TypeVar("J", bound="PeriodicJob[Any, Any]")


def start_schedule(
    section: Any,
    parse: Callable[[Any], S],
    job: Callable[..., J],
    *,
    data_dir: Path,
    database_url: str,
    instruments: CompanionInstruments | None,
    name: str,
) -> J | None:
    """Validate a settings section (``parse``), build its ``job`` and start it; None when absent or without models.

    The job reads the database at ``database_url`` (opened on its first run) and takes
    ``<data_dir>/<name>.lock``. Raises :class:`~detwatch.config.ConfigError` with
    ``parse``'s message, which names the setting.
    """
    if section is None:
        return None
    try:
        schedule = parse(section)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not len(schedule.models):
        return None
    started: J = job(
        schedule, lambda: open_migrated(database_url), instruments=instruments, lock_path=data_dir / f"{name}.lock"
    )
    started.start()
    started.logger.info(
        "%s: %d models every %.0f s (pid %d)", name, len(schedule.models), schedule.interval_s, os.getpid()
    )
    return started
