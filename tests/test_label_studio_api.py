"""Label Studio both ways through HTTP: export tasks, import annotations, the webhook (each backend)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.app import create_app, shutdown
from detwatch.config import Settings
from detwatch.review.images import image_signature

TOKEN = "api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "ls-webhook-secret"
PUBLIC = "https://detwatch.example/base"
W, H = 640, 480


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    return images


@pytest.fixture
def app(tmp_path: Path, database_url: str, root: Path) -> Iterator[Flask]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        api_token=TOKEN,
        public_url=PUBLIC,
        images_root=root,
        label_studio_secret=SECRET,
    )
    application = create_app(settings)
    yield application
    shutdown(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def det(cls: str, conf: float, box: list[float]) -> dict[str, Any]:
    return {"class": cls, "confidence": conf, "box": box}


def flagged(client: FlaskClient, images: dict[str, tuple[str, list[dict[str, Any]]]]) -> str:
    """A dataset holding one flagged item per prediction id (``{pid: (uri, detections)}``)."""
    dataset = ok(client.post("/v1/datasets", json={"name": "cars"}, headers=AUTH), 201)["id"]
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset}
    ok(client.put("/v1/models/m/data-engine", json=policy, headers=AUTH))
    events = [
        {
            "prediction_id": pid,
            "time": "2024-02-01T12:00:00Z",
            "model_id": "m",
            "model_version": "v3",
            "image": {"key": f"{pid}.png", "uri": uri, "width": W, "height": H},
            "detections": detections,
        }
        for pid, (uri, detections) in images.items()
    ]
    assert ok(client.post("/v1/predictions", json={"predictions": events}, headers=AUTH))["rejected"] == []
    return str(dataset)


def export(client: FlaskClient, dataset: str, **params: Any) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = ok(client.get(f"/v1/datasets/{dataset}/label-studio/tasks", query_string=query, headers=AUTH))
        tasks += page["tasks"]
        cursor = page["next_cursor"]
        if cursor is None:
            return tasks


def accept(task: dict[str, Any], annotation_id: int = 1) -> dict[str, Any]:
    """The task as Label Studio exports it after a reviewer accepted the model's boxes as they are."""
    done = copy.deepcopy(task)
    done["id"] = annotation_id
    done["annotations"] = [{"id": annotation_id, "result": done["predictions"][0]["result"], "was_cancelled": False}]
    return done


def imported(client: FlaskClient, dataset: str, tasks: list[Any], **extra: Any) -> Any:
    body = {"tasks": tasks, **extra}
    return ok(client.post(f"/v1/datasets/{dataset}/label-studio/annotations", json=body, headers=AUTH))


def item_of(client: FlaskClient, dataset: str, task: dict[str, Any]) -> Any:
    return ok(client.get(f"/v1/datasets/{dataset}/items/{task['meta']['detwatch_item_id']}", headers=AUTH))


ODD = [
    det("car", 0.3141592653589793, [10.000000000000002, 20.1, 300.33333333333337, 400.7]),
    det("bus", 0.9, [1, 2, 3, 4]),
]


def test_tasks_name_a_url_the_browser_opens_and_the_boxes_in_percent(client: FlaskClient, root: Path) -> None:
    (root / "a.png").write_bytes(b"png")
    dataset = flagged(
        client,
        {
            "p1": ((root / "a.png").as_uri(), [det("car", 0.8, [64, 48, 128, 96])]),
            "p2": ("https://cdn.example/b.jpg", []),
            "p3": ("file:///elsewhere/c.png", [det("bus", 0.5, [0, 0, 640, 480])]),
        },
    )
    tasks = {t["meta"]["detwatch_prediction_id"]: t for t in export(client, dataset)}
    item_id = tasks["p1"]["meta"]["detwatch_item_id"]
    signature = image_signature(TOKEN, dataset, item_id)  # the reviewer's browser holds no API token
    assert tasks["p1"]["data"]["image"] == f"{PUBLIC}/v1/datasets/{dataset}/items/{item_id}/image?sig={signature}"
    assert tasks["p2"]["data"]["image"] == "https://cdn.example/b.jpg"
    assert tasks["p3"]["data"]["image"] == "file:///elsewhere/c.png"
    assert "no URL a browser can open" in tasks["p3"]["meta"]["detwatch_image_note"]
    (result,) = tasks["p1"]["predictions"][0]["result"]
    assert result["value"] | {"rectanglelabels": None} == {
        "x": 10.0, "y": 10.0, "width": 10.0, "height": 10.0, "rotation": 0, "rectanglelabels": None
    }  # fmt: skip
    assert tasks["p1"]["predictions"][0]["model_version"] == "v3"
    assert tasks["p2"]["predictions"][0]["result"] == []
    page = ok(client.get(f"/v1/datasets/{dataset}/label-studio/tasks", headers=AUTH))
    assert '<Label value="bus"/><Label value="car"/>' in page["label_config"]
    # The image route answers the URL the task names (its path, under the public URL), without the token.
    path = tasks["p1"]["data"]["image"].removeprefix(PUBLIC)
    response = client.get(path)
    assert response.get_data() == b"png"
    response.close()


def test_every_item_is_exported_across_pages_and_the_api_token_is_needed(client: FlaskClient) -> None:
    dataset = flagged(client, {f"p{i}": (f"https://cdn.example/{i}.jpg", []) for i in range(5)})
    tasks = export(client, dataset, limit=2, status="all")
    assert sorted(t["meta"]["detwatch_prediction_id"] for t in tasks) == [f"p{i}" for i in range(5)]
    assert client.get(f"/v1/datasets/{dataset}/label-studio/tasks").status_code == 401
    assert client.get(f"/v1/datasets/{dataset}/label-studio/tasks?limit=0", headers=AUTH).status_code == 400
    assert client.get("/v1/datasets/nope/label-studio/tasks", headers=AUTH).status_code == 404


def test_imported_annotations_label_the_items_with_the_exact_boxes_once(client: FlaskClient) -> None:
    dataset = flagged(client, {"p1": ("https://cdn.example/1.jpg", ODD), "p2": ("https://cdn.example/2.jpg", [])})
    tasks = [accept(t) for t in export(client, dataset)]
    first = imported(client, dataset, tasks, reviewer="alice")
    assert (first["labeled"], first["unchanged"], first["failed"]) == (2, 0, 0)
    by_pid = {t["meta"]["detwatch_prediction_id"]: item_of(client, dataset, t) for t in tasks}
    assert by_pid["p1"]["status"] == "labeled" and by_pid["p1"]["reviewer"] == "alice"
    assert sorted((a["class"], a["box"]) for a in by_pid["p1"]["label"]) == sorted(
        (d["class"], [float(v) for v in d["box"]]) for d in ODD
    )
    assert by_pid["p2"]["label"] == []  # reviewed: nothing in the image
    again = imported(client, dataset, tasks)
    assert (again["labeled"], again["unchanged"], again["failed"]) == (0, 2, 0)
    assert (
        item_of(client, dataset, tasks[0])["updated_unix_nano"]
        == by_pid[tasks[0]["meta"]["detwatch_prediction_id"]]["updated_unix_nano"]
    )  # unchanged: not written again


def test_a_bad_task_gets_its_own_error_and_costs_the_good_ones_nothing(client: FlaskClient) -> None:
    dataset = flagged(client, {f"p{i}": (f"https://cdn.example/{i}.jpg", ODD) for i in range(3)})
    good = [accept(t) for t in export(client, dataset)]
    rotated = copy.deepcopy(good[1])
    rotated["annotations"][0]["result"][0]["value"]["rotation"] = 45
    unknown = copy.deepcopy(good[2])
    unknown["meta"]["detwatch_item_id"] = unknown["data"]["detwatch_item_id"] = "f" * 32
    no_item = {"data": {"image": "x"}, "annotations": [{"result": []}]}
    skipped = copy.deepcopy(good[2])
    skipped["annotations"][0]["was_cancelled"] = True
    body = imported(client, dataset, [rotated, "not a task", unknown, no_item, skipped, good[0]])
    codes = [(r["index"], r["status"], r.get("error", {}).get("code")) for r in body["results"]]
    assert codes == [
        (0, "failed", "invalid_annotation"),
        (1, "failed", "invalid_task"),
        (2, "failed", "item_not_found"),
        (3, "failed", "invalid_task"),
        (4, "failed", "invalid_task"),
        (5, "labeled", None),
    ]
    assert body["results"][0]["error"]["field"] == "annotation.result[0].value.rotation"
    assert (body["labeled"], body["failed"]) == (1, 5)
    assert item_of(client, dataset, good[0])["status"] == "labeled"
    assert item_of(client, dataset, good[1])["status"] == "needs_review"


def test_a_rejected_item_stays_rejected(client: FlaskClient) -> None:
    dataset = flagged(client, {"p1": ("https://cdn.example/1.jpg", ODD)})
    (task,) = export(client, dataset)
    item = task["meta"]["detwatch_item_id"]
    ok(client.post(f"/v1/datasets/{dataset}/items/{item}/reject", json={}, headers=AUTH))
    (result,) = imported(client, dataset, [accept(task)])["results"]
    assert (result["status"], result["error"]["code"]) == ("failed", "conflict")


def _hook(task: dict[str, Any], action: str, result: list[Any], annotation_id: int = 5) -> dict[str, Any]:
    """Label Studio's webhook body for an annotation of ``task`` (the task without its annotations)."""
    bare = {k: v for k, v in task.items() if k not in ("annotations", "predictions")}
    annotation = {"id": annotation_id, "task": bare.get("id", 1), "result": result, "was_cancelled": False}
    return {"action": action, "annotation": annotation, "task": bare, "project": {"id": 1}}


def test_the_webhook_labels_once_and_relabels_on_update(client: FlaskClient) -> None:
    dataset = flagged(client, {"p1": ("https://cdn.example/1.jpg", ODD)})
    (task,) = export(client, dataset)
    url = f"/v1/datasets/{dataset}/label-studio/webhook"
    header = {"X-Detwatch-Secret": SECRET}
    created = _hook(task, "ANNOTATION_CREATED", task["predictions"][0]["result"])
    assert ok(client.post(url, json=created, headers=header))["status"] == "labeled"
    first = item_of(client, dataset, task)
    assert ok(client.post(f"{url}?secret={SECRET}", json=created))["status"] == "unchanged"  # a retry
    assert item_of(client, dataset, task)["updated_unix_nano"] == first["updated_unix_nano"]
    moved = copy.deepcopy(created["annotation"]["result"][:1])
    moved[0]["value"].update(x=50.0, y=25.0, width=12.5, height=50.0)
    updated = _hook(task, "ANNOTATION_UPDATED", moved)
    assert ok(client.post(url, json=updated, headers=header))["status"] == "labeled"
    assert item_of(client, dataset, task)["label"] == [{"class": "car", "box": [320.0, 120.0, 400.0, 360.0]}]
    assert ok(client.post(url, json={"action": "PROJECT_UPDATED", "project": {}}, headers=header))["status"] == (
        "ignored"
    )


def test_the_webhook_needs_the_secret_or_the_api_token(client: FlaskClient) -> None:
    dataset = flagged(client, {"p1": ("https://cdn.example/1.jpg", ODD)})
    (task,) = export(client, dataset)
    url = f"/v1/datasets/{dataset}/label-studio/webhook"
    body = _hook(task, "ANNOTATION_CREATED", [])
    for headers, query in (({}, ""), ({"X-Detwatch-Secret": "wrong"}, ""), ({}, "?secret=wrong")):
        response = client.post(url + query, json=body, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"]["field"] == "Authorization"
    assert item_of(client, dataset, task)["status"] == "needs_review"
    assert ok(client.post(url, json=body, headers=AUTH))["status"] == "labeled"
    unknown = _hook({"data": {"detwatch_item_id": "f" * 32}}, "ANNOTATION_CREATED", [])
    response = client.post(url, json=unknown, headers=AUTH)
    assert response.status_code == 404 and response.get_json()["error"]["field"] == "task.meta.detwatch_item_id"
    nameless = _hook({"data": {"image": "x"}}, "ANNOTATION_CREATED", [])
    response = client.post(url, json=nameless, headers=AUTH)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "item_not_found"


def test_export_annotate_import_version_holds_the_reviewers_boxes_exactly(client: FlaskClient) -> None:
    dataset = flagged(client, {"p1": ("https://cdn.example/1.jpg", ODD), "p2": ("https://cdn.example/2.jpg", ODD)})
    tasks = export(client, dataset)
    annotated = []
    for task in tasks:  # the reviewer keeps the car, drops the bus, and draws a person
        done = accept(task)
        result = [r for r in done["annotations"][0]["result"] if r["value"]["rectanglelabels"] == ["car"]]
        drawn = copy.deepcopy(result[0])
        drawn["id"] = "new1"
        drawn["value"] = {"x": 33.3333, "y": 12.5, "width": 7.77, "height": 20.0, "rotation": 0,
                          "rectanglelabels": ["person"]}  # fmt: skip
        drawn.pop("score")
        done["annotations"][0]["result"] = [*result, drawn]
        annotated.append(done)
    assert imported(client, dataset, annotated)["labeled"] == 2
    version = ok(client.post(f"/v1/datasets/{dataset}/versions", json={"name": "v1"}, headers=AUTH), 201)
    coco = ok(client.get(f"/v1/datasets/{dataset}/versions/{version['id']}/export?format=coco", headers=AUTH))
    person = [round(33.3333 * W / 100, 3), 60.0, round((33.3333 + 7.77) * W / 100, 3), 156.0]
    expected = sorted([("car", [float(v) for v in ODD[0]["box"]]), ("person", person)])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert len(coco["images"]) == 2
    for image in coco["images"]:  # COCO's [x, y, width, height] of exactly those pixel boxes
        boxes = sorted(
            (names[a["category_id"]], a["bbox"]) for a in coco["annotations"] if a["image_id"] == image["id"]
        )
        assert boxes == [(name, [x1, y1, x2 - x1, y2 - y1]) for name, (x1, y1, x2, y2) in expected]


def test_the_webhook_secret_is_read_from_the_environment_and_the_file(tmp_path: Path) -> None:
    from detwatch.config import ConfigError, load_settings

    missing = str(tmp_path / "none.yaml")
    assert load_settings(
        {"DETWATCH_LABEL_STUDIO_SECRET": " s3 \n", "DETWATCH_CONFIG": missing}
    ).label_studio_secret == ("s3")  # a secret read from a file ends in a newline: it would never match
    assert load_settings({"DETWATCH_LABEL_STUDIO_SECRET": "", "DETWATCH_CONFIG": missing}).label_studio_secret is None
    (tmp_path / "detwatch.yaml").write_text("label_studio_secret: from-file\n")
    assert load_settings({}, path=tmp_path / "detwatch.yaml").label_studio_secret == "from-file"
    with pytest.raises(ConfigError, match="label_studio_secret"):
        load_settings({"DETWATCH_LABEL_STUDIO_SECRET": "a\x01b", "DETWATCH_CONFIG": missing})
