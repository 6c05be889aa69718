"""Training-job hand-off: retried with backoff then failed, and racing the trainer's own status callback."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path

import psycopg

from _postgres import PostgresServer
from detwatch.data_engine._store import DataEngineStore
from detwatch.data_engine.training import Trainer, dispatch_once
from detwatch.storage import open_storage


def test_a_failing_command_is_retried_with_backoff_and_the_job_is_failed_not_lost(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    try:
        store = DataEngineStore(storage)
        dataset = storage.create_dataset("d", "")
        job = store.create_job(
            name="j", dataset_id=dataset.id, version_id=dataset.version.id, base_model_id=None, options={},
            callback_base="http://127.0.0.1:9",
        )  # fmt: skip
        marker = tmp_path / "runs"
        script = f"import sys; sys.stdin.read(); open({str(marker)!r}, 'a').write('x'); sys.exit(3)"
        trainer = Trainer(command=(sys.executable, "-c", script), backoff_s=0.2, max_attempts=3)
        attempts_at: list[float] = []
        deadline = time.monotonic() + 20
        while store.get_job(job["id"])["status"] != "failed":  # type: ignore[index]
            assert time.monotonic() < deadline
            if dispatch_once(store, trainer):
                attempts_at.append(time.monotonic())
            else:
                time.sleep(0.02)
        failed = store.get_job(job["id"])
        assert failed is not None
        assert failed["attempts"] == 3 == len(attempts_at) == len(marker.read_text())
        assert "trainer command exited 3" in failed["last_error"]
        assert [h["status"] for h in failed["history"]] == ["queued", "queued", "queued", "failed"]
        # Exponential backoff: 0.2 s, then 0.4 s between attempts.
        gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4
        assert not dispatch_once(store, trainer)  # nothing is due any more
    finally:
        storage.close()


def test_a_hand_off_recorded_while_the_trainer_reports_running_loses_neither(postgres: PostgresServer) -> None:
    """The trainer may call back before the dispatcher has recorded the hand-off: both entries stay.

    Seen as a flaky service test on PostgreSQL: the dispatcher read the job (queued), the
    trainer's "running" committed, and the dispatcher wrote back the history it had read,
    dropping "running". Here the trainer's transaction is held open until the dispatcher
    is seen waiting for the row, so the interleaving is the same on every run.
    """
    url = postgres.create_database()
    storage = open_storage(url)
    storage.migrate()
    try:
        store = DataEngineStore(storage)
        dataset = storage.create_dataset("d", "")
        job = store.create_job(
            name="j", dataset_id=dataset.id, version_id=dataset.version.id, base_model_id=None, options={},
            callback_base="http://127.0.0.1:9",
        )  # fmt: skip
        with psycopg.connect(url, autocommit=True) as trainer, trainer.transaction():
            row = trainer.execute("SELECT history FROM training_jobs WHERE id = %s FOR UPDATE", (job["id"],)).fetchone()
            assert row is not None
            history = [*json.loads(row[0]), {"status": "running", "time_unix_nano": time.time_ns(), "message": "go"}]
            trainer.execute(
                "UPDATE training_jobs SET status = 'running', history = %s WHERE id = %s",
                (json.dumps(history), job["id"]),
            )
            dispatcher = threading.Thread(
                target=store.record_dispatch, args=(job["id"],), kwargs={"error": None, "retry_in_s": None}
            )
            dispatcher.start()
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'detwatch' AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 20
            while postgres.execute(url, waiting)[0][0] == 0:
                assert time.monotonic() < deadline, "the dispatcher never waited for the job's row"
                time.sleep(0.01)
        dispatcher.join(20)
        assert not dispatcher.is_alive()
        done = store.get_job(job["id"])
        assert done is not None and done["status"] == "running"
        assert [h["status"] for h in done["history"]] == ["queued", "running"]
    finally:
        storage.close()
        postgres.drop_database(url)
