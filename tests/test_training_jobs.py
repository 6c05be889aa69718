"""Training-job hand-off to a local command trainer: failures recorded, retried with backoff, then failed."""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import pytest

from _jobs import queued_job
from detwatch.review.training import Trainer, dispatch_once
from detwatch.storage import open_storage

PUBLIC = "http://127.0.0.1:9"


def test_a_failing_command_is_retried_with_backoff_and_the_job_is_failed_not_lost(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    try:
        store, job = queued_job(storage)
        marker = tmp_path / "runs"
        script = f"import sys; sys.stdin.read(); open({str(marker)!r}, 'a').write('x'); sys.exit(3)"
        trainer = Trainer(command=(sys.executable, "-c", script), backoff_s=0.2, max_attempts=3, public_url=PUBLIC)
        attempts_at: list[float] = []
        deadline = time.monotonic() + 20
        while store.get_job(job.id).status != "failed":  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            if dispatch_once(store, trainer):
                attempts_at.append(time.monotonic())
            else:
                time.sleep(0.02)
        failed = store.get_job(job.id)
        assert failed is not None
        assert failed.attempts == 3 == len(attempts_at) == len(marker.read_text())
        assert "trainer command exited 3" in str(failed.last_error)
        assert [h["status"] for h in failed.history] == ["queued", "queued", "queued", "failed"]
        # Exponential backoff: 0.2 s, then 0.4 s between attempts.
        gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4
        assert not dispatch_once(store, trainer)  # nothing is due any more
    finally:
        storage.close()


def test_a_trainer_that_takes_the_job_file_for_itself_has_the_job(tmp_path: Path) -> None:
    """Moving DETWATCH_JOB_FILE away and exiting 0 is a hand-off.

    The dispatcher's own clean-up failed on the missing file, so the hand-off went
    unrecorded and the job was handed off again when its lease ended.
    """
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    try:
        store, job = queued_job(storage)
        taken = tmp_path / "taken.json"
        script = (
            f"import os, shutil, sys; sys.stdin.read(); shutil.move(os.environ['DETWATCH_JOB_FILE'], {str(taken)!r})"
        )
        assert dispatch_once(store, Trainer(command=(sys.executable, "-c", script), public_url=PUBLIC))
        assert json.loads(taken.read_text())["job"]["id"] == job.id
        handed = store.get_job(job.id)
        assert handed is not None and handed.status == "queued" and handed.attempts == 1
        assert handed.history[-1]["message"] == "handed to the trainer"
        assert not dispatch_once(
            store, Trainer(command=(sys.executable, "-c", script), public_url=PUBLIC)
        )  # nothing due: not again
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("url", "described"),
    [
        (
            "https://user:TRAINERPW@trainer.example:8443/hook?api_key=K123#x",
            "webhook https://trainer.example:8443/hook",
        ),
        ("http://[::1]:9000/jobs", "webhook http://[::1]:9000/jobs"),
        ("http://127.0.0.1/jobs", "webhook http://127.0.0.1/jobs"),
    ],
)
def test_the_trainer_is_described_without_its_credentials(url: str, described: str) -> None:
    """The create-job answer said which trainer took the job, with its URL's password and api_key."""
    assert Trainer(url=url).describe() == described
