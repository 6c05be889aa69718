"""The recording thread: per-detection telemetry work happens off the caller's thread.

Recording 20 detections through the SDK (three instruments each, with a class
attribute) costs more than many detectors' own inference. The decorator therefore
does only constant work on the caller's thread (time the call, end the span, queue
the result) and one background thread per process reads the output and records the
metrics and the prediction event. Real detectors release the GIL while they run, so
the recording overlaps the next inference.

The queue is bounded: when the recording thread cannot keep up, a call's telemetry
is dropped (and counted in ``objdet.telemetry.dropped``) rather than slowing
inference or growing memory without limit. :func:`flush` waits until everything
queued so far is recorded; it also runs at interpreter exit, before the SDK's own
shutdown handlers (registered earlier, so run later), so nothing recorded is lost.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from typing import Protocol

from ._guard import log_failure

DEFAULT_MAX_PENDING = 10_000
"""Calls that may wait for recording before new ones are dropped (per process)."""

DEFAULT_MAX_PENDING_BYTES = 512 * 1024 * 1024
"""Input bytes (images, arrays) that waiting calls may keep alive before new ones are dropped.

A waiting call holds its input until it is recorded: with a stalled exporter, 10,000
queued 640x480 frames held 9 GB. A call is always taken when nothing waits, however
large its input."""

FORK_WAIT_S = 1.0
"""Longest time a fork waits for the recording thread to finish the item it is recording."""

COUNTER_FLUSH_S = 0.1
"""Longest time summed counter increments wait before they reach the SDK.

Each SDK measurement costs microseconds of attribute cleaning and hashing; counters
(images, detections by class) are summed over the calls of 100 ms and added once,
which is invisible at any export interval and saves several measurements per call."""


class Accumulator(Protocol):
    """Holds counter increments summed over several calls until :meth:`add_pending`."""

    def add_pending(self) -> None: ...

    def discard_pending(self) -> None:
        """Forget the sums (in a forked child: they are the parent's, which adds them itself)."""
        ...


class Recordable(Protocol):
    """A queued call whose telemetry the recording thread writes.

    ``record`` may sum counter increments into an :class:`Accumulator` instead of
    adding them one call at a time, and return it; the recorder adds the sums at
    least every :data:`COUNTER_FLUSH_S`, when idle, and before a flush completes.
    """

    def record(self) -> Accumulator | None: ...


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    __slots__ = ()


class Recorder:
    """A bounded queue and the one thread that drains it."""

    def __init__(
        self, max_pending: int = DEFAULT_MAX_PENDING, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._queue: queue.SimpleQueue[tuple[Recordable, int] | _Flush | _Stop] = queue.SimpleQueue()
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._atexit_registered = False
        # Held while an item is recorded (and sums are added): a fork waits for it, so that
        # the child never inherits an SDK lock that the recording thread held mid-record
        # (the child's recording thread would wait for it forever).
        self._busy = threading.Lock()
        self._fork_holds_busy = False
        self._dirty: set[Accumulator] = set()

    def submit(self, item: Recordable, nbytes: int = 0) -> bool:
        """Queue ``item`` (keeping ``nbytes`` of input alive); ``False`` (nothing queued) when full."""
        if self._thread is None:
            self._start()
        if self._queue.qsize() >= self.max_pending:
            return False
        with self._held_lock:
            if self._held_bytes and self._held_bytes + nbytes > self.max_pending_bytes:
                return False
            self._held_bytes += nbytes
        self._queue.put((item, nbytes))
        return True

    def _release(self, nbytes: int) -> None:
        if nbytes:
            with self._held_lock:
                self._held_bytes -= nbytes

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued before this call is recorded."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def pending(self) -> int:
        """Approximate number of queued items."""
        return self._queue.qsize()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="detwatch-recorder", daemon=True)
            thread.start()
            self._thread = thread
            if not self._atexit_registered:
                atexit.register(self._drain_at_exit)
                self._atexit_registered = True

    def _run(self) -> None:
        get = self._queue.get
        dirty = self._dirty
        busy = self._busy
        next_add = 0.0

        def add_pending() -> None:
            with busy:
                for accumulator in dirty:
                    try:
                        accumulator.add_pending()
                    except Exception:  # noqa: BLE001 - telemetry failures stay here
                        log_failure("recorder.add_pending")
                dirty.clear()

        while True:
            if dirty:
                try:
                    item = get(timeout=max(0.0, next_add - time.monotonic()))
                except queue.Empty:
                    add_pending()
                    continue
            else:
                item = get()
            if isinstance(item, _Flush):
                add_pending()
                item.done.set()
                continue
            if isinstance(item, _Stop):
                add_pending()
                return
            recordable, nbytes = item
            with busy:
                try:
                    accumulator = recordable.record()
                except Exception:  # noqa: BLE001 - one bad record must not stop the thread
                    log_failure("recorder")
                    continue
                finally:
                    self._release(nbytes)
                    del item, recordable  # the input may be large: not kept until the next item
                if accumulator is not None:
                    if not dirty:
                        next_add = time.monotonic() + COUNTER_FLUSH_S
                    dirty.add(accumulator)
            if dirty and time.monotonic() >= next_add:
                add_pending()

    def _drain_at_exit(self) -> None:
        self.flush(timeout=5.0)

    def _before_fork(self) -> None:
        # Bounded: a recording stuck in a synchronous exporter must not hang the fork.
        self._fork_holds_busy = self._busy.acquire(timeout=FORK_WAIT_S)

    def _after_fork_in_parent(self) -> None:
        if self._fork_holds_busy:
            self._fork_holds_busy = False
            self._busy.release()

    def _after_fork_in_child(self) -> None:
        # The thread does not survive fork; queued items, and the counter sums not yet
        # added, belong to the parent (which records and adds them itself).
        for accumulator in self._dirty:
            try:
                accumulator.discard_pending()
            except Exception:  # noqa: BLE001 - telemetry failures stay here
                log_failure("recorder.after_fork")
        self._dirty = set()
        self._queue = queue.SimpleQueue()
        self._held_bytes = 0
        self._held_lock = threading.Lock()
        self._thread = None
        self._lock = threading.Lock()
        self._busy = threading.Lock()
        self._fork_holds_busy = False


RECORDER = Recorder()
"""The process-wide recorder shared by every decorated function."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=RECORDER._before_fork,
        after_in_parent=RECORDER._after_fork_in_parent,
        after_in_child=RECORDER._after_fork_in_child,
    )


def flush(timeout: float | None = 10.0) -> bool:
    """Block until all telemetry queued so far is recorded; ``False`` on timeout.

    Call it before forcing the SDK to export (``provider.force_flush()``), e.g. at the
    end of a batch job or in tests. It also runs automatically at interpreter exit.
    Calls recorded in the recorder process (:func:`use_recorder_process`) are also
    exported by the time it returns.
    """
    from ._recorder_process import PROCESS

    deadline = None if timeout is None else time.monotonic() + timeout
    recorded = RECORDER.flush(timeout)
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    return PROCESS.flush(left) and recorded
