"""Recording in another process: the inference process keeps only the span and a hand-off.

Why a process
-------------
An eager PyTorch forward pass (torchvision, Ultralytics, MMDetection) is Python code
that holds the GIL while it launches kernels. A recording *thread* in the same process
then takes turns with inference on one GIL: every microsecond of SDK work it does (62
measurements and a log record per image of 20 detections) lands on the inference
thread, plus the switching. Measured in ``benchmarks/bench_overhead.py``: on a model
that holds the GIL the thread costs the caller more than recording inline does. Only
work done outside the process's GIL is off the caller's path.

How
---
When the application's SDK was set up by a function that another process can run
again (``detwatch.configure_opentelemetry`` registers itself through
:func:`use_recorder_process`), the decorator's calls whose meter and logger providers
are those providers go to a recorder process instead of the recording thread. On the
caller's thread a call costs its span (started here, or only planned here: below;
either way it nests and samples as the application configured), host copies of the output arrays
(:mod:`._snapshot`: one device-to-host copy per output), and one pickled frame
written into a shared-memory ring (:mod:`._ring`). The recorder process
(:mod:`._recorder_child`) builds the same meter and logger providers from the same
configuration (and the same ``OTEL_*`` environment), and records each frame with the
same code as the thread would (:meth:`._monitor._Monitor.record`), so metrics and
prediction events are identical; each event carries the call's trace context.

Given the application's tracer provider too (``tracer_provider=``, the factory then
returns three providers), the caller does not even start the span: it plans it
(:mod:`._span_plan`) and the recorder process builds and exports it. What is left on
the caller's thread is the plan, a snapshot of the outputs as plain lists (a frame of
built-in types pickles in C, with no Python call per object) and a ring write; in the
recorder process, a whole image's values per histogram series go to the SDK's
aggregation in one step (:mod:`._histogram_batch`), exactly as one ``record`` each
would. The recorder process runs at a lower priority (:data:`._recorder_child.NICENESS`).

Guarantees: the ring never blocks a call (a full ring drops the call's telemetry,
counted in ``objdet.telemetry.dropped``); a recorder process that dies is started
again (at most :data:`MAX_RESTARTS` times in :data:`RESTART_WINDOW_S`), after which
the decorator records in-process on the thread, logging a warning; a ``fork`` child
starts its own recorder process on first use; :func:`flush` and interpreter exit
wait for everything written so far to be recorded and exported. When the recorder
process cannot start (no ``sys.executable``, no shared memory), recording stays
in-process.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._guard import log_failure
from ._ring import DEFAULT_CAPACITY, Ring, create_ring_fd
from ._snapshot import is_plain, pickle_frame
from ._span_plan import is_standard

if TYPE_CHECKING:
    from ._monitor import _Call, _Monitor

_logger = logging.getLogger("detwatch_instrumentation")

MAX_RESTARTS = 3
"""Restarts of a recorder process that died, within :data:`RESTART_WINDOW_S`, before recording falls back in-process."""
RESTART_WINDOW_S = 60.0
CHECK_INTERVAL_S = 1.0
"""How often a call checks that the recorder process is alive (one ``waitpid``)."""
EXIT_WAIT_S = 10.0
"""How long interpreter exit waits for the recorder process to record and export what it was given."""
RING_BYTES_ENV = "DETWATCH_RECORDER_RING_BYTES"


@dataclass(frozen=True)
class MonitorSpec:
    """A decorated function's settings, as the recorder process needs them (picklable)."""

    model_id: str
    model_version: str
    box_format: str
    normalized_boxes: bool
    label_names: Any
    has_adapter: bool
    image_size: tuple[float, float] | None
    max_classes: int
    class_allowlist: frozenset[str] | None
    metric_attributes: Mapping[str, Any]
    metric_attribute_allowlist: frozenset[str]
    emit_events: bool


@dataclass(frozen=True)
class Startup:
    """What a recorder process is started with (pickled to its standard input)."""

    factory: str
    config: Mapping[str, Any]
    sys_path: list[str]
    ring_fd: int
    capacity: int
    monitors: dict[int, MonitorSpec]


@dataclass
class Stats:
    """What the recorder process hand-off has done in this process (for tests and benchmarks)."""

    frames: int = 0
    dropped: int = 0
    restarts: int = 0
    fallbacks: int = 0


class RecorderProcess:
    """The inference process's side: the ring, the child process and its lifecycle."""

    def __init__(self) -> None:
        self._factory: str | None = None
        self._config: Mapping[str, Any] = {}
        self._providers: tuple[object, object] | None = None
        self._tracer_provider: object | None = None
        """Whose spans are planned here and built by the recorder process (:mod:`._span_plan`)."""
        self._lock = threading.Lock()
        self._failed = False
        self._ring: Ring | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._specs: dict[int, MonitorSpec] = {}
        self._sent: set[int] = set()
        self._dropped: dict[tuple[int, str | None], int] = {}
        self._monitors: dict[int, _Monitor] = {}
        self._flush_seq = 0
        self._next_check = 0.0
        self._restarts: collections.deque[float] = collections.deque()
        self._atexit_registered = False
        self.stats = Stats()
        self._finishing: list[subprocess.Popen[bytes]] = []
        """Recorder processes left to finish exporting; kept (and reaped when done) so none is a zombie."""

    # ------------------------------------------------------------ configuration

    def configure(
        self,
        factory: str,
        config: Mapping[str, Any],
        meter_provider: object,
        logger_provider: object,
        tracer_provider: object | None = None,
    ) -> None:
        """Record calls for these providers in a process that builds its own with ``factory(**config)``."""
        with self._lock:
            if self._proc is not None:
                self._stop_locked(EXIT_WAIT_S)
            self._factory = factory
            self._config = dict(config)
            self._providers = (meter_provider, logger_provider)
            self._tracer_provider = tracer_provider if is_standard(tracer_provider) else None
            self._failed = False
            self._restarts.clear()

    def serves(self, meter_provider: object, logger_provider: object) -> bool:
        """Whether calls recorded with these providers go to the recorder process."""
        providers = self._providers
        return (
            providers is not None
            and not self._failed
            and meter_provider is providers[0]
            and logger_provider is providers[1]
        )

    def plans_spans(self, tracer_provider: object) -> bool:
        """Whether spans of ``tracer_provider`` are planned here and built in the recorder process."""
        return tracer_provider is not None and tracer_provider is self._tracer_provider and not self._failed

    def release(self, meter_provider: object, logger_provider: object, timeout: float = EXIT_WAIT_S) -> None:
        """Stop recording for these providers: the recorder process records what it has, exports and exits."""
        with self._lock:
            if self._providers != (meter_provider, logger_provider):
                return
            self._stop_locked(timeout)
            self._providers = None
            self._tracer_provider = None
            for monitor in self._monitors.values():
                monitor._enabled_until = 0.0

    def pid(self) -> int | None:
        """The recorder process's id, once started."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------ caller's thread

    def send_call(self, monitor: _Monitor, call: _Call) -> bool:
        """Hand one call over; ``False`` when the recorder process is not available (record in-process)."""
        try:
            frame = monitor.process_frame(call)
        except Exception:  # noqa: BLE001 - an output that cannot be copied is dropped, counted
            log_failure("recorder_process.frame")
            frame = None
        n = len(frame[8]) if frame is not None and call.batch and isinstance(frame[8], list) else 1
        # No prediction context, one image, a plain snapshot: built-in types only (see is_plain).
        plain = frame is not None and frame[3] is None and not call.batch and is_plain(frame[10])
        return self.send(frame, monitor, images=n, plain=plain)

    def _ring_for_locked(self, monitor: _Monitor) -> Ring | None:
        """The ring, with the recorder process started and ``monitor`` announced; ``None``: record in-process."""
        if self._failed or self._providers is None:
            return None
        if self._ring is None and not self._start_locked():
            return None
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL_S
            if not self._alive_locked():
                return None
        ring = self._ring
        assert ring is not None
        if monitor.key not in self._sent:
            self._specs[monitor.key] = monitor.spec()
            self._monitors[monitor.key] = monitor
            if ring.write(pickle.dumps(("monitor", monitor.key, self._specs[monitor.key]), 5)):
                self._sent.add(monitor.key)
        if self._dropped:
            self._send_dropped_locked(ring)
        return ring

    def send_parts(self, parts: tuple[Any, ...], monitor: _Monitor) -> bool | None:
        """Write a fast frame (:mod:`._fast_path`) of one image.

        ``True``: written or counted dropped (the ring was full); ``False``: record
        in-process; ``None``: a part could not be copied (nothing written; the caller
        sends the call the general way).
        """
        with self._lock:
            ring = self._ring
            # The common case without a call to _ring_for_locked: running, checked lately, monitor sent, no drops.
            if ring is None or self._dropped or monitor.key not in self._sent or time.monotonic() >= self._next_check:
                ring = self._ring_for_locked(monitor)
                if ring is None:
                    return False
            elif self._failed or self._providers is None:
                return False
            if monitor.key in self._sent:
                try:
                    written = ring.write_parts(parts)
                except (ValueError, BufferError, TypeError):
                    return None
                if written:
                    self.stats.frames += 1
                    return True
            self._count_dropped_locked(monitor, None, 1)
            return True

    def send(self, frame: tuple[Any, ...] | None, monitor: _Monitor, images: int = 0, plain: bool = False) -> bool:
        """Write ``frame`` (``None``: count it dropped); ``False`` when recording must stay in-process."""
        with self._lock:
            ring = self._ring_for_locked(monitor)
            if ring is None:
                return False
            if monitor.key not in self._sent:
                self._count_dropped_locked(monitor, frame, images)
                return True
            try:
                payload = pickle_frame(frame, plain) if frame is not None else None
            except Exception:  # noqa: BLE001 - e.g. an attribute value that cannot be pickled
                log_failure("recorder_process.pickle")
                payload = None
            if payload is None or not ring.write(payload):
                self._count_dropped_locked(monitor, frame, images)
                return True
            self.stats.frames += 1
            return True

    def _count_dropped_locked(self, monitor: _Monitor, frame: tuple[Any, ...] | None, images: int) -> None:
        if frame is not None and frame[0] == "stage":
            return  # a stage duration lost with a full ring is not an image
        key = (monitor.key, frame[2] if frame is not None else None)
        self._dropped[key] = self._dropped.get(key, 0) + images
        self.stats.dropped += images

    def _send_dropped_locked(self, ring: Ring) -> None:
        for (key, variant), n in list(self._dropped.items()):
            if key in self._sent and ring.write(pickle.dumps(("dropped", key, variant, n), 5)):
                del self._dropped[(key, variant)]

    # ------------------------------------------------------------ flush and exit

    def flush(self, timeout: float | None = 10.0, *, export: bool = True) -> bool:
        """Wait until the recorder process has recorded (and, with ``export``, exported) everything written so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            ring, proc = self._ring, self._proc
            if ring is None or proc is None:
                return True
            if self._dropped:
                self._send_dropped_locked(ring)
            self._flush_seq += 1
            seq = self._flush_seq
            while not ring.write(pickle.dumps(("flush", seq, export), 5)):
                if (deadline is not None and time.monotonic() > deadline) or proc.poll() is not None:
                    return False
                _wake(proc)
                time.sleep(0.001)
            _wake(proc)
        delay = 0.0005
        while ring.ack() < seq:
            if proc.poll() is not None or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        return True

    def _drain_at_exit(self) -> None:
        with self._lock:
            self._stop_locked(EXIT_WAIT_S)

    def _stop_locked(self, timeout: float) -> None:
        ring, proc = self._ring, self._proc
        if ring is None or proc is None:
            return
        if self._dropped:
            self._send_dropped_locked(ring)
        deadline = time.monotonic() + timeout
        while not ring.write(pickle.dumps(("stop",), 5)):
            if time.monotonic() > deadline or proc.poll() is not None:
                break
            _wake(proc)
            time.sleep(0.001)
        _wake(proc)
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Still exporting (a slow Collector): it finishes on its own, its input closed.
            _logger.warning("detwatch: the recorder process is still exporting; leaving it to finish")
            self._finishing.append(proc)
        self._close_locked()

    def _close_locked(self) -> None:
        proc, ring = self._proc, self._ring
        self._proc = None
        self._ring = None
        self._sent.clear()
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if ring is not None:
            ring.close()
            os.close(ring.fd)

    # ------------------------------------------------------------ the child's lifecycle

    def _start_locked(self) -> bool:
        self._finishing = [proc for proc in self._finishing if proc.poll() is None]
        capacity = int(os.environ.get(RING_BYTES_ENV, DEFAULT_CAPACITY))
        try:
            fd = create_ring_fd(capacity)
            ring = Ring(fd, capacity)
            ring.prefault()
        except (OSError, ValueError):
            log_failure("recorder_process.ring")
            self._fall_back_locked("no shared memory")
            return False
        self._ring = ring
        if not self._spawn_locked():
            self._close_locked()
            self._fall_back_locked("it could not be started")
            return False
        if not self._atexit_registered:
            # Registered after the SDK's own exit handlers, so it runs before them.
            atexit.register(self._drain_at_exit)
            self._atexit_registered = True
        return True

    def _spawn_locked(self) -> bool:
        ring = self._ring
        if ring is None or self._factory is None or not sys.executable:
            return False
        startup = Startup(
            factory=self._factory,
            config=self._config,
            sys_path=[p for p in sys.path if isinstance(p, str)],
            ring_fd=ring.fd,
            capacity=ring.capacity,
            monitors=dict(self._specs),
        )
        blob = pickle.dumps(startup, 5)
        code = "from detwatch_instrumentation._recorder_child import main; main()"
        env = dict(os.environ)
        # The child finds this package where the parent found it, even when it was put on sys.path by hand.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                pass_fds=(ring.fd,),
                env=env,
                close_fds=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(struct.pack("<I", len(blob)) + blob)
            proc.stdin.flush()
        except (OSError, ValueError):
            log_failure("recorder_process.spawn")
            return False
        self._proc = proc
        self._sent = set(self._specs)
        self._next_check = time.monotonic() + CHECK_INTERVAL_S
        return True

    def _alive_locked(self) -> bool:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return True
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            self._close_locked()
            self._fall_back_locked(f"it died {MAX_RESTARTS + 1} times in {RESTART_WINDOW_S:.0f} s")
            return False
        self._restarts.append(now)
        self.stats.restarts += 1
        _logger.warning("detwatch: the recorder process exited (%s); starting it again", proc and proc.returncode)
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if not self._spawn_locked():
            self._close_locked()
            self._fall_back_locked("it could not be started again")
            return False
        return True

    def _fall_back_locked(self, why: str) -> None:
        self._failed = True
        self.stats.fallbacks += 1
        _logger.warning("detwatch: recording in this process (on a thread): the recorder process failed, %s", why)
        for monitor in self._monitors.values():
            monitor._enabled_until = 0.0  # decide again at the next call

    # ------------------------------------------------------------ fork

    def _after_fork_in_child(self) -> None:
        # The ring and the process belong to the parent: this process starts its own on first use.
        self._lock = threading.Lock()
        self._ring = None
        self._proc = None
        self._sent = set()
        self._dropped = {}
        self._flush_seq = 0
        self._restarts = collections.deque()
        self._atexit_registered = False
        self.stats = Stats()


def _wake(proc: subprocess.Popen[bytes]) -> None:
    """Wake the recorder process now (a byte on its standard input), not at its next read of the ring."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):  # exited, or its input already closed
            proc.stdin.write(b"w")
            proc.stdin.flush()


PROCESS = RecorderProcess()
"""The process-wide hand-off to the recorder process."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PROCESS._after_fork_in_child)


def use_recorder_process(
    factory: str,
    *,
    meter_provider: object,
    logger_provider: object,
    tracer_provider: object | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Record the decorator's metrics and events for these providers in a separate process.

    ``factory`` is ``"module:function"``; the recorder process imports it and calls
    ``function(**config)``, which must return ``(meter_provider, logger_provider)``
    built as the application built ``meter_provider`` and ``logger_provider`` (same
    resource, readers and exporters). ``config`` must pickle. Decorated calls whose
    providers (given to the decorator, or the global ones) are these objects are then
    recorded there. With ``tracer_provider`` (the SDK's ``TracerProvider``), ``function``
    must return ``(meter_provider, logger_provider, tracer_provider)``, the last built as
    ``tracer_provider`` was: the decorated calls' spans are then planned in this process
    and built and exported there (:mod:`._span_plan`); otherwise spans stay in this
    process. ``detwatch.configure_opentelemetry`` calls this for you.
    """
    if not isinstance(factory, str) or ":" not in factory:
        raise ValueError(f"factory: expected 'module:function', got {factory!r}")
    config = dict(config or {})
    try:
        pickle.dumps(config, 5)
    except Exception as exc:  # noqa: BLE001 - pickle raises many types
        raise ValueError(f"config: must pickle ({exc})") from None
    PROCESS.configure(factory, config, meter_provider, logger_provider, tracer_provider)


def recorder_pid() -> int | None:
    """The recorder process's id, while one runs (for CPU accounting)."""
    return PROCESS.pid()
