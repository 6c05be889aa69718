"""The recording thread across fork: the child records on its own, with none of the parent's state.

A process that forks after the decorator's first use (multiprocessing with the fork
start method, gunicorn --preload) gets a copy of everything, including locks held by
the parent's recording thread at that instant and counter sums not yet added.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any

import pytest

from _telemetry import Telemetry
from detwatch_instrumentation import _recorder, monitor_detections, semconv
from detwatch_instrumentation._recorder import RECORDER

DETECTIONS = [{"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}]


def _fork(child: Any) -> int:
    """Run ``child()`` in a forked process; its exit code (``child`` returns True for 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: what is tested here
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_fork_waits_for_the_item_being_recorded() -> None:
    """Forked mid-record, the child inherited an SDK lock held for good: its telemetry stopped."""
    held = threading.Lock()  # stands for an SDK instrument's lock, taken inside record()
    inside = threading.Event()

    class SlowRecord:
        def record(self) -> None:
            with held:
                inside.set()
                time.sleep(0.3)

    assert RECORDER.submit(SlowRecord())
    assert inside.wait(10)
    assert _fork(lambda: held.acquire(timeout=5)) == 0  # free in the child: the fork waited for the record


def test_a_forked_child_does_not_add_the_parents_unsent_counts(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's summed, not yet added counts were added again by the child: 4 images for its 1."""
    monkeypatch.setattr(_recorder, "COUNTER_FLUSH_S", 60.0)  # sums wait, as for up to 100 ms in real use

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    for _ in range(3):
        predict("image")
    deadline = time.monotonic() + 10
    while RECORDER.pending() and time.monotonic() < deadline:
        time.sleep(0.01)

    def child() -> bool:
        predict("image")
        return bool(sum(p.value for p in telemetry.points(semconv.IMAGES.name)) == 1)

    assert _fork(child) == 0
    assert sum(p.value for p in telemetry.points(semconv.IMAGES.name)) == 3  # the parent still adds its own
