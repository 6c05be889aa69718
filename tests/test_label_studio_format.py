"""Label Studio's formats both ways: tasks from flagged items, labels from annotations, exact round trips."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from detwatch.contract.label_studio import config_classes, labeling_config
from detwatch.contract.predictions import ImageRef
from detwatch.review.label_studio import (
    PIXEL_DECIMALS,
    LabelStudioError,
    annotation_boxes,
    box_to_percent,
    chosen_annotation,
    item_id_of,
    percent_to_box,
    to_task,
)
from detwatch.storage.records import FlaggedItemRecord


def item(detections: list[dict[str, Any]], width: int | None = 640, height: int | None = 480) -> FlaggedItemRecord:
    return FlaggedItemRecord(
        id="i" * 32,
        dataset_id="ds",
        prediction_id="p-1",
        model_id="vehicles",
        model_version="v2",
        time_unix_nano=1,
        reasons=["low_confidence"],
        detections=detections,
        image=ImageRef(key="cam/1.jpg", uri="file:///data/1.jpg", width=width, height=height),
        status="needs_review",
        assignee=None,
        claimed_unix_nano=None,
        label=None,
        reviewer=None,
        feedback=(),
        created_unix_nano=1,
        updated_unix_nano=1,
    )


def random_box(rng: random.Random, width: int, height: int, *, grid: bool) -> list[float]:
    x1, y1 = rng.uniform(-0.2 * width, width), rng.uniform(-0.2 * height, height)
    x2, y2 = x1 + rng.uniform(1e-3, 1.3 * width), y1 + rng.uniform(1e-3, 1.3 * height)
    box = [x1, y1, x2, y2]
    return [round(v, PIXEL_DECIMALS) for v in box] if grid else box


def annotated(task: dict[str, Any]) -> dict[str, Any]:
    """The task as Label Studio exports it after a reviewer accepted the prediction (results copied, JSON between)."""
    accepted: dict[str, Any] = json.loads(json.dumps(task))
    accepted["annotations"] = [{"id": 7, "result": accepted["predictions"][0]["result"], "was_cancelled": False}]
    return accepted


def test_pixels_to_percent_to_pixels_is_exact_on_the_grid_for_many_boxes_and_sizes() -> None:
    rng = random.Random(18)
    for _ in range(50_000):
        width, height = rng.randint(1, 20_000), rng.randint(1, 20_000)
        box = random_box(rng, width, height, grid=True)
        assert percent_to_box(box_to_percent(box, width, height), width, height) == box, (box, width, height)
        through_json = json.loads(json.dumps(box_to_percent(box, width, height)))  # as Label Studio stores them
        assert percent_to_box(through_json, width, height) == box


def test_the_grid_round_trip_holds_at_the_coordinate_bounds() -> None:
    for box in ([-1e7, -1e7, 1e7, 1e7], [9_999_999.999, 0.001, 1e7, 0.002], [0.0, 0.0, 0.001, 0.001]):
        for width, height in ((1, 1), (3, 7), (65_535, 4_097)):
            assert percent_to_box(box_to_percent(box, width, height), width, height) == box


def test_a_kept_prediction_comes_back_as_the_models_own_floats() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        width, height = rng.randint(1, 8_000), rng.randint(1, 8_000)
        detections = [
            {
                "class": rng.choice(["car", "bus"]),
                "confidence": rng.random(),
                "box": random_box(rng, width, height, grid=False),
            }
            for _ in range(rng.randint(1, 5))
        ]
        task = annotated(to_task(item(detections, width, height), image_url="http://x/1.jpg"))
        boxes = annotation_boxes(chosen_annotation(task), width=width, height=height, detections=detections)
        assert boxes == [{"class": d["class"], "box": d["box"]} for d in detections]


def test_a_moved_box_is_read_on_the_pixel_grid() -> None:
    detections = [{"class": "car", "confidence": 0.4, "box": [10.123456, 20.0, 110.0, 220.0]}]
    task = annotated(to_task(item(detections), image_url="http://x/1.jpg"))
    value = task["annotations"][0]["result"][0]["value"]
    value["x"] += 1e-9  # the reviewer nudged it: no longer the exported value
    value["rectanglelabels"] = ["truck"]
    (box,) = annotation_boxes(task["annotations"][0], width=640, height=480, detections=detections)
    assert box == {"class": "truck", "box": [10.123, 20.0, 110.0, 220.0]}


def test_a_task_carries_the_image_url_the_boxes_in_percent_and_the_item_id() -> None:
    detections = [
        {"class": "car", "confidence": 0.9, "box": [64.0, 48.0, 128.0, 96.0]},
        {"class": "bus", "confidence": 0.35, "box": [0.0, 0.0, 640.0, 480.0]},
    ]
    task = to_task(item(detections), image_url="https://img.example/1.jpg")
    assert task["data"] == {"image": "https://img.example/1.jpg", "detwatch_item_id": "i" * 32}
    assert task["meta"]["detwatch_item_id"] == "i" * 32 and task["meta"]["detwatch_reasons"] == ["low_confidence"]
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "v2" and prediction["score"] == 0.35
    first, second = prediction["result"]
    assert first["value"] == {"x": 10.0, "y": 10.0, "width": 10.0, "height": 10.0, "rotation": 0,
                              "rectanglelabels": ["car"]}  # fmt: skip
    assert (first["score"], first["original_width"], first["original_height"]) == (0.9, 640, 480)
    assert second["value"]["width"] == 100.0 and second["value"]["height"] == 100.0
    assert {r["from_name"] for r in prediction["result"]} == {"label"}
    assert {r["to_name"] for r in prediction["result"]} == {"image"}
    assert item_id_of(task) == "i" * 32
    assert item_id_of({"data": {"detwatch_item_id": "x"}}) == "x"  # a webhook's task without meta


def test_without_a_browser_url_or_an_image_size_the_task_says_why() -> None:
    task = to_task(item([{"class": "car", "confidence": 0.9, "box": [1, 2, 3, 4]}], None, None), image_url=None)
    assert task["data"]["image"] == "file:///data/1.jpg" and "predictions" not in task
    assert "no URL a browser can open" in task["meta"]["detwatch_image_note"]
    assert "no image size" in task["meta"]["detwatch_image_note"]


def test_the_labeling_config_names_every_class_once_and_escapes_them() -> None:
    root = ET.fromstring(labeling_config(["car", 'a "quoted" <class>', "car"]))
    (image,) = root.iter("Image")
    (labels,) = root.iter("RectangleLabels")
    assert image.attrib == {"name": "image", "value": "$image"}
    assert labels.attrib == {"name": "label", "toName": "image"}
    assert [label.attrib["value"] for label in labels] == ['a "quoted" <class>', "car"]
    assert config_classes(labeling_config(["car", "bus"])) == ["bus", "car"]


def test_the_latest_annotation_that_was_not_cancelled_counts() -> None:
    task = {
        "annotations": [
            {"id": 1, "updated_at": "2024-01-01T00:00:00Z", "result": []},
            {"id": 3, "updated_at": "2024-03-01T00:00:00Z", "was_cancelled": True, "result": []},
            {"id": 2, "updated_at": "2024-02-01T00:00:00Z", "result": []},
        ]
    }
    assert chosen_annotation(task)["id"] == 2
    with pytest.raises(LabelStudioError, match="cancelled"):
        chosen_annotation({"annotations": [{"id": 1, "was_cancelled": True}]})


def test_other_result_types_are_left_out_and_the_size_comes_from_the_result_when_the_item_has_none() -> None:
    result = [
        {"type": "choices", "value": {"choices": ["blurry"]}},
        {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
         "value": {"x": 10, "y": 20, "width": 50, "height": 30, "rotation": 0, "rectanglelabels": ["car"]}},
    ]  # fmt: skip
    assert annotation_boxes({"result": result}, width=None, height=None) == [
        {"class": "car", "box": [20.0, 20.0, 120.0, 50.0]}
    ]


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30, "rectanglelabels": ["car"]},
         "result[0].value.rotation", "rotated"),
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["car", "bus"]},
         "result[0].value.rectanglelabels", "exactly one"),
        ({"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["   "]},
         "result[0].value.rectanglelabels", "visible"),
        ({"x": "1", "y": 1, "width": 5, "height": 5, "rectanglelabels": ["car"]}, "result[0].value.x", "number"),
        ({"x": 1, "y": 1, "width": 0, "height": 5, "rectanglelabels": ["car"]}, "result[0].value", ""),
        ({"x": 1e12, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["car"]}, "result[0].value", "within"),
    ],
)  # fmt: skip
def test_a_box_detwatch_cannot_hold_is_refused_naming_the_result(
    value: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(LabelStudioError) as caught:
        annotation_boxes({"result": [{"type": "rectanglelabels", "value": value}]}, width=640, height=480)
    assert caught.value.field == field and message in caught.value.message


def _config_names(config: str) -> tuple[str, str, set[str]]:
    root = ET.fromstring(config)
    (image,) = root.iter("Image")
    (control,) = root.iter("RectangleLabels")
    assert control.attrib["toName"] == image.attrib["name"] and image.attrib["value"] == "$image"
    return control.attrib["name"], image.attrib["name"], {label.attrib["value"] for label in control}


def test_exported_tasks_follow_label_studios_documented_task_format() -> None:
    """The rules of Label Studio's task format (labelstud.io/guide/task_format, ``predictions``) and of
    label-studio-sdk's ``LabelInterface.validate_prediction``: every region names the config's control and
    object, holds the fields of a ``rectanglelabels`` value and only labels the config declares; a score
    lies in [0, 1]."""
    rng = random.Random(5)
    for _ in range(500):
        width, height = rng.randint(1, 5000), rng.randint(1, 5000)
        detections = [
            {
                "class": rng.choice(["car", "bus", "a b"]),
                "confidence": rng.random(),
                "box": random_box(rng, width, height, grid=False),
            }
            for _ in range(rng.randint(0, 4))
        ]
        task = json.loads(json.dumps(to_task(item(detections, width, height), image_url="https://x.example/1.jpg")))
        control, image, labels = _config_names(labeling_config(str(d["class"]) for d in detections))
        assert isinstance(task["data"]["image"], str) and isinstance(task["meta"], dict)
        (prediction,) = task["predictions"]
        assert isinstance(prediction["model_version"], str) and isinstance(prediction["result"], list)
        assert "score" not in prediction or 0 <= prediction["score"] <= 1
        for region in prediction["result"]:
            assert (region["from_name"], region["to_name"], region["type"]) == (control, image, "rectanglelabels")
            assert isinstance(region["id"], str) and region["id"]
            assert (region["original_width"], region["original_height"]) == (width, height)
            assert set(region["value"]) == {"x", "y", "width", "height", "rotation", "rectanglelabels"}
            assert all(isinstance(region["value"][k], float) for k in ("x", "y", "width", "height"))
            assert region["value"]["width"] > 0 and region["value"]["height"] > 0
            assert set(region["value"]["rectanglelabels"]) <= labels and len(region["value"]["rectanglelabels"]) == 1
            assert 0 <= region["score"] <= 1
