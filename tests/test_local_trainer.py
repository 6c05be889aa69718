"""Training jobs and the client through a real embedded companion with the bundled local trainer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

import detwatch
from detwatch.demo.loop import embedded_companion


def _finished(client: detwatch.Client, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get_training_job(job_id)
        if job["status"] in ("succeeded", "failed"):
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
        version = dataset["version"]

        def job(model_version: str) -> Any:
            created = client.create_training_job(
                name=model_version, dataset_id=dataset["id"], version_id=version["id"], base_model_id=model["id"],
                options={"model_version": model_version},
            )  # fmt: skip
            return _finished(client, created["id"])

        escaped = job("../../../escaped")
        assert escaped.status == "failed"
        assert "model_version" in escaped.history[-1]["message"]
        good = job("ft-1")
        assert good.status == "succeeded" and good.model_version == "ft-1"
    assert (companion / "models" / "faces" / "ft-1.json").is_file()
    assert [p.name for p in tmp_path.rglob("escaped*")] == []


def test_the_trainers_own_settings_reach_the_job_and_misplaced_keys_are_named(tmp_path: Path) -> None:
    """create_training_job(epochs=50) put epochs beside the options, where the server dropped it silently."""
    with embedded_companion(tmp_path / "companion") as url:
        client = detwatch.Client(base_url=url)
        dataset = client.create_dataset(name="d")
        job = client.create_training_job(
            name="j", dataset_id=dataset["id"], version_id=dataset["version"]["id"], epochs=50, model_version="ft-50"
        )
        assert job["options"] == {"epochs": 50, "model_version": "ft-50"}
        assert _finished(client, job["id"]).model_version == "ft-50"
        misplaced = requests.post(
            f"{url}/v1/training-jobs",
            json={"name": "j", "dataset_id": dataset["id"], "version_id": dataset["version"]["id"], "epochs": 50},
            timeout=10,
        )
        assert misplaced.status_code == 400 and misplaced.json()["error"]["field"] == "epochs"


def test_ids_with_url_characters_reach_their_routes(tmp_path: Path) -> None:
    """model_id went into the URL unescaped: "cam 7?b" ended at "cam 7" and the call said "not available"."""
    with embedded_companion(tmp_path / "companion") as url:
        client = detwatch.Client(base_url=url)
        model = client.register_model(model_id="cam 7?b#c", version="v1")
        dataset = client.create_dataset(name="d")
        config = {"low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 1.0}}
        engine = client.configure_data_engine(model_id=model["id"], config=config, target_dataset_id=dataset["id"])
        assert engine["model_id"] == "cam 7?b#c"
        report = client.check_drift(
            model_id=model["id"], reference_period="2024-01-01:2024-01-31", current_period="2024-02-01:2024-02-29"
        )
        assert report["model_id"] == "cam 7?b#c"


def test_the_guides_prints_run_before_there_is_data_to_compare(tmp_path: Path) -> None:
    """The guide formats drift and A/B numbers with :.3f; with no data yet they were None and raised TypeError."""
    with embedded_companion(tmp_path / "companion") as url:
        client = detwatch.Client(base_url=url)
        model = client.register_model(model_id="vehicles", version="v1")
        model_v1, model_v2 = model, client.register_model(model_id="vehicles-v2", version="v2")
        drift_report = client.check_drift(
            model_id=model["id"], reference_period="2024-01-01:2024-01-31", current_period="2024-02-01:2024-02-28"
        )
        printed = [
            f"Class distribution drift: {drift_report['class_drift']:.3f}",
            f"Confidence drift: {drift_report['confidence_drift']:.3f}",
            f"Detection count drift: {drift_report['count_drift']:.3f}",
        ]
        assert printed[0] == "Class distribution drift: nan" and drift_report["status"] == "insufficient_data"
        assert drift_report["significant_drift"] is False
        ab_test = client.create_ab_test(
            name="Detection Model Comparison", model_a_id=model_v1["id"], model_b_id=model_v2["id"],
            config={"traffic_split": 0.1, "metrics": ["confidence", "latency", "feedback_score"], "duration_days": 7},
        )  # fmt: skip
        results = client.get_ab_test_results(ab_test["id"])
        printed += [
            f"Model A: {results['model_a']['avg_confidence']:.3f} confidence",
            f"Model B: {results['model_b']['avg_confidence']:.3f} confidence",
            f"Statistical significance: {results['p_value']:.4f}",
        ]
        assert printed[-1] == "Statistical significance: nan"
        model_a = results["model_a"]
        assert model_a.avg_confidence != model_a.avg_confidence  # type: ignore[attr-defined]  # NaN, also by attribute


def test_configure_data_engine_names_a_missing_target_dataset_before_asking_the_server() -> None:
    """The client made target_dataset_id optional; the server requires it and answered 400."""
    client = detwatch.Client(base_url="http://127.0.0.1:9")  # never reached
    with pytest.raises(TypeError, match="target_dataset_id"):
        client.configure_data_engine(model_id="m", config={})  # type: ignore[call-arg]
