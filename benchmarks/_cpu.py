"""Where a benchmark's CPU time went: per process group and for the whole machine, from Linux's ``/proc``.

A rate says how fast; on a machine whose cores the client, the service and the
database share, it does not say whether a target is within reach. CPU seconds per
event do: at a target rate the machine's cores allow ``cores / rate`` seconds of CPU
per event for everything together, and what each part spends is measured here.

``/proc/<pid>/stat`` counts every thread of a process (user and system time, in clock
ticks); ``/proc/stat``'s first line the machine's busy and idle time. Elsewhere (no
``/proc``) every figure is ``None`` and reports print "n/a".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["CpuUse", "measure", "processes_named", "usable_cores"]

_PROC: Final = Path("/proc")
_TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _process_seconds(pids: Iterable[int]) -> dict[int, float] | None:
    """User plus system time of each of these processes (all its threads); vanished ones are left out."""
    if not _PROC.is_dir():
        return None
    out = {}
    for pid in pids:
        try:
            fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of stat)
    return out


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, all) clock ticks of every CPU since boot; ``iowait`` counts as idle."""
    try:
        with open(_PROC / "stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle, sum(values[:8])


def processes_named(name: str) -> list[int]:
    """PIDs of the local processes whose command name is ``name`` (``postgres``: a server and its backends)."""
    if not _PROC.is_dir():
        return []
    out = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during one timed run, by part, and how busy the machine was."""

    seconds: float
    """Wall time of the run."""
    client: float | None
    """This process: the load generator, or the raw driver inserts."""
    service: float | None
    """The service's processes (gunicorn workers); 0 for a raw run."""
    database: float | None
    """The database server's processes; 0 for SQLite, which runs inside its callers."""
    busy_cores: float | None
    """Average number of the machine's CPUs busy (anything, not only these parts)."""

    def per_event(self, events: int) -> tuple[float | None, float | None, float | None, float | None]:
        """(client, service, database, sum of the three) in microseconds per event."""
        parts = (self.client, self.service, self.database)
        scaled = tuple(None if p is None else p / events * 1e6 for p in parts)
        total = None if any(p is None for p in scaled) else sum(p for p in scaled if p is not None)
        return scaled[0], scaled[1], scaled[2], total


def measure(
    run: Callable[[], object],
    service_pids: Callable[[], Sequence[int]] = list,
    database_pids: Callable[[], Sequence[int]] = list,
) -> CpuUse:
    """Run ``run()`` and say what it cost.

    The pid callables are asked before and after: a process that started during the run
    counts with all its time, one that ended during it with none (its time is gone from
    ``/proc``), so the parts should be processes that live through the run.
    """
    before = _Snapshot.take(service_pids, database_pids)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    after = _Snapshot.take(service_pids, database_pids)

    def spent(a: dict[int, float] | None, b: dict[int, float] | None) -> float | None:
        if a is None or b is None:
            return None
        return sum(t - a.get(pid, 0.0) for pid, t in b.items())

    busy = None
    if before.machine is not None and after.machine is not None:
        (busy0, all0), (busy1, all1) = before.machine, after.machine
        cpus = os.cpu_count() or 1  # /proc/stat sums every CPU of the machine
        busy = cpus * (busy1 - busy0) / (all1 - all0) if all1 > all0 else None
    return CpuUse(
        seconds,
        spent(before.client, after.client),
        spent(before.service, after.service),
        spent(before.database, after.database),
        busy,
    )


@dataclass(frozen=True)
class _Snapshot:
    client: dict[int, float]
    service: dict[int, float] | None
    database: dict[int, float] | None
    machine: tuple[int, int] | None

    @classmethod
    def take(cls, service_pids: Callable[[], Sequence[int]], database_pids: Callable[[], Sequence[int]]) -> _Snapshot:
        times = os.times()
        return cls(
            {os.getpid(): times.user + times.system},
            _process_seconds(service_pids()),
            _process_seconds(database_pids()),
            _machine_ticks(),
        )
