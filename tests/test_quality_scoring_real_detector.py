"""The companion's scores of the demo's real detector equal ``pycocotools.COCOeval``, on SQLite and PostgreSQL.

The OpenCV Haar face detector of the demo runs on face mosaics whose face boxes are
known exactly (:mod:`_face_mosaics`); its predictions go through the companion as the
product sends them: ingested, flagged by the model's policy (every prediction, with
probability 1, so that production weights are all 1 and the estimates are plain
COCO figures), labelled through the review routes with the known boxes. The quality
route's per-class and overall precision, recall, AP50 and AP, and the TP/FP/FN of the
companion's scoring of the stored labelled items, must be COCOeval's on the same boxes,
computed here from the detector's raw output, not from anything the companion stored.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from _face_mosaics import SIDE, Detected, detect, face_mosaics
from detwatch.quality import Detection, GroundTruth, LabelledImage, labelled_images, match_images, score
from test_quality_api import ok
from test_quality_scoring import coco_reference

IMAGES = 60
EVERY_PREDICTION: dict[str, Any] = {"random_sample": {"enabled": True, "rate": 1.0}}
NANO = 1_000_000_000


@pytest.fixture(scope="module")
def detected() -> list[Detected]:
    return detect(face_mosaics(seed=19, count=IMAGES))


def _image(index: int, found: Detected) -> LabelledImage:
    return LabelledImage(
        f"m{index:03d}",
        tuple(Detection(d["class"], d["confidence"], tuple(d["box"])) for d in found.detections),
        tuple(GroundTruth("face", box) for box in found.faces),
    )


def _send(client: FlaskClient, detected: list[Detected]) -> float:
    """Register, ingest every prediction, label every flagged item with the known boxes; the first time."""
    ok(client.post("/v1/models", json={"model_id": "faces"}), 201)
    dataset_id = ok(client.post("/v1/datasets", json={"name": "faces"}), 201)["id"]
    body = {"config": EVERY_PREDICTION, "target_dataset_id": dataset_id}
    ok(client.put("/v1/models/faces/data-engine", json=body))
    now = time.time() - 3600
    events = [
        {
            "prediction_id": f"m{i:03d}",
            "time": datetime.fromtimestamp(now - i, UTC).isoformat().replace("+00:00", "Z"),
            "model_id": "faces",
            "model_version": "haar-n3",
            "image": {"key": f"mosaic-{i}.png", "width": SIDE, "height": SIDE},
            "detections": found.detections,
        }
        for i, found in enumerate(detected)
    ]
    assert ok(client.post("/v1/predictions", json={"predictions": events}))["accepted"] == IMAGES
    items = ok(client.get(f"/v1/datasets/{dataset_id}/items?status=all&limit=1000"))["items"]
    assert len(items) == IMAGES  # the policy took every prediction
    for item in items:
        faces = detected[int(item["prediction_id"][1:])].faces
        annotations = [{"class": "face", "box": list(box)} for box in faces]
        ok(client.post(f"/v1/datasets/{dataset_id}/items/{item['id']}/label", json={"annotations": annotations}))
    return now - IMAGES


def test_the_companion_scores_the_real_detector_as_cocoeval_does(
    app: Flask, client: FlaskClient, detected: list[Detected]
) -> None:
    since = _send(client, detected)
    reference = coco_reference([_image(i, found) for i, found in enumerate(detected)])
    # The detector is neither perfect nor useless on these images: the figures are worth checking.
    assert 0 < reference["face"]["dets"] - reference["face"]["tp"] < reference["face"]["tp"]
    assert 0 < reference["face"]["gts"] - reference["face"]["tp"] < reference["face"]["tp"]

    report = ok(client.get("/v1/models/faces/quality?period=7d"))
    assert report["status"] == "ok" and report["n_images"] == IMAGES and set(report["classes"]) == {"face"}
    storage: Any = app.extensions["detwatch.storage"]
    records = storage.labelled_items("faces", since_unix_nano=int(since * NANO), until_unix_nano=time.time_ns())
    sampled = labelled_images(records).sampled
    assert len(sampled) == IMAGES and all(p == 1.0 for _, p in sampled)
    scores = score(match_images([image for image, _ in sampled]))

    for name, ref in reference.items():
        answered = report["overall"] if name == "*" else report["classes"][name]
        stored = scores.overall if name == "*" else scores.classes[name]
        assert stored.true_positives == ref["tp"], name
        assert stored.false_positives == ref["dets"] - ref["tp"], name
        assert stored.false_negatives == ref["gts"] - ref["tp"], name
        expected = {
            "precision": ref["tp"] / ref["dets"],
            "recall": ref["tp"] / ref["gts"],
            "ap50": ref["ap50"],
            "ap": ref["ap"],
        }
        for metric, value in expected.items():
            assert not math.isnan(value)
            assert answered[metric]["estimate"] == pytest.approx(value, rel=0, abs=1e-9), (name, metric)
            assert getattr(stored, metric) == pytest.approx(value, rel=0, abs=1e-9), (name, metric)
            low, high = answered[metric]["ci"]
            assert low <= answered[metric]["estimate"] <= high, (name, metric)
