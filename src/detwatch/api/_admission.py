"""Admission control for ingest: a bounded number of ingest requests at once per machine.

Why: ingest is CPU-bound, and a worker's threads share one interpreter lock. An OTLP
sender (a Collector) that pushes prediction batches faster than the database takes
them would otherwise keep every worker process busy decoding, and a feedback webhook,
a dashboard read or a health check would wait behind 100 ms batches. With
``DETWATCH_INGEST_CONCURRENCY`` = N, at most N ingest requests (``POST /v1/logs``,
``POST /v1/predictions``) run at once on this machine; one more is answered at once
with 429 and ``Retry-After`` (OTLP/HTTP's "retry later", which Collectors and SDK
exporters honour), and the other workers stay free for everything else. ``detwatch
serve --workers W`` sets N = W - 1 unless the variable says otherwise; 0 means no
limit.

How: N lock files in ``<data dir>/ingest-slots/``, taken with ``flock(LOCK_EX |
LOCK_NB)`` on a fresh open file (so threads of one process exclude each other too).
The kernel releases a slot when its holder exits, however it dies (a SIGKILLed
worker leaks nothing), and all workers of one machine share the data dir. Several
replicas on several machines each have their own slots: the limit is per machine,
which is where the CPU that ingest saturates lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from collections.abc import Iterator
from pathlib import Path

__all__ = ["IngestSlots"]


class IngestSlots:
    """``slots`` machine-wide ingest slots kept as lock files in ``directory`` (0: unlimited)."""

    def __init__(self, directory: Path, slots: int) -> None:
        if slots < 0:
            raise ValueError("slots must be at least 0")
        self.directory = directory
        self.slots = slots
        if slots:
            directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[bool]:
        """Hold a free slot for the ``with`` block; yields False (holding none) when all are taken."""
        if not self.slots:
            yield True
            return
        start = random.randrange(self.slots)  # spread the probes: the first free slot is found sooner
        for k in range(self.slots):
            path = self.directory / f"slot-{(start + k) % self.slots}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                # No slot file (a read-only or full data dir): admission is a protection, not a
                # correctness matter, so ingest goes ahead; the database will say if it cannot write.
                yield True
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield True
            finally:
                os.close(fd)  # closing the last descriptor of the open file releases the lock
            return
        yield False
