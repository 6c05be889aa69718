"""``GET /v1/models/{model_id}/quality`` through the real app, on SQLite and PostgreSQL; the client and CLI.

Predictions are flagged by the model's policy at ingest (each item keeping the chance
it was picked), labelled through the review routes, and the route's answer is the
quality package's estimate of exactly those labelled images and weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

import detwatch
from _service import Companion, companion_on
from detwatch.cli import main as cli
from detwatch.contract.shapes import QualityReport
from detwatch.quality import Detection, GroundTruth, LabelledImage, estimate_quality, estimate_sample
from detwatch_instrumentation.flagging import FlaggingPolicy

CONFIG: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 0.6},
    "edge_cases": {"enabled": True, "conditions": ["no_detections"], "sample_rate": 1.0},
    "random_sample": {"enabled": True, "rate": 0.3},
}
POLICY = FlaggingPolicy.from_config(CONFIG)
DAY_S = 86_400


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def box(k: int) -> list[float]:
    return [40.0 * k, 10.0, 40.0 * k + 30.0, 50.0]


def detections(i: int) -> list[dict[str, Any]]:
    """Image ``i``: a sure car (right), a weak person on odd images (wrong every third), none every seventh."""
    if i % 7 == 0:
        return []
    found = [{"class": "car", "confidence": 0.9, "box": box(0)}]
    if i % 2:
        found.append({"class": "person", "confidence": 0.3 + 0.01 * (i % 10), "box": box(1)})
    return found


def truth(i: int) -> list[dict[str, Any]]:
    """What a reviewer draws on image ``i``: the objects really there."""
    if i % 7 == 0:
        return [{"class": "person", "box": box(3)}]  # missed
    boxes = [{"class": "car", "box": box(0)}]
    if i % 2 and i % 3:
        boxes.append({"class": "person", "box": box(1)})
    return boxes


def event(i: int, at_s: float, version: str = "v1") -> dict[str, Any]:
    return {
        "prediction_id": f"p{i:04d}",
        "time": datetime.fromtimestamp(at_s, UTC).isoformat().replace("+00:00", "Z"),
        "model_id": "cams",
        "model_version": version,
        "image": {"key": f"{i}.jpg", "width": 640, "height": 480},
        "detections": detections(i),
    }


def image(i: int) -> LabelledImage:
    return LabelledImage(
        f"p{i:04d}",
        tuple(Detection(d["class"], d["confidence"], tuple(d["box"])) for d in detections(i)),
        tuple(GroundTruth(g["class"], tuple(g["box"])) for g in truth(i)),
    )


def label_everything(client: FlaskClient, dataset_id: str) -> list[dict[str, Any]]:
    items = ok(client.get(f"/v1/datasets/{dataset_id}/items?status=all&limit=1000"))["items"]
    for item in items:
        i = int(item["prediction_id"][1:])
        body = {"annotations": truth(i), "reviewer": "ann"}
        ok(client.post(f"/v1/datasets/{dataset_id}/items/{item['id']}/label", json=body))
    return list(items)


def setup(client: FlaskClient, n: int = 150) -> tuple[str, float]:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    dataset_id = ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
    ok(client.put("/v1/models/cams/data-engine", json={"config": CONFIG, "target_dataset_id": dataset_id}))
    now = time.time() - 3600
    events = [event(i, now - i) for i in range(n)]  # distinct times: the read's order is time order
    events += [event(1000 + i, now - i, "v2") for i in range(40)]
    events.append(event(2001, now - 30 * DAY_S))  # a month ago
    ok(client.post("/v1/predictions", json={"predictions": events}))
    return dataset_id, now


def test_the_route_answers_the_weighted_estimate_of_the_labelled_items(client: FlaskClient) -> None:
    dataset_id, _ = setup(client)
    # Feedback flags a prediction the policy did not pick: scored apart, unweighted.
    unpicked = next(
        i
        for i in range(150)
        if detections(i) and not POLICY.evaluate(f"p{i:04d}", [_det(d) for d in detections(i)], 640, 480)
    )
    body = {"type": "false_positive", "prediction_id": f"p{unpicked:04d}", "detection_index": 0}
    ok(client.post("/v1/feedback", json=body), 201)
    items = label_everything(client, dataset_id)
    v1 = sorted((int(x["prediction_id"][1:]) for x in items if x["model_version"] == "v1"), reverse=True)
    v1 = [i for i in v1 if i < 1000]  # oldest first: p0149 ... p0000 (the month-old p2001 is outside 7d)

    report = ok(client.get("/v1/models/cams/quality?period=7d&model_version=v1"))
    msgspec.convert(report, QualityReport)  # the declared shape
    sampled = [(image(i), POLICY.inclusion_probability([_det(d) for d in detections(i)], 640, 480)) for i in v1]
    sampled = [(im, p) for (im, p), i in zip(sampled, v1, strict=True) if i != unpicked]
    expected = estimate_quality(sampled, [image(unpicked)])
    assert report["model_id"] == "cams" and report["model_version"] == "v1" and report["period"] == "7d"
    assert report["n_images"] == len(sampled) > 30 and report["status"] == "ok"
    assert set(report["classes"]) == {"car", "person"}
    for name, metrics in [*expected.production.classes.items(), ("*", expected.production.overall)]:
        answered = report["overall"] if name == "*" else report["classes"][name]
        for metric in ("precision", "recall", "ap50", "ap"):
            want = getattr(metrics, metric)
            got = answered[metric]
            assert got["n_images"] == want.n_images
            assert got["estimate"] == pytest.approx(want.estimate), (name, metric)
            assert got["ci"] == pytest.approx(list(want.ci)), (name, metric)
    # Images with a weak person are over-sampled: weighting moves precision off the queue's own.
    queue_only = estimate_sample([im for im, _ in sampled], resamples=10).overall.precision.estimate
    assert abs(report["overall"]["precision"]["estimate"] - queue_only) > 0.01
    assert report["feedback_flagged"]["n_images"] == 1
    assert report["feedback_flagged"]["overall"]["recall"]["estimate"] == pytest.approx(
        expected.feedback_flagged.overall.recall.estimate
    )
    assert report["without_probability"] == 0
    # Label-free: every detection of the period, the calibration fitted on the same sample.
    estimated = report["estimated_precision"]
    assert set(estimated["classes"]) == {"car", "person"} and "recall" in estimated["recall_note"]
    car = estimated["classes"]["car"]
    assert car["estimate"] == 1.0 and car["expected_false_positives"] == 0.0  # the sure cars are all right
    assert car["detections"] == sum(1 for i in range(150) if detections(i))
    assert 0.0 < estimated["classes"]["person"]["estimate"] < 1.0


def _det(d: dict[str, Any]) -> Detection:
    return Detection(d["class"], d["confidence"], tuple(d["box"]))


def test_period_and_version_choose_the_items(client: FlaskClient) -> None:
    dataset_id, _ = setup(client, n=20)
    items = label_everything(client, dataset_id)
    picked = {x["prediction_id"] for x in items}
    all_week = ok(client.get("/v1/models/cams/quality?period=7d"))
    v2 = ok(client.get("/v1/models/cams/quality?period=last 1w&model_version=v2"))
    two_months = ok(client.get("/v1/models/cams/quality?period=60d"))
    v1_week = sum(1 for p in picked if int(p[1:]) < 20)
    v2_week = sum(1 for p in picked if 1000 <= int(p[1:]) < 2000)
    assert v2["n_images"] == v2_week and all_week["n_images"] == v1_week + v2_week
    assert two_months["n_images"] == all_week["n_images"] + ("p2001" in picked)
    assert v2["model_version"] == "v2" and all_week["model_version"] is None
    assert ok(client.get("/v1/models/cams/quality"))["period"] == "7d"  # the default


def test_few_labels_are_insufficient_and_undefined_figures_are_null(client: FlaskClient) -> None:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    report = ok(client.get("/v1/models/cams/quality?period=24h"))
    assert report["status"] == "insufficient_data" and report["n_images"] == 0
    assert report["classes"] == {} and report["overall"]["precision"] == {
        "estimate": None,
        "ci": [None, None],
        "n_images": 0,
    }
    msgspec.convert(report, QualityReport)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("period=7x", 400, "period"),
        ("period=", 400, "period"),
        ("period=0d", 400, "period"),
        ("model_version=", 400, "model_version"),
    ],
)
def test_bad_parameters_are_named(client: FlaskClient, query: str, status: int, field: str) -> None:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    response = client.get(f"/v1/models/cams/quality?{query}")
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field


def test_an_unknown_model_is_not_found(client: FlaskClient) -> None:
    response = client.get("/v1/models/nobody/quality")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "model_not_found"


def send_and_label(client: detwatch.Client, n: int = 150) -> None:
    """Through the client: ``cams`` and its review policy, ``n`` predictions of v1, every flagged item labelled."""
    client.register_model(model_id="cams")
    dataset = client.create_dataset(name="review")
    client.configure_data_engine(model_id="cams", config=CONFIG, target_dataset_id=dataset["id"])
    now = time.time() - 3600
    client.send_predictions([event(i, now - i) for i in range(n)])
    for item in client.get_flagged_items(dataset_id=dataset["id"], status="all", limit=1000):
        i = int(item["prediction_id"][1:])
        client.label_item(dataset_id=dataset["id"], item_id=item["id"], annotations=truth(i), reviewer="ann")


@pytest.fixture(scope="module")
def companion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    """The service under gunicorn (SQLite: the route is tested on both backends above)."""
    with companion_on("sqlite", request, tmp_path_factory.mktemp("quality")) as service:
        yield service


def test_the_client_and_the_cli_show_the_report(companion: Companion, tmp_path: Path) -> None:
    client = detwatch.Client(base_url=companion.url)
    send_and_label(client)
    report = client.get_model_quality(model_id="cams", period="7d")
    assert report["status"] == "ok" and report["n_images"] >= 30
    car = report["classes"]["car"]["precision"]
    assert car["estimate"] == 1.0 and car["ci"] == [1.0, 1.0]
    assert client.get_model_quality(model_id="cams", model_version="v9")["n_images"] == 0
    for prediction_id in ("p0003", "p0004", "p0005"):
        client.send_feedback(
            type="missed_object", prediction_id=prediction_id, corrected_class="person", corrected_box=[1, 1, 9, 9]
        )
    missed = client.get_model_quality(model_id="cams", period="7d")["label_free_recall"]
    assert missed["estimate"] is None and missed["missed_object_feedback"]["rate"] == pytest.approx(3 / 150)
    printed = CliRunner().invoke(cli, ["quality", "cams", "--period", "7d", "--url", companion.url])
    assert printed.exit_code == 0, printed.output
    assert "cams (all versions), 7d: ok" in printed.output
    assert "car" in printed.output and "person" in printed.output and "(overall)" in printed.output
    assert "estimated precision of all the period's detections" in printed.output
    assert "recall has no label-free estimate" in printed.output
    assert "missed_object   0.0200                3 posts / 150 predicted images" in printed.output
    as_json = CliRunner().invoke(cli, ["quality", "cams", "--json", "--url", companion.url])
    assert as_json.exit_code == 0 and '"n_images"' in as_json.output
    missing = CliRunner().invoke(cli, ["quality", "nobody", "--url", companion.url])
    assert missing.exit_code != 0 and "nobody" in missing.output
    assert report["overall"]["ap"]["estimate"] is not None
