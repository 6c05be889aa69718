"""The client's and the CLI's Label Studio calls against the companion run for real (gunicorn on loopback)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from _service import Companion
from detwatch.cli import main as cli
from detwatch.client import Client
from detwatch.contract.label_studio import config_classes

TOKEN = "client-token"


@pytest.fixture(scope="module")
def companion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    data_dir = tmp_path_factory.mktemp("label-studio-companion")
    with Companion(data_dir, workers=1, env={"DETWATCH_API_TOKEN": TOKEN}) as service:
        yield service


def _dataset_with_items(client: Client, count: int) -> str:
    dataset = client.create_dataset(name="cars")
    client.configure_data_engine(
        model_id="ls-model", config={"random_sample": {"enabled": True, "rate": 1.0}}, target_dataset_id=dataset["id"]
    )
    client.send_predictions(
        [
            {
                "prediction_id": f"{dataset['id']}-{i}",
                "time": "2024-02-01T12:00:00Z",
                "model_id": "ls-model",
                "model_version": "v1",
                "image": {"uri": f"https://cdn.example/{i}.jpg", "width": 300, "height": 200},
                "detections": [
                    {"class": ["car", "bus", "van"][i % 3], "confidence": 0.5, "box": [3.3, 4.4, 150.1, 99.9]}
                ],
            }
            for i in range(count)
        ]
    )
    return str(dataset["id"])


def _accepted(tasks: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, task in enumerate(tasks):
        done = copy.deepcopy(dict(task))
        done["annotations"] = [{"id": i + 1, "result": done["predictions"][0]["result"]}]
        out.append(done)
    return out


def test_the_client_exports_every_page_and_imports_idempotently(companion: Companion) -> None:
    client = Client(base_url=companion.url, token=TOKEN)
    dataset = _dataset_with_items(client, 5)
    tasks = client.export_label_studio_tasks(dataset_id=dataset, page_size=2)
    assert len(tasks) == 5 and config_classes(tasks.label_config) == ["bus", "car", "van"]  # every page's classes
    first = client.import_label_studio_annotations(dataset_id=dataset, tasks=_accepted(tasks), reviewer="bob")
    assert (first["labeled"], first["unchanged"], first["failed"]) == (5, 0, 0)
    assert [r["index"] for r in first["results"]] == list(range(5))
    again = client.import_label_studio_annotations(dataset_id=dataset, tasks=_accepted(tasks))
    assert (again["labeled"], again["unchanged"]) == (0, 5)
    assert client.export_label_studio_tasks(dataset_id=dataset) == []  # nothing needs review any more
    labelled = client.get_flagged_items(dataset_id=dataset, status="labeled")
    assert {item["reviewer"] for item in labelled} == {"bob"}
    assert {tuple((item["label"] or [])[0]["box"]) for item in labelled} == {(3.3, 4.4, 150.1, 99.9)}


def test_the_cli_writes_tasks_and_config_and_imports_an_export_file(companion: Companion, tmp_path: Path) -> None:
    client = Client(base_url=companion.url, token=TOKEN)
    dataset = _dataset_with_items(client, 3)
    runner = CliRunner()
    auth = ["--url", companion.url, "--token", TOKEN]
    tasks_file, config_file = tmp_path / "tasks.json", tmp_path / "config.xml"
    exported = runner.invoke(
        cli, ["label-studio", "export", dataset, "-o", str(tasks_file), "--config", str(config_file), *auth]
    )
    assert exported.exit_code == 0, exported.output
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == 3 and "RectangleLabels" in config_file.read_text()
    annotated = _accepted(tasks)
    del annotated[1]["meta"], annotated[1]["data"]["detwatch_item_id"]  # a task detwatch did not export
    (tmp_path / "export.json").write_text(json.dumps(annotated))
    result = runner.invoke(cli, ["label-studio", "import", dataset, str(tmp_path / "export.json"), *auth])
    assert result.exit_code == 1
    assert "labeled 2, unchanged 0, failed 1" in result.output and "task 1: invalid_task" in result.output
