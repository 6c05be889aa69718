"""The recorder process's main loop (see :mod:`._recorder_process`).

It reads its start-up settings from standard input, builds the application's meter
and logger providers with the registered factory, and then records the frames the
inference process writes into the ring, with the same :class:`._monitor._Monitor`
code as the in-process recording thread. Counter increments are summed for
:data:`._recorder.COUNTER_FLUSH_S` as there.

It stops on a ``stop`` frame, or when its standard input closes (the inference process
exited or was killed): either way it records what is left in the ring, then shuts the
providers down, which exports everything. It ignores SIGINT: a Ctrl-C in a terminal
reaches the whole process group, and the inference process decides when it ends.

It runs at a lower scheduling priority (:data:`NICENESS`): when the machine's cores are
all busy, the inference process is served first and the recorder catches up in the
gaps (its frames wait in the ring, which is what the ring is for).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import select
import signal
import struct
import sys
import time
from typing import Any

READ_LIMIT = 256
ACTIVE_POLL_S = 0.1
"""Pause between reads while frames arrive: frames are read in batches, not one wake-up each
(a wake-up costs tens of microseconds of cold-cache CPU; a call's telemetry can wait).
100 ms rather than 5: a 15 ms forward pass left one frame per wake-up; with batches of
several the recorder's CPU per frame fell by a third (the ring holds thousands of
frames). A flush or the exit wakes the recorder at once (a byte on its standard input)."""
NICENESS = 10
"""Added to the recorder process's niceness: inference wins a contended core, telemetry waits."""
IDLE_POLL_S = 0.1
"""Pause between reads when none arrived (a flush or the exit wakes the recorder sooner)."""


def _read_startup() -> Any:
    stdin = sys.stdin.buffer
    (length,) = struct.unpack("<I", stdin.read(4))
    return pickle.loads(stdin.read(length))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # no os.nice on Windows; a sandbox may refuse it
        os.nice(NICENESS)
    startup = _read_startup()
    for path in reversed(startup.sys_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    # Imported after sys.path is the parent's, so that the same package is used.
    from . import _recorder
    from ._fast_path import decode, is_fast, key_of
    from ._guard import log_failure
    from ._monitor import _Monitor
    from ._ring import Ring

    module_name, _, function_name = startup.factory.partition(":")
    factory = getattr(importlib.import_module(module_name), function_name)
    providers = factory(**startup.config)
    meter_provider, logger_provider = providers[0], providers[1]
    tracer_provider = providers[2] if len(providers) > 2 else None
    ring = Ring(startup.ring_fd, startup.capacity)
    monitors: dict[int, _Monitor] = {}
    for key, spec in startup.monitors.items():
        monitors[key] = _Monitor.from_spec(spec, meter_provider, logger_provider, tracer_provider)
    dirty: set[_Monitor] = set()
    next_add = 0.0

    def add_pending() -> None:
        for monitor in dirty:
            try:
                monitor.add_pending()
            except Exception:  # noqa: BLE001 - telemetry failures stay here
                log_failure("recorder_child.add_pending")
        dirty.clear()

    def load(payload: bytes) -> tuple[Any, ...]:
        """A frame as the general path sends it (a fast frame: decoded with its monitor's span name and attributes)."""
        if not is_fast(payload):
            frame: tuple[Any, ...] = pickle.loads(payload)
            return frame
        monitor = monitors.get(key_of(payload))
        if monitor is None:
            return ("unknown",)
        return decode(payload, monitor.span_name, monitor.span_attributes(None))

    def handle(frame: tuple[Any, ...]) -> bool:
        """Record one frame; ``False`` on ``stop``."""
        kind = frame[0]
        if kind == "call":
            monitor = monitors.get(frame[1])
            if monitor is not None and monitor.record_frame(frame) is not None:
                dirty.add(monitor)
        elif kind == "stage":
            monitor = monitors.get(frame[1])
            if monitor is not None:
                monitor.record_stage(frame[2], frame[3], frame[4], frame[5])
        elif kind == "dropped":
            monitor = monitors.get(frame[1])
            if monitor is not None:
                monitor.record_dropped(frame[2], frame[3])
        elif kind == "monitor":
            if frame[1] not in monitors:
                monitors[frame[1]] = _Monitor.from_spec(frame[2], meter_provider, logger_provider, tracer_provider)
        elif kind == "flush":
            add_pending()
            if frame[2]:
                for provider in (tracer_provider, meter_provider, logger_provider):
                    flush = getattr(provider, "force_flush", None)  # the API's no-op providers have none
                    if flush is not None:
                        flush()
            ring.set_ack(frame[1])
        elif kind == "stop":
            return False
        return True

    delay = ACTIVE_POLL_S
    running = True
    stdin_fd = sys.stdin.fileno()
    while running:
        frames = ring.read(READ_LIMIT)
        for payload in frames:
            try:
                frame = load(payload)
                if not handle(frame):
                    running = False
                    break
            except Exception:  # noqa: BLE001 - one bad frame must not stop the recorder
                log_failure("recorder_child")
        if dirty and time.monotonic() >= next_add:
            add_pending()
            next_add = time.monotonic() + _recorder.COUNTER_FLUSH_S
        if not running:
            break
        if len(frames) >= READ_LIMIT:
            continue  # behind: no pause
        if frames:
            delay = ACTIVE_POLL_S
        else:
            if dirty:
                add_pending()
            delay = IDLE_POLL_S
        # Wait (frames accumulate meanwhile, read in one go), waking at once when the
        # inference process asks (a flush or its exit writes a byte to our standard input)
        # or goes away (its end of our standard input closes).
        readable, _, _ = select.select([stdin_fd], [], [], delay)
        if readable and not os.read(stdin_fd, 4096):
            for payload in ring.read(limit=1 << 30):
                try:
                    if not handle(load(payload)):
                        break
                except Exception:  # noqa: BLE001
                    log_failure("recorder_child")
            running = False
    add_pending()
    for provider in (tracer_provider, meter_provider, logger_provider):
        try:
            shutdown = getattr(provider, "shutdown", None)  # the API's no-op providers have none
            if shutdown is not None:
                shutdown()
        except Exception:  # noqa: BLE001
            log_failure("recorder_child.shutdown")


if __name__ == "__main__":
    main()
