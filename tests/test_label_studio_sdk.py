"""Exported tasks and the annotations detwatch imports validate with the real label-studio-sdk.

The SDK cannot share the project's environment (every release pins OpenCV below the
demo's), so ``./run test`` installs it into ``.cache/label-studio-sdk`` and this test
runs its validators in a subprocess with that folder first on the path
(``tests/_label_studio_sdk_check.py``). The tasks are the companion's own export
(``GET .../label-studio/tasks``), annotated the ways a reviewer does in Label Studio;
the same annotations are then imported, so what the SDK accepts is what detwatch reads.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from detwatch.app import create_app, shutdown
from detwatch.config import Settings

SDK = Path(__file__).resolve().parents[1] / ".cache" / "label-studio-sdk"
CHECK = Path(__file__).with_name("_label_studio_sdk_check.py")
DETECTIONS = [
    {"class": "car", "confidence": 0.91, "box": [12.5, 20.25, 200.0, 180.0]},
    {"class": "bus", "confidence": 0.42, "box": [300.0, 40.0, 630.0, 470.0]},
    {"class": "car", "confidence": 0.12, "box": [0.0, 0.0, 40.0, 30.0]},
]


def sdk_errors(config: str, tasks: list[dict[str, Any]]) -> list[list[str]]:
    if not (SDK / "label_studio_sdk").is_dir():
        pytest.fail(f"label-studio-sdk is not in {SDK}: ./run test installs it (scripts/install-label-studio-sdk)")
    environment = {**os.environ, "PYTHONPATH": f"{SDK}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, str(CHECK)],
        input=json.dumps({"config": config, "tasks": tasks}),
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [result["errors"] for result in json.loads(done.stdout)]


def annotate(task: dict[str, Any], how: str, user: int = 1) -> dict[str, Any]:
    """``task`` as Label Studio exports it after a reviewer worked on it (``how``: what they did)."""
    result = copy.deepcopy(task["predictions"][0]["result"])
    for region in result:
        region.pop("score", None)  # an annotation's regions carry no score
    if how == "moved":
        result[0]["value"]["x"] += 1.5
        result[0]["value"]["width"] -= 2.25
    elif how == "relabelled":
        result[1]["value"]["rectanglelabels"] = ["car"]
    elif how == "deleted":
        result = result[:1]
    elif how == "drawn":
        new = copy.deepcopy(result[0])
        new.update(id="drawn-1", origin="manual")
        new["value"].update(x=50.0, y=50.0, width=12.5, height=20.0, rectanglelabels=["bus"])
        result.append(new)
    annotated = copy.deepcopy(task)
    annotated["annotations"] = [
        {"id": 1000 + user, "completed_by": user, "result": result, "was_cancelled": False, "ground_truth": False}
    ]
    return annotated


@pytest.fixture
def client(tmp_path: Path) -> Any:
    images = tmp_path / "images"
    images.mkdir()
    settings = Settings(data_dir=tmp_path / "data", images_root=images, public_url="http://detwatch.example")
    app = create_app(settings)
    yield app.test_client()
    shutdown(app)


def exported(client: FlaskClient, count: int) -> tuple[str, str, list[dict[str, Any]]]:
    dataset = client.post("/v1/datasets", json={"name": "cars"}).get_json()["id"]
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset}
    assert client.put("/v1/models/cam/data-engine", json=policy).status_code == 200
    now = time.time_ns()
    events = [
        {
            "prediction_id": f"p{i}",
            "model_id": "cam",
            "model_version": "v3",
            "time_unix_nano": now + i,
            "image": {"key": f"{i}.jpg", "uri": f"https://images.example/{i}.jpg", "width": 640, "height": 480},
            "detections": DETECTIONS,
        }
        for i in range(count)
    ]
    assert client.post("/v1/predictions", json={"predictions": events}).get_json()["accepted"] == count
    answer = client.get(f"/v1/datasets/{dataset}/label-studio/tasks?status=needs_review").get_json()
    return dataset, answer["label_config"], answer["tasks"]


def test_exported_and_annotated_tasks_validate_with_the_sdk_and_import(client: FlaskClient) -> None:
    dataset, config, tasks = exported(client, 5)
    assert len(tasks) == 5
    assert sdk_errors(config, tasks) == [[]] * 5  # as exported, with the model's predictions
    ways = ["accepted", "moved", "relabelled", "deleted", "drawn"]
    annotated = [annotate(task, how) for task, how in zip(tasks, ways, strict=True)]
    assert sdk_errors(config, annotated) == [[]] * 5
    imported = client.post(f"/v1/datasets/{dataset}/label-studio/annotations", json={"tasks": annotated}).get_json()
    assert [outcome.get("status") for outcome in imported["results"]] == ["labeled"] * 5, imported


def test_the_sdk_check_is_not_vacuous(client: FlaskClient) -> None:
    _, config, tasks = exported(client, 1)
    (task,) = tasks
    unknown_label = annotate(task, "accepted")
    unknown_label["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["submarine"]
    bad_score = copy.deepcopy(task)
    bad_score["predictions"][0]["score"] = 1.5
    no_image = copy.deepcopy(task)
    del no_image["data"]["image"]
    errors = sdk_errors(config, [unknown_label, bad_score, no_image])
    assert all(errors), errors
