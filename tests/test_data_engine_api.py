"""The data engine through HTTP (Flask's test client), on a fresh database of each backend per test.

Expected flags are computed here from the events' own content (by construction, or
with plain Python on the real detector's output) and the sampling hash's definition,
never read back from the service.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pycocotools.coco import COCO  # type: ignore[import-untyped]
from scipy import stats

from _telemetry import Telemetry, sums_by
from detwatch.config import TrainerSettings
from detwatch.demo import sample_detector as sd
from detwatch_instrumentation import monitor_detections

TIME = "2024-02-01T12:00:00Z"
W, H = 640, 480


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def error_of(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def dataset(client: FlaskClient) -> dict[str, Any]:
    return dict(ok(client.post("/v1/datasets", json={"name": "vehicles"}), 201))


def configure(client: FlaskClient, dataset_id: str, config: dict[str, Any], model_id: str = "vehicles") -> Any:
    body = {"config": config, "target_dataset_id": dataset_id}
    return ok(client.put(f"/v1/models/{model_id}/data-engine", json=body))


def event(pid: str, detections: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "prediction_id": pid,
        "time": TIME,
        "model_id": "vehicles",
        "model_version": "v1",
        "image": {"key": f"cam/{pid}.jpg", "uri": f"file:///data/{pid}.jpg", "width": W, "height": H},
        "detections": detections,
        **extra,
    }


def send(client: FlaskClient, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 5000):
        body = ok(client.post("/v1/predictions", json={"predictions": events[start : start + 5000]}))
        assert body["rejected"] == [], body


def all_items(client: FlaskClient, dataset_id: str, status: str = "needs_review", limit: int = 1000) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        url = f"/v1/datasets/{dataset_id}/items?status={status}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = ok(client.get(url))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def unit(key: str, strategy: str) -> float:
    """The sampling hash from its definition (BLAKE2b-64 of the key, personalised by the strategy)."""
    person = f"objdet.flag.{strategy}".encode()
    if len(person) > 16:
        person = hashlib.blake2b(person, digest_size=16).digest()
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, person=person).digest(), "big") / 2.0**64


def det(cls: str, conf: float, box: list[float]) -> dict[str, Any]:
    return {"class": cls, "confidence": conf, "box": box}


NORMAL = [100.0, 100.0, 200.0, 180.0]  # 8000 / 307200 = 0.026 of the image


def test_configure_answers_the_normalised_policy_and_names_bad_fields(client: FlaskClient) -> None:
    ds = dataset(client)
    seed = {
        "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
        "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density", "unusual_size"]},
        "random_sample": {"enabled": True, "rate": 0.05},
    }
    body = configure(client, ds["id"], seed)
    assert body["id"] == "vehicles" and body["target_dataset_id"] == ds["id"]
    assert body["config"]["low_confidence"] == {"enabled": True, "threshold": 0.6, "sample_rate": 0.3, "mode": "any"}
    assert body["config"]["random_sample"] == {"enabled": True, "rate": 0.05}
    served = ok(client.get("/v1/models/vehicles/data-engine"))
    assert served["config"] == body["config"] and served["policy"]["edge_cases"]["unusual_size"]["learned"] == {}
    cases = [
        ({"config": {"low_confidence": {"threshold": 2}}, "target_dataset_id": ds["id"]},
         "config.low_confidence.threshold"),
        ({"config": seed}, "target_dataset_id"),
        ({"target_dataset_id": ds["id"]}, "config"),
        ({"config": {"edge_cases": {"conditions": "all"}}, "target_dataset_id": ds["id"]},
         "config.edge_cases.conditions"),
    ]  # fmt: skip
    for bad, field in cases:
        response = client.put("/v1/models/vehicles/data-engine", json=bad)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert error_of(response)["field"] == field
    unknown = client.put("/v1/models/vehicles/data-engine", json={"config": seed, "target_dataset_id": "nope"})
    assert unknown.status_code == 404 and error_of(unknown)["field"] == "target_dataset_id"
    assert client.get("/v1/models/other/data-engine").status_code == 404


def test_each_strategy_flags_what_it_should_and_nothing_else(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(
        client,
        ds["id"],
        {
            "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 1.0},
            "edge_cases": {
                "enabled": True,
                "conditions": ["no_detections", "high_density", "unusual_size"],
                "high_density": {"min_detections": 8, "iou_threshold": 0.5, "min_overlapping": 3},
                "unusual_size": {"min_area": 0.001, "max_area": 0.5, "learn": False},
            },
        },
    )
    crowd = [det("car", 0.9, [i * 60.0, 10.0, i * 60.0 + 50.0, 60.0]) for i in range(8)]  # 2500 px^2 each: 0.008
    stacked = [det("car", 0.9, [x, 10.0, x + 50.0, 60.0]) for x in (0.0, 5.0, 10.0)]  # IoU(0, 5) = 0.82
    cases: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
        "plain": ([det("car", 0.9, NORMAL)], []),
        "weak": ([det("car", 0.95, NORMAL), det("person", 0.59, NORMAL)], ["low_confidence"]),
        "at-threshold": ([det("car", 0.6, NORMAL)], []),
        "empty": ([], ["no_detections"]),
        "crowd": (crowd, ["high_density"]),
        "almost-crowd": (crowd[:7], []),
        "stacked": (stacked, ["high_density"]),
        "tiny": ([det("car", 0.9, [0.0, 0.0, 10.0, 10.0])], ["unusual_size"]),  # 100 px^2: 0.0003
        "huge": ([det("car", 0.9, [0.0, 0.0, 600.0, 400.0])], ["unusual_size"]),  # 0.78
        "weak-and-tiny": ([det("car", 0.2, [0.0, 0.0, 10.0, 10.0])], ["low_confidence", "unusual_size"]),
    }
    send(client, [event(name, dets) for name, (dets, _) in cases.items()])
    items = all_items(client, ds["id"])
    assert {i["prediction_id"]: i["reasons"] for i in items} == {n: r for n, (_, r) in cases.items() if r}
    weak = next(i for i in items if i["prediction_id"] == "weak")
    assert weak["detections"] == cases["weak"][0]
    assert weak["image"] == {"key": "cam/weak.jpg", "uri": "file:///data/weak.jpg", "width": W, "height": H}
    assert weak["status"] == "needs_review" and weak["model_version"] == "v1"
    # Re-sent events are duplicates: nothing is flagged twice.
    send(client, [event(name, dets) for name, (dets, _) in cases.items()])
    assert len(all_items(client, ds["id"])) == len(items)


def test_sampled_shares_are_the_configured_rates_within_binomial_bounds(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(
        client,
        ds["id"],
        {
            "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
            "random_sample": {"enabled": True, "rate": 0.05},
        },
    )
    n = 4000
    events = [event(f"p{i:05d}", [det("car", 0.3 if i % 2 else 0.9, NORMAL)]) for i in range(n)]
    send(client, events)
    items = {i["prediction_id"]: set(i["reasons"]) for i in all_items(client, ds["id"])}
    weak = [e["prediction_id"] for e in events if e["detections"][0]["confidence"] < 0.6]
    expected_low = {p for p in weak if unit(p, "low_confidence") < 0.3}
    expected_random = {e["prediction_id"] for e in events if unit(e["prediction_id"], "random_sample") < 0.05}
    assert {p for p, r in items.items() if "low_confidence" in r} == expected_low
    assert {p for p, r in items.items() if "random_sample" in r} == expected_random
    assert set(items) == expected_low | expected_random
    for share, count, rate in ((len(expected_low), len(weak), 0.3), (len(expected_random), n, 0.05)):
        low, high = stats.binom.ppf(1e-6, count, rate), stats.binom.isf(1e-6, count, rate)
        assert low <= share <= high, (share, count, rate)


def test_feedback_other_than_correct_flags_its_prediction_and_prefills_the_label(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(client, ds["id"], {"random_sample": {"enabled": True, "rate": 0.0}})
    first = [det("car", 0.9, NORMAL), det("car", 0.8, [300.0, 100.0, 400.0, 200.0])]
    send(client, [event("a", first), event("b", first), event("c", first)])
    assert all_items(client, ds["id"]) == []
    ok(client.post("/v1/feedback", json={"type": "correct", "prediction_id": "a"}), 201)
    assert all_items(client, ds["id"]) == []
    ok(client.post("/v1/feedback", json={"type": "wrong_label", "prediction_id": "b", "detection_index": 1,
                                         "corrected_class": "truck"}), 201)  # fmt: skip
    ok(client.post("/v1/feedback", json={"type": "false_positive", "prediction_id": "b", "detection_index": 0}), 201)
    ok(client.post("/v1/feedback", json={"type": "missed_object", "prediction_id": "b", "corrected_class": "bus",
                                         "corrected_box": [10, 10, 50, 60]}), 201)  # fmt: skip
    # Feedback before its prediction: flagged when the prediction arrives.
    ok(client.post("/v1/feedback", json={"type": "wrong_box", "prediction_id": "d", "detection_index": 0,
                                         "corrected_box": [101, 99, 210, 190]}), 201)  # fmt: skip
    send(client, [event("d", first)])
    items = {i["prediction_id"]: i for i in all_items(client, ds["id"])}
    assert set(items) == {"b", "d"}
    b = items["b"]
    assert b["reasons"] == ["feedback:wrong_label", "feedback:false_positive", "feedback:missed_object"]
    assert [f["type"] for f in b["feedback"]] == ["wrong_label", "false_positive", "missed_object"]
    assert b["suggested_label"] == [
        {"class": "truck", "box": [300.0, 100.0, 400.0, 200.0]},
        {"class": "bus", "box": [10.0, 10.0, 50.0, 60.0]},
    ]
    d = items["d"]
    assert d["reasons"] == ["feedback:wrong_box"]
    assert d["suggested_label"] == [
        {"class": "car", "box": [101.0, 99.0, 210.0, 190.0]},
        {"class": "car", "box": [300.0, 100.0, 400.0, 200.0]},
    ]


def test_paging_with_a_cursor_is_stable_while_items_are_claimed(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event(f"e{i:04d}", []) for i in range(250)])
    first = ok(client.get(f"/v1/datasets/{ds['id']}/items?status=needs_review&limit=100"))
    assert len(first["items"]) == 100 and first["next_cursor"]
    claimed = ok(client.post(f"/v1/datasets/{ds['id']}/claims", json={"reviewer": "ann", "limit": 50}))
    assert [i["id"] for i in claimed["items"]] == [i["id"] for i in first["items"][:50]]
    assert all(i["status"] == "in_review" and i["assignee"] == "ann" for i in claimed["items"])
    rest: list[Any] = []
    cursor = first["next_cursor"]
    while cursor:
        page = ok(client.get(f"/v1/datasets/{ds['id']}/items?status=needs_review&limit=100&cursor={cursor}"))
        rest += page["items"]
        cursor = page["next_cursor"]
    ids = [i["id"] for i in first["items"] + rest]
    assert len(ids) == len(set(ids)) == 250
    order = [(i["created_unix_nano"], i["id"]) for i in first["items"] + rest]
    assert order == sorted(order)
    assert len(all_items(client, ds["id"], "in_review")) == 50
    assert len(all_items(client, ds["id"])) == 200
    for bad, field in (("status=done", "status"), ("limit=0", "limit"), ("cursor=%%%", "cursor")):
        response = client.get(f"/v1/datasets/{ds['id']}/items?{bad}")
        assert response.status_code == 400 and error_of(response)["field"] == field
    assert client.get("/v1/datasets/nope/items").status_code == 404


def label_all(client: FlaskClient, dataset_id: str, labels: dict[str, list[dict[str, Any]]]) -> None:
    for item in all_items(client, dataset_id):
        if item["prediction_id"] in labels:
            body = {"annotations": labels[item["prediction_id"]], "reviewer": "ann"}
            ok(client.post(f"/v1/datasets/{dataset_id}/items/{item['id']}/label", json=body))
        else:
            ok(client.post(f"/v1/datasets/{dataset_id}/items/{item['id']}/reject", json={"reviewer": "ann"}))


def canonical_hash(items: dict[str, Any]) -> str:
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_dataset_versions_are_reproducible_snapshots_with_counts_and_diffs(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event(f"img{i}", []) for i in range(4)])
    labels: dict[str, list[dict[str, Any]]] = {
        "img0": [{"class": "car", "box": [1, 2, 30, 40]}, {"class": "person", "box": [50, 50, 60, 90]}],
        "img1": [{"class": "car", "box": [5, 5, 25, 25]}],
        "img2": [],
    }
    label_all(client, ds["id"], labels)  # img3 rejected
    root = ds["version"]["id"]
    v2 = ok(client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v2", "parent_version_id": root}), 201)
    expected_items: dict[str, Any] = {
        pid: {
            "image": {"key": f"cam/{pid}.jpg", "uri": f"file:///data/{pid}.jpg", "width": W, "height": H},
            "annotations": sorted(
                ({"class": a["class"], "box": [float(v) for v in a["box"]]} for a in anns),
                key=lambda a: (str(a["class"]), list(a["box"])),
            ),
        }
        for pid, anns in labels.items()
    }
    assert v2["content_hash"] == canonical_hash(expected_items)
    assert v2["item_count"] == 3 and v2["class_counts"] == {"car": 2, "person": 1}
    assert (
        v2["diff"]["added"] == 3
        and v2["diff"]["removed"] == 0
        and v2["diff"]["class_counts"] == {"car": 2, "person": 1}
    )
    versions = f"/v1/datasets/{ds['id']}/versions"
    again = ok(client.post(versions, json={"name": "again", "parent_version_id": root}), 201)
    assert again["content_hash"] == v2["content_hash"] and again["id"] != v2["id"]
    child = ok(
        client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v3", "parent_version_id": v2["id"]}), 201
    )
    assert child["content_hash"] == v2["content_hash"] and child["diff"]["added"] == 0 and child["diff"]["changed"] == 0
    # Relabelling changes the next version, never the one already taken.
    img1 = next(i for i in all_items(client, ds["id"], "labeled") if i["prediction_id"] == "img1")
    ok(client.post(f"/v1/datasets/{ds['id']}/items/{img1['id']}/label",
                   json={"annotations": [{"class": "truck", "box": [5, 5, 25, 25]}]}))  # fmt: skip
    v4 = ok(client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v4", "parent_version_id": v2["id"]}), 201)
    assert v4["diff"]["changed"] == 1 and v4["diff"]["class_counts"] == {"car": -1, "truck": 1}
    assert ok(client.get(f"/v1/datasets/{ds['id']}/versions/{v2['id']}"))["content_hash"] == v2["content_hash"]
    empty = ok(client.get(f"/v1/datasets/{ds['id']}/versions/{root}"))
    assert empty["item_count"] == 0 and empty["content_hash"] == canonical_hash({})


def test_coco_export_loads_in_pycocotools_and_round_trips(client: FlaskClient, tmp_path: Path) -> None:
    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event(f"img{i}", []) for i in range(3)])
    labels: dict[str, list[dict[str, Any]]] = {
        "img0": [{"class": "car", "box": [1.5, 2.0, 30.0, 40.0]}, {"class": "person", "box": [50, 50, 60, 90]}],
        "img1": [{"class": "car", "box": [5, 5, 25, 25]}],
        "img2": [{"class": "bus", "box": [100, 120, 300, 200]}],
    }
    label_all(client, ds["id"], labels)
    version = ok(client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v2"}), 201)
    document = ok(client.get(f"/v1/datasets/{ds['id']}/versions/{version['id']}/export?format=coco"))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    coco = COCO(str(path))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["bus", "car", "person"]
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 4
    back: dict[str, list[dict[str, Any]]] = {}
    for image in coco.loadImgs(coco.getImgIds()):
        assert (image["width"], image["height"]) == (W, H)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        back[image["file_name"].removeprefix("cam/").removesuffix(".jpg")] = sorted(
            (
                {"class": coco.loadCats([a["category_id"]])[0]["name"],
                 "box": [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]}
                for a in anns
            ),
            key=lambda a: (a["class"], a["box"]),
        )  # fmt: skip
        for a in anns:
            assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    expected = {
        pid: sorted(
            ({"class": a["class"], "box": [float(v) for v in a["box"]]} for a in anns),
            key=lambda a: (a["class"], a["box"]),
        )
        for pid, anns in labels.items()
    }
    assert back == expected
    again = ok(client.get(f"/v1/datasets/{ds['id']}/versions/{version['id']}/export?format=coco"))
    assert again == document  # the same version exports the same document

    archive = zipfile.ZipFile(io.BytesIO(client.get(
        f"/v1/datasets/{ds['id']}/versions/{version['id']}/export?format=yolo").data))  # fmt: skip
    names = ["bus", "car", "person"]
    assert 'names:\n  0: "bus"\n  1: "car"\n  2: "person"\n' in archive.read("data.yaml").decode()
    for pid, anns in labels.items():
        lines = archive.read(f"labels/{pid}.txt").decode().splitlines()
        expected_lines = []
        for a in sorted(anns, key=lambda a: (a["class"], [float(v) for v in a["box"]])):
            x1, y1, x2, y2 = (float(v) for v in a["box"])
            expected_lines.append(
                f"{names.index(a['class'])} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}"
            )
        assert lines == expected_lines
        for line in lines:
            fields = line.split()
            assert len(fields) == 5 and fields[0].isdigit() and all(0.0 <= float(v) <= 1.0 for v in fields[1:])
    assert client.get(f"/v1/datasets/{ds['id']}/versions/{version['id']}/export?format=voc").status_code == 400


def test_label_and_reject_validate_input_and_state(client: FlaskClient) -> None:
    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event("x", []), event("y", [])])
    x, y = all_items(client, ds["id"])
    base = f"/v1/datasets/{ds['id']}/items"
    for bad, field in (
        ({"annotations": [{"class": "car", "box": [5, 5, 1, 1]}]}, "annotations[0].box"),
        ({"annotations": [{"box": [0, 0, 1, 1]}]}, "annotations[0].class"),
        ({}, "annotations"),
    ):
        response = client.post(f"{base}/{x['id']}/label", json=bad)
        assert response.status_code == 400 and error_of(response)["field"] == field
    ok(client.post(f"/v1/datasets/{ds['id']}/claims", json={"reviewer": "ann", "limit": 1}))
    response = client.post(f"{base}/{x['id']}/label", json={"annotations": [], "reviewer": "bob"})
    assert response.status_code == 409 and error_of(response)["field"] == "reviewer"
    ok(client.post(f"{base}/{y['id']}/reject", json={}))
    assert client.post(f"{base}/{y['id']}/label", json={"annotations": []}).status_code == 409
    assert client.post(f"{base}/nope/label", json={"annotations": []}).status_code == 404
    response = client.post(f"/v1/datasets/{ds['id']}/claims", json={"limit": 1})
    assert response.status_code == 400 and error_of(response)["field"] == "reviewer"


# ------------------------------------------------------------------ the real detector


@functools.cache
def real_detector_events() -> list[dict[str, Any]]:
    """Prediction events of the OpenCV Haar face detector on bundled images, through the decorator."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    import detwatch_instrumentation

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    detector = monitor_detections(model_id="faces", model_version="haar", logger_provider=provider)(
        sd.HaarFaceDetector()
    )
    scenes = sd.sample_scenes()
    images = {
        "faces": sd.face_mosaic("faces"),
        "nonfaces": sd.face_mosaic("nonfaces"),
        "astronaut": scenes["astronaut"],
        "coins": scenes["coins"],
        "camera": scenes["camera"],
    }
    from detwatch_instrumentation import prediction_context

    for key, image in images.items():
        with prediction_context(image_key=key):
            detector(image)
    assert detwatch_instrumentation.flush(30.0)
    events = [json.loads(str(log.log_record.body)) for log in exporter.get_finished_logs()]
    provider.shutdown()
    return events


def test_each_strategy_flags_real_detector_output_as_computed_from_its_detections(client: FlaskClient) -> None:
    ds = dataset(client)
    threshold, min_area, max_area, crowd = 0.5, 0.002, 0.05, 32
    configure(
        client,
        ds["id"],
        {
            "low_confidence": {"enabled": True, "threshold": threshold, "sample_rate": 1.0},
            "edge_cases": {
                "enabled": True,
                "conditions": ["no_detections", "high_density", "unusual_size"],
                "high_density": {"min_detections": crowd, "min_overlapping": 1000},
                "unusual_size": {"min_area": min_area, "max_area": max_area, "learn": False},
            },
        },
        model_id="faces",
    )
    events = real_detector_events()
    send(client, events)
    expected: dict[str, list[str]] = {}
    for e in events:
        dets = e["detections"]
        area = e["image"]["width"] * e["image"]["height"]
        reasons = []
        if dets and any(d["confidence"] < threshold for d in dets):
            reasons.append("low_confidence")
        if not dets:
            reasons.append("no_detections")
        if len(dets) >= crowd:
            reasons.append("high_density")
        sizes = [(d["box"][2] - d["box"][0]) * (d["box"][3] - d["box"][1]) / area for d in dets]
        if any(s < min_area or s > max_area for s in sizes):
            reasons.append("unusual_size")
        if reasons:
            expected[e["image"]["key"]] = reasons
    # The real output covers the strategies: a crowd of faces, empty images, weak false positives.
    assert {"faces", "nonfaces", "coins"} <= set(expected)
    assert "high_density" in expected["faces"] and expected["nonfaces"] == ["no_detections"]
    assert "low_confidence" in expected["coins"]
    items = all_items(client, ds["id"])
    assert {i["image"]["key"]: i["reasons"] for i in items} == expected


def test_the_decorator_and_the_companion_select_the_same_predictions(
    client: FlaskClient, telemetry: Telemetry, tmp_path: Path
) -> None:
    from detwatch_instrumentation import DataEngine

    ds = dataset(client)
    config = {"low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 0.5},
              "edge_cases": {"enabled": True, "conditions": ["no_detections"]},
              "random_sample": {"enabled": True, "rate": 0.2}}  # fmt: skip
    served = configure(client, ds["id"], config, model_id="faces")
    engine = DataEngine(policy=served["config"], sink=tmp_path / "flagged")
    detector = monitor_detections(model_id="faces", data_engine=engine, **telemetry.providers)(sd.HaarFaceDetector())
    scenes = sd.sample_scenes()
    for name in ("coins", "camera", "astronaut", "rocket"):
        for copy in range(3):  # new prediction ids each call: different sampling draws
            detector(scenes[name][copy:, copy:])
    bodies = telemetry.bodies()
    send(client, bodies)
    flagged = {i["prediction_id"]: i for i in all_items(client, ds["id"])}
    stored = {p.name for p in (tmp_path / "flagged").iterdir()}
    assert flagged, "nothing flagged: the case proves nothing"
    for body in bodies:
        uri = body.get("image", {}).get("uri")
        if body["prediction_id"] in flagged:
            assert uri is not None and uri.startswith("file://") and Path(uri.removeprefix("file://")).name in stored
            assert flagged[body["prediction_id"]]["image"]["uri"] == uri  # the item's URI opens
        else:
            assert uri is None
    assert len(stored) == len(flagged)


def test_flags_are_counted_by_strategy_in_objdet_review_flagged(tmp_path: Path) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from detwatch.app import create_app
    from detwatch.config import Settings

    # The app's instruments come from the provider it is given: read in this process.
    reader = InMemoryMetricReader()
    app = create_app(Settings(data_dir=tmp_path), meter_provider=MeterProvider(metric_readers=[reader]))
    client = app.test_client()
    ds = client.post("/v1/datasets", json={"name": "d"}).get_json()["id"]
    config = {
        "low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 1.0},
        "edge_cases": {"enabled": True, "conditions": ["no_detections"]},
    }
    answer = client.put("/v1/models/m/data-engine", json={"config": config, "target_dataset_id": ds})
    assert answer.status_code == 200
    box = [1, 1, 50, 50]
    at = "2024-02-01T12:00:00Z"
    events: list[dict[str, Any]] = [
        {"prediction_id": f"e{i}", "time": at, "model_id": "m", "detections": []} for i in range(3)
    ]
    events += [
        {"prediction_id": f"w{i}", "time": at, "model_id": "m",
         "detections": [{"class": "car", "confidence": 0.2, "box": box}]}
        for i in range(2)
    ]  # fmt: skip
    events += [
        {"prediction_id": "ok", "time": at, "model_id": "m",
         "detections": [{"class": "car", "confidence": 0.9, "box": box}]}
    ]  # fmt: skip
    assert client.post("/v1/predictions", json={"predictions": events}).status_code == 200
    body = {"type": "wrong_label", "prediction_id": "ok", "detection_index": 0, "corrected_class": "bus"}
    assert client.post("/v1/feedback", json=body).status_code == 201
    unit, counts = sums_by(reader, "objdet.review.flagged", "objdet.sampling.strategy")
    assert unit == "{image}"
    assert sorted(counts.items()) == [("feedback:wrong_label", 1), ("low_confidence", 2), ("no_detections", 3)]


def test_unusual_size_learns_the_usual_range_from_the_models_own_aggregates(client: FlaskClient) -> None:
    ds = dataset(client)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    # 300 cars of about 1 % of the image (bin [0.00562, 0.01) to [0.01, 0.0178)): what this model sees.
    usual = []
    for i in range(300):
        side = 46.0 + (i % 10)  # 46..55 px squares: 0.0069 .. 0.0098 of 640x480
        usual.append({**event(f"u{i}", [det("car", 0.9, [10.0, 10.0, 10.0 + side, 10.0 + side])]), "time": stamp})
    send(client, usual)
    configure(
        client,
        ds["id"],
        {"edge_cases": {"enabled": True, "conditions": ["unusual_size"],
                        "unusual_size": {"quantile": 0.001, "min_samples": 200}}},
    )  # fmt: skip
    served = ok(client.get("/v1/models/vehicles/data-engine"))["policy"]["edge_cases"]["unusual_size"]["learned"]
    areas = [(46.0 + k) ** 2 / (W * H) for k in range(10)]
    edges = area_edges_reference()
    low = max(e for e in edges if e <= min(areas))
    high = min(e for e in edges if e > max(areas))
    assert served == {"car": [pytest.approx(low), pytest.approx(high)]}
    # 30 x 30 px is 0.0029: inside the absolute bounds (0.0001 .. 0.8) but far below this model's cars.
    small = [10.0, 10.0, 40.0, 40.0]
    send(client, [{**event("small-car", [det("car", 0.9, small)]), "time": stamp},
                  {**event("small-truck", [det("truck", 0.9, small)]), "time": stamp}])  # fmt: skip
    items = {i["prediction_id"]: i["reasons"] for i in all_items(client, ds["id"])}
    assert items == {"small-car": ["unusual_size"]}


def test_near_full_frame_boxes_are_flagged_even_when_the_model_has_learned_them(client: FlaskClient) -> None:
    """50 of 1,500 images hold a box of 97 % of a 640x480 frame: a 3 % habit, learned as usual, still flagged."""
    ds = dataset(client)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    side = 0.97**0.5
    full = [0.0, 0.0, W * side, H * side]  # 0.97 of the frame
    assert (full[2] * full[3]) / (W * H) == pytest.approx(0.97)

    def stream(prefix: str) -> tuple[list[dict[str, Any]], set[str]]:
        events, huge = [], set()
        for i in range(1500):
            pid = f"{prefix}{i}"
            box = full if i % 30 == 0 else [100.0, 100.0, 200.0 + i % 20, 180.0]
            if i % 30 == 0:
                huge.add(pid)
            events.append({**event(pid, [det("car", 0.9, box)]), "time": stamp})
        return events, huge

    history, _ = stream("h")
    send(client, history)  # the model's history: what it learns its usual sizes from
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["unusual_size"]}})
    learned = ok(client.get("/v1/models/vehicles/data-engine"))["policy"]["edge_cases"]["unusual_size"]["learned"]
    assert learned["car"][1] is None  # the habit made the learned range open-ended: it cannot flag them
    current, huge = stream("c")
    assert len(huge) == 50
    send(client, current)
    flagged = {i["prediction_id"] for i in all_items(client, ds["id"]) if i["prediction_id"].startswith("c")}
    assert flagged == huge


def area_edges_reference() -> list[float]:
    """Quarter decades of relative area from 1e-5 to 1 (the aggregates' bins, from their definition)."""
    return [10.0 ** (-5 + i / 4) for i in range(21)]


def test_reviewed_items_expire_once_their_review_lives_on_and_waiting_ones_never(
    app: Flask, client: FlaskClient
) -> None:
    from detwatch.api.review import store

    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event(f"x{i}", []) for i in range(4)])
    by_id = {i["prediction_id"]: i for i in all_items(client, ds["id"])}
    x0, x1, x2 = by_id["x0"], by_id["x1"], by_id["x2"]
    base = f"/v1/datasets/{ds['id']}/items"
    boxes = [{"class": "car", "box": [5, 5, 9, 9]}, {"class": "bus", "box": [1, 1, 4, 4]}]  # not in sorted order
    ok(client.post(f"{base}/{x0['id']}/label", json={"annotations": boxes}))
    ok(client.post(f"{base}/{x1['id']}/reject", json={}))
    version = ok(client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v2"}), 201)
    ok(client.post(f"{base}/{x2['id']}/label", json={"annotations": boxes}))  # labelled after the version
    with app.app_context():
        deleted = store().expire_reviewed(time.time_ns())
    assert deleted == 2  # x0 (in the version with this label) and x1 (rejected)
    left = {i["prediction_id"]: i["status"] for i in all_items(client, ds["id"], "all")}
    assert left == {"x2": "labeled", "x3": "needs_review"}
    # The version built on the expired item's snapshot still holds it.
    child = ok(
        client.post(f"/v1/datasets/{ds['id']}/versions", json={"name": "v3", "parent_version_id": version["id"]}), 201
    )
    assert child["item_count"] == 2 and child["class_counts"] == {"bus": 2, "car": 2}


def test_the_retention_schedule_expires_reviewed_items_too(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    from detwatch.api import get_storage
    from detwatch.jobs.retention import RetentionScheduler

    ds = dataset(client)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    send(client, [event(f"r{i}", []) for i in range(3)])
    by_id = {i["prediction_id"]: i for i in all_items(client, ds["id"])}
    ok(client.post(f"/v1/datasets/{ds['id']}/items/{by_id['r0']['id']}/reject", json={}))
    with app.app_context():
        scheduler = RetentionScheduler(get_storage(), days=0, interval_s=3600, lock_path=tmp_path / "lock")
        scheduler.run_once()
    left = {i["prediction_id"]: i["status"] for i in all_items(client, ds["id"], "all")}
    assert left == {"r1": "needs_review", "r2": "needs_review"}


def test_a_callback_before_authentication_gets_no_database_details(tmp_path: Path) -> None:
    """With the database down, an unauthenticated status callback got a 503 naming the database's host and port."""
    from detwatch.app import create_app
    from detwatch.config import Settings

    down = "postgresql://detwatch@127.0.0.1:9/detwatch?connect_timeout=1"  # nothing listens on port 9
    app = create_app(Settings(data_dir=tmp_path, database_url=down, api_token="s3cret"))
    client = app.test_client()
    anonymous = client.post("/v1/training-jobs/j-1/status", json={"status": "running"})
    assert anonymous.status_code == 503 and anonymous.headers["Retry-After"]
    assert "127.0.0.1" not in anonymous.get_data(as_text=True) and ":9" not in anonymous.get_data(as_text=True)
    operator = client.post(
        "/v1/training-jobs/j-1/status", json={"status": "running"}, headers={"Authorization": "Bearer s3cret"}
    )
    assert operator.status_code == 503 and "127.0.0.1" in operator.get_data(as_text=True)  # the operator is told


def test_a_job_without_a_trainer_says_it_will_wait_and_the_service_logs_it(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a trainer a job waited in queued forever, and neither answer nor log said so."""
    ds = dataset(client)
    body = {"name": "v2", "dataset_id": ds["id"], "version_id": ds["version"]["id"]}
    with caplog.at_level("WARNING", logger="detwatch.api.review"):
        created = ok(client.post("/v1/training-jobs", json=body), 201)
    assert created["status"] == "queued" and created["trainer"] == "none"
    assert "DETWATCH_TRAINER_URL" in created["warning"] and "DETWATCH_TRAINER_COMMAND" in created["warning"]
    assert [r.getMessage() for r in caplog.records] == [f"training job {created['id']} (v2): {created['warning']}"]
    read = ok(client.get(f"/v1/training-jobs/{created['id']}"))
    assert read["trainer"] == "none" and read["warning"] == created["warning"]
    # Configured later (a restart with new settings), the trainer takes the waiting job without
    # a request to trigger it (the dispatcher looks every few seconds), and the warning goes.
    config = client.application.config  # jobs are handed off only with a public URL
    config["DETWATCH_SETTINGS"] = dataclasses.replace(
        config["DETWATCH_SETTINGS"], public_url="http://127.0.0.1:8000", trainer=TrainerSettings(command=("true",))
    )
    deadline = time.monotonic() + 10
    while not (read := ok(client.get(f"/v1/training-jobs/{created['id']}")))["handed_off"]:
        assert time.monotonic() < deadline, read
        time.sleep(0.05)
    assert read["trainer"] == "command true" and read["warning"] is None


def test_a_policy_configured_after_predictions_and_feedback_flags_the_retained_ones(client: FlaskClient) -> None:
    """The user guide posts feedback before configure_data_engine: the review queue stayed empty."""
    ds = dataset(client)
    now = time.time()

    def at(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - seconds_ago))

    fine = det("car", 0.9, NORMAL)
    send(
        client,
        [
            {**event("empty", []), "time": at(60)},
            {**event("weak", [det("car", 0.2, NORMAL)]), "time": at(120)},
            {**event("told-wrong", [fine]), "time": at(180)},
            {**event("told-right", [fine]), "time": at(240)},
            {**event("quiet", [fine]), "time": at(300)},
            {**event("old-empty", []), "time": at(2 * 86400)},  # before the default 24 h
            {**event("old-told-wrong", [fine]), "time": at(2 * 86400)},  # but its feedback is recent
        ],
    )
    for pid, kind in (("told-wrong", "wrong_label"), ("told-right", "correct"), ("old-told-wrong", "false_positive")):
        feedback = {"type": kind, "prediction_id": pid, "detection_index": 0}
        if kind == "wrong_label":
            feedback["corrected_class"] = "bus"
        ok(client.post("/v1/feedback", json=feedback), 201)
    policy = {
        "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 1.0},
        "edge_cases": {"enabled": True, "conditions": ["no_detections"]},
    }
    answer = configure(client, ds["id"], policy)
    assert answer["config"]["low_confidence"]["threshold"] == 0.6  # the guide's shape is kept
    expected = {
        "empty": ["no_detections"],
        "weak": ["low_confidence"],
        "told-wrong": ["feedback:wrong_label"],
        "old-told-wrong": ["feedback:false_positive"],
    }
    assert answer["backfill"]["examined"] == 6 and answer["backfill"]["flagged"] == len(expected)
    assert answer["backfill"]["since"] < at(86400 - 5) and answer["backfill"]["until"] >= at(5)
    assert {i["prediction_id"]: i["reasons"] for i in all_items(client, ds["id"])} == expected
    # Applying it again flags nothing twice; a longer window reaches the older prediction.
    body = {"config": policy, "target_dataset_id": ds["id"]}
    assert ok(client.put("/v1/models/vehicles/data-engine", json=body))["backfill"]["flagged"] == 0
    wider = ok(client.put("/v1/models/vehicles/data-engine", json={**body, "since": "3d"}))["backfill"]
    assert wider["examined"] == 7 and wider["flagged"] == 1
    none = ok(client.put("/v1/models/vehicles/data-engine", json={**body, "since": "none"}))["backfill"]
    assert none["since"] is None and none["examined"] == 0 and none["flagged"] == 0
    assert len(all_items(client, ds["id"])) == len(expected) + 1
    for bad in ("yesterday", "24x", 24, "2024-02-01T12:00:00"):
        response = client.put("/v1/models/vehicles/data-engine", json={**body, "since": bad})
        assert response.status_code == 400 and error_of(response)["field"] == "since", bad


def test_applying_a_policy_is_bounded_newest_first_and_says_where_it_stopped(app: Flask, client: FlaskClient) -> None:
    from detwatch.api.review import store

    ds = dataset(client)
    now = int(time.time())
    events = [event(f"e{i}", []) for i in range(7)]
    for i, e in enumerate(events):
        del e["time"]
        e["time_unix_nano"] = (now - 60 * (i + 1)) * 10**9
    send(client, events)
    configure(client, ds["id"], {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}})
    with app.app_context():
        engine = store()
        # Start from a clean queue, then apply it again in pages of 2, at most 5 predictions.
        engine._run(lambda tx: tx.execute("DELETE FROM flagged_items"), write=True)
        since, until = (now - 3600) * 10**9, now * 10**9
        cut = engine.backfill("vehicles", since_unix_nano=since, until_unix_nano=until, limit=5, chunk=2)
        assert (cut.examined, cut.flagged, cut.complete) == (5, 5, False)
        assert cut.since_unix_nano == (now - 60 * 5) * 10**9  # the oldest evaluated: e4
        assert {i["prediction_id"] for i in all_items(client, ds["id"])} == {f"e{i}" for i in range(5)}
        rest = engine.backfill("vehicles", since_unix_nano=since, until_unix_nano=until, chunk=2)
        assert (rest.examined, rest.flagged, rest.complete, rest.since_unix_nano) == (7, 2, True, since)
    assert len(all_items(client, ds["id"])) == 7
