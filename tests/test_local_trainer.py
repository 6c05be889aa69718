"""The bundled local trainer, run by a real companion: it writes its artifact under --output and nowhere else."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import detwatch
from detwatch.data_engine.loop_demo import embedded_companion


def _finished(client: detwatch.Client, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get_training_job(job_id)
        if job.status in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_a_model_version_that_is_not_a_file_name_fails_the_job_and_writes_nothing(tmp_path: Path) -> None:
    """The version and base model come from the job's creator; "../" in them wrote outside --output."""
    companion = tmp_path / "companion"
    with embedded_companion(companion) as url:
        client = detwatch.Client(base_url=url)
        model = client.register_model(model_id="faces", version="v1")
        dataset = client.create_dataset(name="d")
        version = dataset.version

        def job(model_version: str) -> Any:
            created = client.create_training_job(
                name=model_version, dataset_id=dataset.id, version_id=version.id, base_model_id=model.id,
                options={"model_version": model_version},
            )  # fmt: skip
            return _finished(client, created.id)

        escaped = job("../../../escaped")
        assert escaped.status == "failed"
        assert "model_version" in escaped.history[-1]["message"]
        good = job("ft-1")
        assert good.status == "succeeded" and good.model_version == "ft-1"
    assert (companion / "models" / "faces" / "ft-1.json").is_file()
    assert [p.name for p in tmp_path.rglob("escaped*")] == []
