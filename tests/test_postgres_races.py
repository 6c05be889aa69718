"""Concurrency hazards that only PostgreSQL allows, each pinned to the interleaving that broke.

SQLite runs one writer at a time, so the read-then-write races here cannot happen
there. PostgreSQL runs the companion's transactions at READ COMMITTED: a statement that
waits for a row another transaction is changing goes on, once that one commits, with
the new row version, re-checking only its own WHERE clause. Each race test holds the
other writer's transaction open (plain SQL on a second connection, doing what the
concurrent request does) until the companion's statement is seen waiting for the row in
``pg_stat_activity``, then commits: the interleaving is the same on every run, and each
test fails without its fix. The last test is about sessions a fork shares.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from _jobs import queued_job
from _postgres import PostgresServer
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.contract.predictions import parse_prediction
from detwatch.storage import FeedbackInput, Storage

WAIT_S = 20.0
_WAITING = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'detwatch' AND wait_event_type = 'Lock'"


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


@pytest.fixture
def database_url(pg_url: str) -> str:
    """Only PostgreSQL here: conftest's ``storage`` opens this one."""
    return pg_url


def run_while_row_is_held(postgres: PostgresServer, url: str, hold: Callable[[psycopg.Connection[Any]], None],
                          action: Callable[[], Any]) -> Any:  # fmt: skip
    """Run ``hold`` in a transaction, start ``action`` in a thread, commit once it waits for a lock; its result."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(exc)

    worker = threading.Thread(target=run)
    with psycopg.connect(url, autocommit=True) as other, other.transaction():
        hold(other)
        worker.start()
        deadline = time.monotonic() + WAIT_S
        while postgres.execute(url, _WAITING)[0][0] == 0:
            assert worker.is_alive() and time.monotonic() < deadline, "the companion never waited for the row"
            time.sleep(0.01)
    worker.join(WAIT_S)
    assert not worker.is_alive()
    if errors:
        raise errors[0]
    return result[0]


def test_a_hand_off_recorded_while_the_trainer_reports_running_loses_neither(
    postgres: PostgresServer, url: str, storage: Storage
) -> None:
    """The dispatcher records a hand-off while the trainer's "running" callback commits.

    Seen as a flaky service test: the dispatcher read the job (queued), the trainer's
    "running" committed, and the dispatcher wrote back the history it had read,
    dropping "running". Fixed by reading the job ``FOR UPDATE``.
    """
    store, job = queued_job(storage)

    def trainer_reports_running(conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT history FROM training_jobs WHERE id = %s FOR UPDATE", (job.id,)).fetchone()
        assert row is not None
        history = [*json.loads(row[0]), {"status": "running", "time_unix_nano": time.time_ns(), "message": "go"}]
        conn.execute(
            "UPDATE training_jobs SET status = 'running', history = %s WHERE id = %s", (json.dumps(history), job.id)
        )

    run_while_row_is_held(
        postgres, url, trainer_reports_running, lambda: store.record_dispatch(job.id, error=None, retry_in_s=None)
    )
    done = store.get_job(job.id)
    assert done is not None and done.status == "running"
    assert [h["status"] for h in done.history] == ["queued", "running"]


def test_an_item_relabelled_while_reviewed_items_expire_is_kept(
    postgres: PostgresServer, url: str, tmp_path: Path
) -> None:
    """Expiry deletes a rejected item that a reviewer is labelling at that moment.

    The DELETE chose the item by a sub-select and, after waiting for the reviewer's
    commit, re-checked only ``id IN (...)``: the new label was acknowledged and gone.
    Fixed by repeating the expiry condition on the DELETE itself.
    """
    app = create_app(Settings(data_dir=tmp_path, database_url=url))
    client = app.test_client()
    dataset_id = client.post("/v1/datasets", json={"name": "d"}).get_json()["id"]
    config = {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}}
    assert (
        client.put("/v1/models/m/data-engine", json={"config": config, "target_dataset_id": dataset_id}).status_code
        == 200
    )
    event = {"prediction_id": "p", "time": "2024-02-01T12:00:00Z", "model_id": "m", "detections": []}
    assert client.post("/v1/predictions", json={"predictions": [event]}).get_json()["accepted"] == 1
    items = client.get(f"/v1/datasets/{dataset_id}/items?status=needs_review").get_json()["items"]
    assert len(items) == 1
    item_id = items[0]["id"]
    assert client.post(f"/v1/datasets/{dataset_id}/items/{item_id}/reject", json={}).status_code == 200
    cutoff = time.time_ns()  # the rejected item is older than this: expirable
    label = [{"class": "car", "box": [1.0, 1.0, 5.0, 5.0]}]

    def reviewer_labels_it(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT 1 FROM flagged_items WHERE id = %s FOR UPDATE", (item_id,))
        conn.execute(
            "UPDATE flagged_items SET status = 'labeled', label = %s, updated_unix_nano = %s WHERE id = %s",
            (json.dumps(label), time.time_ns(), item_id),
        )

    def expire() -> int:
        with app.app_context():
            from detwatch.api.review import store

            return store().expire_reviewed(cutoff)

    try:
        deleted = run_while_row_is_held(postgres, url, reviewer_labels_it, expire)
        assert deleted == 0
        kept = client.get(f"/v1/datasets/{dataset_id}/items/{item_id}")
        assert kept.status_code == 200 and kept.get_json()["status"] == "labeled"
    finally:
        app.extensions["detwatch.storage"].close()


def test_feedback_joined_by_one_ingest_is_not_rejoined_by_another(
    postgres: PostgresServer, url: str, storage: Storage
) -> None:
    """Two ingests of one span by different models both find the span's waiting feedback.

    Each holds only the shared join lock and sees only its own prediction in the span;
    the second overwrote the first's committed join (and counted it again). Fixed by
    joining only feedback that is still unjoined (``AND model_id IS NULL``).
    """
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    (waiting,) = storage.add_feedback([FeedbackInput(type="false_positive", trace_id=trace_id, span_id=span_id)])
    assert waiting.model_id is None

    def first_ingest_joins_it(conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE feedback SET prediction_id = 'p1', model_id = 'm1' WHERE id = %s", (waiting.id,))

    second = parse_prediction(
        {"prediction_id": "p2", "time": "2024-02-01T12:00:00Z", "model_id": "m2", "detections": [],
         "trace_id": trace_id, "span_id": span_id}
    )  # fmt: skip
    result = run_while_row_is_held(postgres, url, first_ingest_joins_it, lambda: storage.ingest_predictions([second]))
    assert result.inserted == 1 and result.feedback_joined == 0
    (joined,) = storage.list_feedback()
    assert (joined.prediction_id, joined.model_id) == ("p1", "m1")


def test_of_two_stops_of_an_ab_test_at_once_the_first_end_stands(
    postgres: PostgresServer, url: str, storage: Storage
) -> None:
    """Both stop requests read the test as running; the second moved the end the first had answered with.

    Fixed by setting a status only on a test not already in it.
    """
    storage.register_model("m", "1", {})
    start = time.time_ns()
    test = storage.create_ab_test(
        name="t", model_a_id="m", model_b_id="m", config={"traffic_split": 0.5},
        start_unix_nano=start, end_unix_nano=start + 7 * 86_400 * 10**9,
    )  # fmt: skip
    first_end = start + 1_000

    def first_stop(conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE ab_tests SET status = 'stopped', end_unix_nano = %s WHERE id = %s", (first_end, test.id))

    changed = run_while_row_is_held(
        postgres, url, first_stop, lambda: storage.set_ab_test_status(test.id, "stopped", first_end + 1_000_000)
    )
    assert changed is False
    stopped = storage.get_ab_test(test.id)
    assert stopped is not None and stopped.status == "stopped" and stopped.end_unix_nano == first_end


def test_a_forked_child_closing_its_storage_leaves_the_parents_sessions(
    postgres: PostgresServer, url: str, storage: Storage
) -> None:
    """close() in a child that had not used the pool yet closed the parent's pooled sessions (shared sockets)."""
    import os
    import warnings

    def backend_pid() -> int:
        (row,) = storage._run(lambda tx: tx.query("SELECT pg_backend_pid()"), write=False)  # type: ignore[attr-defined]
        return int(row[0])

    before = backend_pid()  # one idle pooled connection now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            storage.close()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert backend_pid() == before  # the same session: not ended by the child, not reconnected
