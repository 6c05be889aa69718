"""Concurrency and faults through the real HTTP stack: gunicorn on loopback, SQLite and PostgreSQL.

What the storage tests (``test_storage.py``) prove for one process calling the
storage API, these prove for what a sender sees: several gunicorn workers and several
writers at once lose and duplicate nothing; a worker killed with SIGKILL in the middle
of ingest loses nothing that was acknowledged; a database that cannot take writes
(read-only, disk full) answers 503 with ``Retry-After`` and the JSON error, never 500,
and the sender's retry succeeds once it can write again.

Every test runs twice: SQLite in a temporary file, and PostgreSQL in a fresh database
on the shared server of ``_postgres`` (``DETWATCH_TEST_DATABASE_URL`` or a private
pgserver cluster), handed to gunicorn as ``DETWATCH_DATABASE_URL``. Expected counts
and aggregates are computed here from what was sent (numpy), independently of the
service; stored state is read back through ``open_storage`` on the same database.

Faults, as root in a container (where ``chmod`` cannot stop root from writing):

- read-only SQLite is the file opened with ``?mode=ro`` (SQLite then opens it
  ``O_RDONLY``, as it does a file it may not write); read-only PostgreSQL is
  ``default_transaction_read_only`` on the database (what a hot standby looks like)
  with the service's sessions ended so that it reconnects.
- a full disk is a real one: a small tmpfs, holding the SQLite file, or a PostgreSQL
  tablespace the tables are moved to (ENOSPC, ``SQLITE_FULL`` and SQLSTATE 53100).
  Mounting needs CAP_SYS_ADMIN; without it those tests are skipped and say so, and
  ``test_storage.py`` still covers ``SQLITE_FULL`` (SQLite's ``max_page_count``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest
import requests
from psycopg import sql

from _aggregates import assert_cells_equal, expected_cells, stored_cells
from _postgres import PostgresServer
from _service import Companion
from detwatch.contract.predictions import parse_prediction
from detwatch.storage import open_storage

pytestmark = pytest.mark.timeout(120)

NS: Final = 1_000_000_000
HOUR_NS: Final = 3600 * NS
BASE_TIME: Final = 1_706_745_600 * NS  # 2024-02-01T00:00:00Z
CLASSES: Final = ("car", "truck", "person", "bus")
MODEL: Final = "vehicles"
HTTP_TIMEOUT_S: Final = 30.0
RETRY_SLEEP_S: Final = 0.05
MAX_RETRIES: Final = 100

Event = dict[str, Any]


# ------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Database:
    backend: str  # "sqlite" or "postgresql"
    url: str
    server: PostgresServer | None  # the PostgreSQL server holding it


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database of each backend (the service migrates it on first use)."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'db' / 'detwatch.db'}", None)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    try:
        yield Database("postgresql", url, server)
    finally:
        server.drop_database(url)


def migrate(url: str) -> None:
    storage = open_storage(url)
    try:
        storage.migrate()
    finally:
        storage.close()


def stored_ids(url: str) -> set[str]:
    """Every stored prediction id, read beside the service."""
    query = "SELECT prediction_id FROM predictions"
    if url.startswith("sqlite:"):
        path = urllib.parse.unquote(url.removeprefix("sqlite:///").partition("?")[0])
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return {row[0] for row in conn.execute(query)}
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as pg:
        return {row[0] for row in pg.execute(query)}


def sqlite_integrity(url: str) -> list[tuple[Any, ...]]:
    path = urllib.parse.unquote(url.removeprefix("sqlite:///").partition("?")[0])
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


# ------------------------------------------------------------------ events and what they must add up to


def make_event(i: int, *, padding: int = 0) -> Event:
    """Prediction event ``i`` as JSON: the same every time (seeded by ``i``), varied across ``i``.

    Confidences are never a multiple of 0.05 except 1.0, so the histogram bin of each
    is unambiguous whatever arithmetic computes it. ``padding`` adds that many
    incompressible characters (to fill a disk quickly).
    """
    rng = random.Random(i)
    detections = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        confidence = 1.0 if rng.random() < 0.05 else (rng.randrange(1000) + 0.5) / 1000
        x, y = rng.uniform(0, 600), rng.uniform(0, 400)
        box = [x, y, x + rng.uniform(1, 40), y + rng.uniform(1, 40)]
        detections.append({"class": rng.choice(CLASSES), "confidence": confidence, "box": box})
    event: Event = {
        "prediction_id": f"p-{i:07d}",
        "model_id": MODEL,
        "model_version": rng.choice(["v1", "v2"]),
        "time_unix_nano": BASE_TIME + rng.randrange(3 * HOUR_NS),
        "detections": detections,
        "image": {"key": f"cam{i % 3}/{i:07d}.jpg", "width": 640, "height": 480},
    }
    if rng.random() < 0.8:
        event["latency_ms"] = round(rng.uniform(1.0, 50.0), 3)
    variant = rng.choice([None, "a", "b"])
    if variant is not None:
        event["ab_variant"] = variant
    if padding:
        event["attributes"] = {"note": rng.randbytes(padding // 2).hex()}
    return event


def assert_aggregates_match(url: str, events: Iterable[Event]) -> None:
    storage = open_storage(url)
    try:
        actual = stored_cells(storage, MODEL)
    finally:
        storage.close()
    assert_cells_equal(actual, expected_cells(parse_prediction(e) for e in events))


# ------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class Answer:
    """What a sender saw: the status (0 when the connection failed), the JSON body, headers."""

    status: int
    body: Any = None
    retry_after: str | None = None
    content_type: str = ""
    error: str = ""


def post(session: requests.Session, url: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
    """POST ``body`` as JSON (``bytes``: already encoded)."""
    try:
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json", **(headers or {})}
            response = session.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT_S)
        else:
            response = session.post(url, json=body, headers=headers, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        return Answer(0, error=f"{type(exc).__name__}: {exc}")
    try:
        data = response.json()
    except ValueError:
        data = response.text
    return Answer(response.status_code, data, response.headers.get("Retry-After"), response.headers["Content-Type"])


def post_retrying(session: requests.Session, url: str, body: Any, headers: dict[str, str] | None = None) -> Answer:
    """Post as a well-behaved sender does: again after a 503 (sooner than Retry-After; bounded)."""
    answer = post(session, url, body, headers)
    for _ in range(MAX_RETRIES):
        if answer.status != 503:
            break
        time.sleep(RETRY_SLEEP_S)
        answer = post(session, url, body, headers)
    return answer


def get_json(url: str) -> Any:
    response = requests.get(url, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def otlp_logs_body(events: Sequence[Event]) -> dict[str, Any]:
    """An OTLP/JSON logs request carrying ``events`` as the decorator's ``objdet.prediction`` records."""
    records = [{"eventName": "objdet.prediction", "body": {"stringValue": json.dumps(e)}} for e in events]
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}


def assert_unavailable(answer: Answer, *, cause: Sequence[str] = ()) -> None:
    """A 503 a sender retries: ``Retry-After`` in seconds and the one JSON error shape."""
    assert answer.status == 503, answer
    assert answer.retry_after is not None and answer.retry_after.isdigit() and int(answer.retry_after) >= 1, answer
    assert answer.content_type.startswith("application/json"), answer
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer
    assert answer.body["error"]["code"] == "storage_unavailable", answer
    message = answer.body["error"]["message"]
    assert isinstance(message, str) and message, answer
    if cause:
        assert any(c in message for c in cause), (cause, message)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------ 1. many workers, many writers

WRITERS: Final = 8
STRIDE: Final = 40  # writer k sends events [k*STRIDE, k*STRIDE + SPAN): each overlaps its neighbours
SPAN: Final = 120
BATCH: Final = 20
EVENTS: Final = (WRITERS - 1) * STRIDE + SPAN  # 400 distinct events
KEYED_FEEDBACK: Final = 40
FEEDBACK_TYPES: Final = (
    {"type": "correct"},
    {"type": "false_positive", "detection_index": 0},
    {"type": "wrong_label", "corrected_class": "truck"},
)


@dataclass(frozen=True)
class Request:
    path: str
    body: Any
    key: str | None = None  # Idempotency-Key
    sent: tuple[str, ...] = ()  # prediction ids in the body


def writer_plan(k: int, events: Sequence[Event]) -> list[Request]:
    """Writer ``k``'s posts, in a shuffled order: its events in batches, one batch again (a retry), one
    batch repeating ids within itself, keyed feedback (some posted twice by it, and once by another
    writer), a keyed feedback batch posted twice, and one unkeyed feedback."""
    rng = random.Random(k)
    ids = list(range(k * STRIDE, k * STRIDE + SPAN))
    rng.shuffle(ids)
    batches = [[events[i] for i in ids[s : s + BATCH]] for s in range(0, SPAN, BATCH)]
    batches.append(list(batches[0]))  # a retried batch
    batches[1] = batches[1] + batches[1][:3]  # an id repeated inside one batch
    plan = [Request("/v1/predictions", {"predictions": b}, sent=tuple(e["prediction_id"] for e in b)) for b in batches]
    for n in range(KEYED_FEEDBACK):
        senders = [n % WRITERS, n % WRITERS, (n + 3) % WRITERS]
        item = {**FEEDBACK_TYPES[n % 3], "prediction_id": f"p-{n * 10:07d}"}
        plan += [Request("/v1/feedback", item, key=f"fb-{n:03d}") for s in senders if s == k]
    batch_items = [{"type": "correct", "prediction_id": f"p-{k * STRIDE + j:07d}"} for j in (5, 6)]
    plan += [Request("/v1/feedback", {"feedback": batch_items}, key=f"batch-{k}")] * 2
    plan.append(Request("/v1/feedback", {"type": "correct", "prediction_id": f"p-{k * STRIDE + 7:07d}"}))
    rng.shuffle(plan)
    return plan


def run_plan(base_url: str, plan: Sequence[Request], start: threading.Barrier) -> list[tuple[Request, Answer]]:
    session = requests.Session()
    start.wait(timeout=30)
    out = []
    for request in plan:
        headers = {"Idempotency-Key": request.key} if request.key else None
        out.append((request, post_retrying(session, base_url + request.path, request.body, headers)))
    session.close()
    return out


def test_several_workers_and_writers_at_once_store_everything_once(database: Database, tmp_path: Path) -> None:
    events = [make_event(i) for i in range(EVENTS)]
    plans = [writer_plan(k, events) for k in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    with Companion(tmp_path / "service", workers=4, database_url=database.url) as service:
        service.wait_for_workers(4)
        with ThreadPoolExecutor(WRITERS) as pool:
            futures = [pool.submit(run_plan, service.url, plan, start) for plan in plans]
            answers = [pair for future in futures for pair in future.result(timeout=90)]
        status = get_json(f"{service.url}/v1/status")

    # Every post answered as the API says, each event counted as new exactly once over all posts.
    inserted = 0
    keyed: dict[str, list[Answer]] = defaultdict(list)
    for request, answer in answers:
        if request.path == "/v1/predictions":
            assert answer.status == 200, answer
            assert answer.body["accepted"] == len(request.sent) and answer.body["rejected"] == [], answer
            inserted += answer.body["accepted"] - answer.body["duplicates"]
        elif request.key is None:
            assert answer.status == 201 and not answer.body["duplicate"], answer
        else:
            keyed[request.key].append(answer)
    assert inserted == EVENTS
    for key, posts in keyed.items():
        if key.startswith("fb-"):  # one feedback object: 201 once, then 200 with the same record
            assert sorted(a.status for a in posts) == [200, 200, 201], (key, posts)
            assert len({a.body["id"] for a in posts}) == 1, (key, posts)
            assert sorted(a.body["duplicate"] for a in posts) == [False, True, True], (key, posts)
        else:  # a feedback batch: 200 both times, each item new once
            assert [a.status for a in posts] == [200, 200], (key, posts)
            for index in (0, 1):
                records = [a.body["accepted"][index] for a in posts]
                assert len({r["id"] for r in records}) == 1, (key, posts)
                assert sorted(r["duplicate"] for r in records) == [False, True], (key, posts)
    assert len(keyed) == KEYED_FEEDBACK + WRITERS

    expected_feedback = KEYED_FEEDBACK + 2 * WRITERS + WRITERS
    assert status["counts"]["predictions"] == EVENTS
    assert status["counts"]["feedback"] == expected_feedback
    assert stored_ids(database.url) == {e["prediction_id"] for e in events}
    assert_aggregates_match(database.url, events)
    storage = open_storage(database.url)
    try:
        model = storage.get_model(MODEL)
        feedback = storage.list_feedback(limit=10 * expected_feedback)
    finally:
        storage.close()
    assert model is not None and sorted(model.versions) == ["v1", "v2"]
    times = [e["time_unix_nano"] for e in events]
    assert (model.first_seen_unix_nano, model.last_seen_unix_nano) == (min(times), max(times))
    # Feedback that raced ahead of its prediction was joined when the prediction arrived.
    assert len(feedback) == expected_feedback
    assert [r for r in feedback if r.model_id != MODEL or r.prediction_id is None] == []
    if database.backend == "sqlite":
        assert sqlite_integrity(database.url) == [("ok",)]


# ------------------------------------------------------------------ 2. a worker killed mid-ingest

KILL_WORKERS: Final = 3
KILL_WRITERS: Final = 6  # more writers than workers, sending ready-made bodies: workers are rarely idle
KILL_BATCH: Final = 50
KILLS: Final = 3
MAX_KILLS: Final = 10
MAX_KILL_BATCHES: Final = 100  # per writer; some 30 are used


def kill_batch(writer: int, n: int) -> list[Event]:
    return [make_event((writer * 1000 + n) * KILL_BATCH + j) for j in range(KILL_BATCH)]


def kill_a_serving_worker(service: Companion, killed: list[int]) -> int:
    """SIGKILL a worker that is in the middle of a request (any worker if none is seen within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        workers = service.wait_for_workers(KILL_WORKERS, exclude=killed)
        busy = [pid for pid in service.serving_worker_pids() if pid in workers]
        if busy or time.monotonic() > deadline:
            victim = random.choice(busy or workers)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            return victim
        time.sleep(0.001)


def test_a_worker_killed_mid_ingest_loses_nothing_acknowledged(database: Database, tmp_path: Path) -> None:
    sent = {(k, n): kill_batch(k, n) for k in range(KILL_WRITERS) for n in range(MAX_KILL_BATCHES)}
    bodies = {key: json.dumps({"predictions": batch}).encode() for key, batch in sent.items()}
    outcomes: dict[tuple[int, int], Answer] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def write(writer: int, base_url: str) -> None:
        session = requests.Session()
        for n in range(MAX_KILL_BATCHES):
            if stop.is_set():
                break
            answer = post(session, f"{base_url}/v1/predictions", bodies[(writer, n)])
            with lock:
                outcomes[(writer, n)] = answer
            if answer.status == 0:
                session.close()
                session = requests.Session()
        session.close()

    def acknowledged() -> int:
        with lock:
            return sum(1 for a in outcomes.values() if a.status == 200)

    def acknowledgements_reach(target: int) -> Callable[[], bool]:
        return lambda: acknowledged() >= target

    killed: list[int] = []
    with Companion(tmp_path / "service", workers=KILL_WORKERS, database_url=database.url) as service:
        service.wait_for_workers(KILL_WORKERS)
        with ThreadPoolExecutor(KILL_WRITERS) as pool:
            futures = [pool.submit(write, k, service.url) for k in range(KILL_WRITERS)]
            try:
                wait_until(acknowledgements_reach(KILL_WRITERS), 30, "the writers' first batches")
                for attempt in range(MAX_KILLS):
                    kill_a_serving_worker(service, killed)
                    # gunicorn replaces it, and the service keeps acknowledging.
                    service.wait_for_workers(KILL_WORKERS, exclude=killed)
                    wait_until(acknowledgements_reach(acknowledged() + KILL_WRITERS), 30, "acks after a kill")
                    with lock:
                        broke = any(a.status == 0 for a in outcomes.values())
                    # A request may end between seeing its worker busy and the kill: go on
                    # until one was really cut (what this test is about), within bounds.
                    if attempt + 1 >= KILLS and broke:
                        break
            finally:
                stop.set()
            for future in futures:
                future.result(timeout=60)
        status = get_json(f"{service.url}/v1/status")

        sent = {key: sent[key] for key in outcomes}  # only what was posted, from here on
        acked = [key for key, a in outcomes.items() if a.status == 200]
        dropped = [key for key, a in outcomes.items() if a.status == 0]
        # Only two outcomes: acknowledged, or the connection broke with the worker. Never a 500.
        assert sorted({a.status for a in outcomes.values()}) in ([0, 200], [200]), {
            k: a for k, a in outcomes.items() if a.status not in (0, 200)
        }
        # With every worker busy, a SIGKILL breaks the request it was serving.
        assert dropped, "no request was in flight in a killed worker"

        stored = stored_ids(database.url)
        assert status["counts"]["predictions"] == len(stored)
        for key in acked:
            missing = [e["prediction_id"] for e in sent[key] if e["prediction_id"] not in stored]
            assert missing == [], (key, missing)
        for key, batch in sent.items():  # a batch is stored whole or not at all
            assert sum(e["prediction_id"] in stored for e in batch) in (0, KILL_BATCH), key
        assert stored <= {e["prediction_id"] for batch in sent.values() for e in batch}
        assert_aggregates_match(database.url, [e for b in sent.values() for e in b if e["prediction_id"] in stored])
        storage = open_storage(database.url)
        try:
            for key in acked:
                first = sent[key][0]
                assert storage.get_prediction(first["prediction_id"]) == parse_prediction(first), key
        finally:
            storage.close()

        # The senders retry what was not acknowledged; then everything is stored once.
        session = requests.Session()
        for key in dropped:
            answer = post_retrying(session, f"{service.url}/v1/predictions", bodies[key])
            assert answer.status == 200, answer
            in_store = sum(e["prediction_id"] in stored for e in sent[key])
            assert answer.body["duplicates"] == in_store, (key, answer)
        session.close()
        final = get_json(f"{service.url}/v1/status")
        assert final["counts"]["predictions"] == len(sent) * KILL_BATCH
    assert_aggregates_match(database.url, [e for b in sent.values() for e in b])
    if database.backend == "sqlite":
        assert sqlite_integrity(database.url) == [("ok",)]


# ------------------------------------------------------------------ 3. read-only database

READ_ONLY_EVENTS: Final = 30


def write_calls(n: int, dataset_id: str) -> list[tuple[str, Any, dict[str, str] | None]]:
    """One post of each writing route (``n`` makes it new)."""
    event = make_event(10_000 + n)
    return [
        ("/v1/predictions", {"predictions": [event]}, None),
        ("/v1/logs", otlp_logs_body([make_event(20_000 + n)]), None),
        ("/v1/feedback", {"type": "correct", "prediction_id": event["prediction_id"]}, {"Idempotency-Key": f"ro-{n}"}),
        ("/v1/models", {"model_id": f"registered-{n}", "version": "v1"}, None),
        ("/v1/datasets", {"name": f"dataset-{n}"}, None),
        (f"/v1/datasets/{dataset_id}/versions", {"name": f"v-{n}"}, None),
    ]


@contextlib.contextmanager
def read_only(database: Database, service: Companion, tmp_path: Path) -> Iterator[Companion]:
    """The database made read-only under the service, and writable again afterwards.

    SQLite: the service restarted on ``?mode=ro`` (a URL is fixed for a process's life).
    PostgreSQL: ``default_transaction_read_only`` on the database and the service's
    sessions ended; the same service reconnects and finds it read-only.
    """
    if database.backend == "sqlite":
        service.stop()
        with Companion(tmp_path / "service-ro", database_url=database.url + "?mode=ro") as reader:
            yield reader
        service.start()
        return
    server = database.server
    assert server is not None
    name = sql.Identifier(urllib.parse.unquote(urllib.parse.urlsplit(database.url).path.lstrip("/")))
    alter = "ALTER DATABASE {} SET default_transaction_read_only = on"
    server.execute(server.admin_url, sql.SQL(alter).format(name).as_string())
    try:
        server.terminate_sessions(database.url)
        yield service
    finally:
        reset = "ALTER DATABASE {} RESET default_transaction_read_only"
        server.execute(server.admin_url, sql.SQL(reset).format(name).as_string())
        server.terminate_sessions(database.url)


def test_a_read_only_database_answers_writes_503_and_reads_200(database: Database, tmp_path: Path) -> None:
    events = [make_event(i) for i in range(READ_ONLY_EVENTS)]
    session = requests.Session()
    with Companion(tmp_path / "service", database_url=database.url) as service:
        assert post(session, f"{service.url}/v1/predictions", {"predictions": events}).status == 200
        dataset = post(session, f"{service.url}/v1/datasets", {"name": "before"})
        assert dataset.status == 201, dataset
        before = get_json(f"{service.url}/v1/status")["counts"]

        with read_only(database, service, tmp_path) as reader:
            # Reads work: status, the registry, a dataset.
            assert get_json(f"{reader.url}/v1/status")["counts"] == before
            assert [m["id"] for m in get_json(f"{reader.url}/v1/models")["models"]] == [MODEL]
            assert get_json(f"{reader.url}/v1/datasets/{dataset.body['id']}")["name"] == "before"
            # Every write, on whichever worker takes it: 503, Retry-After, the JSON error.
            for n in range(2):
                for path, body, headers in write_calls(n, dataset.body["id"]):
                    answer = post(session, reader.url + path, body, headers)
                    assert_unavailable(answer, cause=("read-only",))
            assert get_json(f"{reader.url}/v1/status")["counts"] == before

        # Writable again: the sender's retries go through, each stored once.
        for n in range(2):
            for path, body, headers in write_calls(n, dataset.body["id"]):
                answer = post_retrying(session, service.url + path, body, headers)
                assert answer.status in (200, 201), (path, answer)
        after = get_json(f"{service.url}/v1/status")["counts"]
    session.close()
    assert after["predictions"] == before["predictions"] + 4
    assert after["feedback"] == before["feedback"] + 2
    assert after["models"] == before["models"] + 2
    assert after["datasets"] == before["datasets"] + 2
    assert after["dataset_versions"] == before["dataset_versions"] + 2 + 2  # two new datasets' v1, two versions
    assert stored_ids(database.url) == {e["prediction_id"] for e in events} | {
        make_event(base + n)["prediction_id"] for base in (10_000, 20_000) for n in range(2)
    }


# ------------------------------------------------------------------ 4. full disk

FILL_BATCH: Final = 10
FILL_PADDING: Final = 3000  # characters of random hex per event
MAX_FILL_BATCHES: Final = 400
SQLITE_DISK: Final = 512 * 1024
POSTGRES_DISK: Final = 1024 * 1024
ROOMY_DISK: Final = 32 * 1024 * 1024


class Tmpfs:
    """A tmpfs of a given size mounted at ``path`` in this mount namespace (needs CAP_SYS_ADMIN)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: int) -> None:
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True, timeout=30
        )


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Tmpfs]:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"a full disk needs a small tmpfs, and mount cannot run here ({exc}); see test_storage.py")
    if mounted.returncode != 0:
        pytest.skip(
            f"a full disk needs a small tmpfs, and mounting one is not permitted here ({mounted.stderr.strip()}); "
            "test_storage.py covers SQLITE_FULL with max_page_count"
        )
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True, timeout=30)


@contextlib.contextmanager
def database_on_small_disk(database: Database, tmp_path: Path) -> Iterator[tuple[str, Tmpfs]]:
    """A migrated database whose data lives on a small tmpfs, and that tmpfs.

    SQLite: the file on it. PostgreSQL: a tablespace on it, every table and index of
    the test database moved there (the server's WAL stays on its own disk: a full
    tablespace is an ERROR for the writing transaction, not a server PANIC).
    """
    if database.backend == "sqlite":
        with tmpfs(tmp_path / "disk", SQLITE_DISK) as disk:
            url = f"sqlite:///{disk.path / 'detwatch.db'}"
            migrate(url)
            yield url, disk
        return
    server = database.server
    assert server is not None
    owner = server.data_directory_owner()
    if owner is None:
        pytest.skip("the PostgreSQL server is not on this machine: no tablespace on a local tmpfs")
    mountpoint = Path(tempfile.mkdtemp(prefix="detwatch-tablespace-"))  # /tmp: the server's user can reach it
    name = f"detwatch_test_{uuid.uuid4().hex[:12]}"
    tablespace = sql.Identifier(name)
    try:
        with tmpfs(mountpoint, POSTGRES_DISK) as disk:
            location = mountpoint / "pgdata"
            location.mkdir()
            os.chown(location, owner, -1)
            create = sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(tablespace, sql.Literal(str(location)))
            server.execute(server.admin_url, create.as_string())
            try:
                migrate(database.url)
                for kind in ("TABLE", "INDEX"):
                    move = sql.SQL(f"ALTER {kind} ALL IN TABLESPACE pg_default SET TABLESPACE {{}}").format(tablespace)
                    server.execute(database.url, move.as_string())
                where = sql.SQL(
                    "SELECT c.relname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
                    "WHERE t.spcname = {} AND c.relname IN ('predictions', 'aggregates')"
                ).format(sql.Literal(name))
                assert sorted(server.execute(database.url, where.as_string())) == [("aggregates",), ("predictions",)]
                yield database.url, disk
            finally:
                server.drop_database(database.url)
                server.execute(server.admin_url, sql.SQL("DROP TABLESPACE IF EXISTS {}").format(tablespace).as_string())
    finally:
        shutil.rmtree(mountpoint, ignore_errors=True)


def test_a_full_disk_answers_503_and_the_retry_succeeds_once_there_is_room(database: Database, tmp_path: Path) -> None:
    session = requests.Session()
    with (
        database_on_small_disk(database, tmp_path) as (url, disk),
        Companion(tmp_path / "service", database_url=url) as service,
    ):
        acked: list[Event] = []
        for n in range(MAX_FILL_BATCHES):
            batch = [make_event(n * FILL_BATCH + j, padding=FILL_PADDING) for j in range(FILL_BATCH)]
            answer = post(session, f"{service.url}/v1/predictions", {"predictions": batch})
            if answer.status != 200:
                break
            acked += batch
        else:
            pytest.fail(f"{MAX_FILL_BATCHES} batches of {FILL_BATCH} fitted on the small disk")
        assert acked, "not even one batch fitted"
        assert_unavailable(answer, cause=("disk full", "No space left on device"))

        # Reads still work, and the failed batch left nothing behind, not even part of itself.
        assert get_json(f"{service.url}/v1/status")["counts"]["predictions"] == len(acked)
        assert stored_ids(url) == {e["prediction_id"] for e in acked}
        assert_unavailable(post(session, f"{service.url}/v1/predictions", {"predictions": batch}))
        assert_unavailable(post(session, f"{service.url}/v1/logs", otlp_logs_body(batch)))  # a Collector retries too

        disk.resize(ROOMY_DISK)  # an operator frees space: the sender's retry goes through
        retried = post_retrying(session, f"{service.url}/v1/predictions", {"predictions": batch})
        assert retried.status == 200, retried
        assert (retried.body["accepted"], retried.body["duplicates"]) == (FILL_BATCH, 0)
        assert get_json(f"{service.url}/v1/status")["counts"]["predictions"] == len(acked) + FILL_BATCH
        assert_aggregates_match(url, [*acked, *batch])
        if database.backend == "sqlite":
            assert sqlite_integrity(url) == [("ok",)]
    session.close()
