"""Checked against Label Studio's own converter: its COCO of our exported-and-annotated tasks is our COCO.

``label-studio-converter`` (Label Studio's export library) reads the tasks as Label
Studio exports them after review: the tasks detwatch exported, each with the annotation
a reviewer made (boxes kept, moved, deleted, drawn). Its COCO and detwatch's COCO export
of the dataset version made from the imported annotations hold the same boxes: the
same classes and, per image, the same ``[x, y, width, height]`` to within the
thousandth-of-a-pixel grid detwatch reads boxes on (``PIXEL_DECIMALS``); the boxes kept
from the model are the same to 1e-9 px (the converter multiplies the percent back out,
detwatch keeps the model's own floats).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from label_studio_converter import Converter  # type: ignore[import-untyped]

from detwatch.app import create_app, shutdown
from detwatch.config import Settings
from detwatch.contract.label_studio import config_classes

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLASSES = ["bus", "car", "person", "van"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = create_app(Settings(data_dir=tmp_path / "data", api_token=TOKEN))
    yield application
    shutdown(application)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _flagged(client: FlaskClient, rng: random.Random, count: int) -> str:
    dataset = ok(client.post("/v1/datasets", json={"name": "street"}, headers=AUTH), 201)["id"]
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset}
    ok(client.put("/v1/models/street/data-engine", json=policy, headers=AUTH))
    events = []
    for i in range(count):
        width, height = rng.randint(64, 4000), rng.randint(64, 3000)
        detections = []
        for _ in range(rng.randint(0, 6)):
            x1, y1 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
            box = [x1, y1, rng.uniform(x1 + 1, width), rng.uniform(y1 + 1, height)]
            detections.append({"class": rng.choice(CLASSES), "confidence": rng.random(), "box": box})
        events.append(
            {
                "prediction_id": f"p{i:03d}",
                "time": "2024-02-01T12:00:00Z",
                "model_id": "street",
                "model_version": "v7",
                "image": {"uri": f"https://cdn.example/street/{i:03d}.jpg", "width": width, "height": height},
                "detections": detections,
            }
        )
    assert ok(client.post("/v1/predictions", json={"predictions": events}, headers=AUTH))["rejected"] == []
    return str(dataset)


def _review(task: dict[str, Any], rng: random.Random, annotation_id: int, classes: list[str]) -> dict[str, Any]:
    """What a reviewer does in Label Studio: keep, relabel, move or delete each box, and draw a new one."""
    done = copy.deepcopy(task)
    done["id"] = annotation_id
    results = []
    for predicted in done["predictions"][0]["result"]:
        action = rng.choice(["keep", "keep", "relabel", "move", "delete"])
        if action == "delete":
            continue
        result = {k: v for k, v in predicted.items() if k != "score"}
        if action == "relabel":
            result["value"]["rectanglelabels"] = [rng.choice(classes)]
        elif action == "move":
            result["value"]["x"] = min(result["value"]["x"] + rng.uniform(-2, 2), 90.0)
            result["value"]["width"] = rng.uniform(1, 10)
        results.append(result)
    drawn = {
        "id": f"new{annotation_id}",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {
            "x": rng.uniform(0, 80), "y": rng.uniform(0, 80), "width": rng.uniform(0.5, 20),
            "height": rng.uniform(0.5, 20), "rotation": 0, "rectanglelabels": [rng.choice(classes)],
        },
    }  # fmt: skip
    done["annotations"] = [
        {"id": annotation_id, "result": [*results, drawn], "was_cancelled": False, "created_at": "2024-02-02T00:00:00Z"}
    ]
    return done


def _image_size(task: dict[str, Any], items: dict[str, Any]) -> tuple[int, int]:
    image = items[task["meta"]["detwatch_item_id"]]["image"]
    return int(image["width"]), int(image["height"])


def test_label_studio_converter_gives_the_coco_boxes_of_our_version_export(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    rng = random.Random(2718)
    dataset = _flagged(client, rng, 40)
    page = ok(client.get(f"/v1/datasets/{dataset}/label-studio/tasks?limit=1000", headers=AUTH))
    items = {i["id"]: i for i in ok(client.get(f"/v1/datasets/{dataset}/items?limit=1000", headers=AUTH))["items"]}
    classes = config_classes(page["label_config"])  # what the reviewer can choose from in Label Studio
    assert classes == CLASSES
    tasks = [_review(task, rng, n + 1, classes) for n, task in enumerate(page["tasks"])]
    for task in tasks:  # the drawn box's size as Label Studio measures the loaded image
        width, height = _image_size(task, items)
        for result in task["annotations"][0]["result"]:
            result.setdefault("original_width", width)
            result.setdefault("original_height", height)
    body = ok(client.post(f"/v1/datasets/{dataset}/label-studio/annotations", json={"tasks": tasks}, headers=AUTH))
    assert body["labeled"] == len(tasks) == 40 and body["failed"] == 0
    version = ok(client.post(f"/v1/datasets/{dataset}/versions", json={"name": "reviewed"}, headers=AUTH), 201)
    ours = ok(client.get(f"/v1/datasets/{dataset}/versions/{version['id']}/export?format=coco", headers=AUTH))

    (tmp_path / "export.json").write_text(json.dumps(tasks))
    converter = Converter(config=page["label_config"], project_dir=str(tmp_path), download_resources=False)
    converter.convert_to_coco(str(tmp_path / "export.json"), str(tmp_path / "coco"), is_dir=False)
    theirs = json.loads((tmp_path / "coco" / "result.json").read_text())

    def boxes(document: dict[str, Any], image_of: dict[int, str]) -> dict[str, list[tuple[str, list[float]]]]:
        names = {c["id"]: c["name"] for c in document["categories"]}
        out: dict[str, list[tuple[str, list[float]]]] = {p: [] for p in image_of.values()}
        for a in document["annotations"]:
            out[image_of[a["image_id"]]].append((names[a["category_id"]], [float(v) for v in a["bbox"]]))
        return {p: sorted(b) for p, b in out.items()}

    # The converter numbers images in task order; detwatch names each image's prediction.
    their_images = {image["id"]: tasks[n]["meta"]["detwatch_prediction_id"] for n, image in enumerate(theirs["images"])}
    our_images = {image["id"]: image["detwatch_prediction_id"] for image in ours["images"]}
    theirs_by, ours_by = boxes(theirs, their_images), boxes(ours, our_images)
    assert sorted(theirs_by) == sorted(ours_by) and len(ours_by) == 40
    compared = 0
    for prediction_id, expected in theirs_by.items():
        got = ours_by[prediction_id]
        assert [name for name, _ in got] == [name for name, _ in expected], prediction_id
        for (_, mine), (_, reference) in zip(got, expected, strict=True):
            assert all(abs(a - b) <= 1e-3 + 1e-9 for a, b in zip(mine, reference, strict=True)), (mine, reference)
            compared += 1
    assert compared > 100
