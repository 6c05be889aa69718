"""No state at import; the jobs start with create_app and stop with shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from detwatch.app import create_app, shutdown
from detwatch.config import Settings


def _jobs() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("detwatch-")}


def test_importing_the_companion_starts_no_thread_and_creates_no_instrument() -> None:
    code = (
        "import threading\n"
        "from opentelemetry import metrics\n"
        "import detwatch.app, detwatch.api, detwatch.review, detwatch.jobs.training_dispatch\n"
        "print(sorted(t.name for t in threading.enumerate()))\n"
        # The API's proxy provider keeps every meter asked of it before an SDK is set.
        "print(len(getattr(metrics.get_meter_provider(), '_meters', ['no proxy'])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    threads, meters = out.stdout.splitlines()
    assert threads == "['MainThread']"
    assert meters == "0"  # nothing asked the global provider for a meter


def test_create_app_starts_its_jobs_and_shutdown_stops_them(tmp_path: Path) -> None:
    before = threading.active_count()
    app = create_app(Settings(data_dir=tmp_path))
    assert {"detwatch-retention", "detwatch-trainer-dispatch"} <= _jobs()
    started = [app.extensions[k] for k in ("detwatch.jobs.retention", "detwatch.jobs.training")]
    shutdown(app)
    assert all(not job._thread.is_alive() for job in started)
    assert threading.active_count() <= before


def test_a_job_whose_storage_was_closed_ends_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A test's app closed its storage without shutdown: its training dispatcher logged every 5 s for good."""
    from detwatch.config import TrainerSettings
    from detwatch.jobs.training_dispatch import TrainingDispatcher
    from detwatch.review import DataEngineStore
    from detwatch.review.training import trainer_from
    from detwatch.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    storage.close()
    trainer = trainer_from(TrainerSettings(command=("true",)), "http://127.0.0.1:8000")
    dispatcher = TrainingDispatcher(lambda: DataEngineStore(storage), lambda: trainer, check_s=0.01)
    with caplog.at_level("WARNING", logger="detwatch.jobs.training_dispatch"):
        dispatcher.start()
        assert dispatcher._thread is not None
        dispatcher._thread.join(5)
    assert not dispatcher._thread.is_alive()
    assert caplog.records == []
