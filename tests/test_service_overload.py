"""Overload under gunicorn: ingest beyond its slots is refused with 429 and Retry-After, the rest is served.

The service runs for real (3 sync workers, one ingest slot); the test makes ingest
"busy" by holding the slot's lock file itself, exactly as an ingest request in a
worker holds it (detwatch.api._admission), so that what is shown does not depend on how
fast this machine is. How feedback latency behaves while real ingest saturates the
slots is shown by benchmarks/bench_companion.py, not timed here.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor

from _service import Companion, companion_on

PROTOBUF = "application/x-protobuf"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    """Three workers, one ingest slot: two workers stay free for everything but ingest."""
    env = {"DETWATCH_INGEST_CONCURRENCY": "1"}
    with companion_on(request.param, request, tmp_path_factory.mktemp("overload"), workers=3, env=env) as service:
        yield service


def _slot(companion: Companion) -> Path:
    directory = companion.data_dir / "ingest-slots"
    directory.mkdir(exist_ok=True)
    return directory / "slot-0.lock"


@pytest.fixture
def busy(companion: Companion) -> Iterator[threading.Event]:
    """Hold the only ingest slot (as a running ingest does) until the event is set or the test ends."""
    fd = os.open(_slot(companion), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    release = threading.Event()

    def hold() -> None:
        release.wait(60)
        os.close(fd)

    holder = threading.Thread(target=hold)
    holder.start()
    yield release
    release.set()
    holder.join()


def _events(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "prediction_id": f"{prefix}-{i}",
            "time": "2024-02-01T12:00:00Z",
            "model_id": "overload",
            "detections": [{"class": "car", "confidence": 0.5, "box": [0.0, 0.0, 10.0, 20.0]}],
        }
        for i in range(n)
    ]


def _records(prefix: str, n: int) -> list[ReadableLogRecord]:
    """Log records as the decorator emits them (event name, JSON body), captured from a real SDK logger."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("detwatch_instrumentation")
    for event in _events(prefix, n):
        logger.emit(body=json.dumps(event), event_name="objdet.prediction")
    provider.shutdown()
    return list(exporter.get_finished_logs())


def _otlp(prefix: str, n: int) -> bytes:
    return encode_logs(_records(prefix, n)).SerializeToString()


def _predictions(companion: Companion) -> int:
    counts: dict[str, int] = requests.get(f"{companion.url}/v1/status", timeout=10).json()["counts"]
    return counts["predictions"]


def test_ingest_beyond_its_slots_is_refused_with_retry_after_and_stores_nothing(
    companion: Companion, busy: threading.Event
) -> None:
    before = _predictions(companion)
    logs = requests.post(
        f"{companion.url}/v1/logs", data=_otlp("refused", 3), headers={"Content-Type": PROTOBUF}, timeout=10
    )
    plain = requests.post(
        f"{companion.url}/v1/predictions", json={"predictions": _events("refused-json", 2)}, timeout=10
    )
    for response in (logs, plain):
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["code"] == "overloaded"
    assert _predictions(companion) == before
    busy.set()  # the ingest that held the slot ends: the same request is now taken
    deadline = time.monotonic() + 10
    while True:
        again = requests.post(
            f"{companion.url}/v1/logs", data=_otlp("refused", 3), headers={"Content-Type": PROTOBUF}, timeout=10
        )
        if again.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert again.status_code == 200
    assert _predictions(companion) == before + 3


def test_feedback_status_and_reads_are_served_while_every_ingest_slot_is_busy(
    companion: Companion, busy: threading.Event
) -> None:
    feedback = requests.post(
        f"{companion.url}/v1/feedback", json={"type": "correct", "prediction_id": "not-yet-known"}, timeout=10
    )
    assert feedback.status_code == 201
    assert requests.get(f"{companion.url}/v1/status", timeout=10).status_code == 200
    assert requests.get(f"{companion.url}/v1/models", timeout=10).status_code == 200


def test_the_sdk_exporter_retries_after_a_429_and_delivers_every_event(
    companion: Companion, busy: threading.Event
) -> None:
    before = _predictions(companion)
    exporter = OTLPLogExporter(endpoint=f"{companion.url}/v1/logs", timeout=20)
    threading.Timer(1.0, busy.set).start()  # the busy ingest ends after the first refusal
    started = time.monotonic()
    assert exporter.export(_records("retried", 4)) == LogRecordExportResult.SUCCESS
    assert time.monotonic() - started >= 1.0  # it was refused at first, and waited
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert _predictions(companion) == before + 4


def test_a_slot_held_by_a_killed_process_is_free_again(companion: Companion) -> None:
    # A worker SIGKILLed mid-ingest: the kernel drops its lock with the process.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(_slot(companion))!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        body = {"predictions": _events("after-kill", 1)}
        assert requests.post(f"{companion.url}/v1/predictions", json=body, timeout=10).status_code == 429
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    answer = requests.post(f"{companion.url}/v1/predictions", json=body, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 1
