"""Retention under gunicorn: raw events older than DETWATCH_RETENTION_DAYS (by event time) go, aggregates stay."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, cast

import pytest
import requests

from _aggregates import assert_cells_equal, expected_cells, stored_cells
from _postgres import PostgresServer
from _service import Companion
from detwatch.config import ConfigError, load_settings
from detwatch.contract.predictions import Prediction, format_time, parse_prediction
from detwatch.jobs.retention import RetentionScheduler
from detwatch.storage import Storage, open_storage

NS_PER_DAY: Final = 86_400 * 1_000_000_000


def _events(now_ns: int) -> list[dict[str, Any]]:
    """Events 3 days old, just over and just under one day old, and an hour old."""
    rng = random.Random(5)
    ages_days = [3.0] * 8 + [1.05] * 5 + [0.95] * 6 + [1 / 24] * 7
    out = []
    for i, age in enumerate(ages_days):
        detections = [
            {"class": rng.choice(["car", "bus"]), "confidence": rng.uniform(0.1, 0.99), "box": [1.0, 2.0, 30.0, 40.0]}
            for _ in range(rng.randrange(4))
        ]
        out.append(
            {
                "prediction_id": f"r-{i}",
                "time": format_time(now_ns - int(age * NS_PER_DAY)),
                "model_id": "retained",
                "latency_ms": rng.uniform(1, 30),
                "image": {"width": 640, "height": 480},
                "detections": detections,
            }
        )
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for SQLite (the service's default file in its data dir), else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)


def test_the_service_expires_raw_events_by_event_time_and_keeps_their_aggregates(
    database: str | None, tmp_path: Path
) -> None:
    env = {"DETWATCH_RETENTION_DAYS": "1", "DETWATCH_RETENTION_INTERVAL": "0.5"}
    now = time.time_ns()
    events = _events(now)
    parsed = [parse_prediction(e) for e in events]
    kept = {p.prediction_id for p in parsed if p.time_unix_nano >= now - NS_PER_DAY}
    assert 0 < len(kept) < len(parsed)
    with Companion(tmp_path / "data", workers=2, database_url=database, env=env) as service:
        answer = requests.post(f"{service.url}/v1/predictions", json={"predictions": events}, timeout=10)
        assert answer.json()["accepted"] == len(events)
        deadline = time.monotonic() + 30
        while True:  # the first run comes about one interval after a worker's first request
            count = requests.get(f"{service.url}/v1/status", timeout=10).json()["counts"]["predictions"]
            if count == len(kept) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert count == len(kept)
    url = database or f"sqlite:///{tmp_path / 'data' / 'detwatch.db'}"
    storage = open_storage(url)
    try:
        assert {p.prediction_id for p in parsed if storage.get_prediction(p.prediction_id) is not None} == kept
        assert_cells_equal(stored_cells(storage, "retained"), expected_cells(parsed))  # every event still counted
    finally:
        storage.close()


def test_one_process_per_machine_expires_at_a_time(storage: Storage, tmp_path: Path) -> None:
    now = time.time_ns()
    old: list[Prediction] = [parse_prediction(e) for e in _events(now) if e["prediction_id"] in ("r-0", "r-1")]
    storage.ingest_predictions(old)
    lock = tmp_path / "retention.lock"
    scheduler = RetentionScheduler(storage, days=1, interval_s=3600, lock_path=lock, clock=lambda: now)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is expiring
        assert scheduler.run_once() is None
        assert storage.counts()["predictions"] == 2
    finally:
        os.close(fd)
    assert scheduler.run_once() == 2
    assert storage.counts()["predictions"] == 0


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("DETWATCH_RETENTION_DAYS", "1e6", "retention_days"),
        ("DETWATCH_AGGREGATE_HOURLY_DAYS", "40000", "aggregate_hourly_days"),
        ("DETWATCH_RETENTION_INTERVAL", "1e12", "retention_interval_s"),
    ],
)
def test_windows_beyond_any_event_time_are_refused_naming_the_setting(
    tmp_path: Path, variable: str, value: str, setting: str
) -> None:
    """A million days of retention made the cutoff overflow 64 bits, and the expiry thread died of it."""
    with pytest.raises(ConfigError, match=rf"^{setting}: at most"):
        load_settings({variable: value, "DETWATCH_CONFIG": str(tmp_path / "absent.yaml")})


def test_a_failing_run_does_not_end_the_expiry_thread(storage: Storage, tmp_path: Path) -> None:
    """Only StorageError was caught: anything else ended expiry and compaction for the life of the worker."""
    failures = [OverflowError("a cutoff out of range")]

    class FailsOnce:
        def __getattr__(self, name: str) -> Any:
            return getattr(storage, name)

        def expire_predictions(self, before_unix_nano: int) -> int:
            if failures:
                raise failures.pop()
            return storage.expire_predictions(before_unix_nano)

    scheduler = RetentionScheduler(
        cast(Storage, FailsOnce()), days=1, interval_s=0.01, lock_path=tmp_path / "retention.lock"
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while scheduler.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        scheduler.stop()
    assert not failures and scheduler.runs >= 1
