"""A training job's gate, on SQLite and PostgreSQL: the new version is registered only if not worse than its base.

The base model ``cams`` (v1) predicted 45 images; all are flagged and labelled. A
job with ``gate={"metric": ..., "max_drop": ...}`` receives its candidate's
detections per image key (with the job's own token) and, when the trainer reports
success, is judged on the paired images: the figures are checked against counts
made here by hand, and the job is ``succeeded`` (version registered) or ``gated``
(not registered). The bundled local trainer shows the same end to end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from flask.testing import FlaskClient

import detwatch
from detwatch.contract.shapes import TrainingGate, TrainingJob
from detwatch.demo.loop import embedded_companion
from detwatch.quality import GroundTruth, PairedImage, compare_versions, judge_training_gate
from detwatch.quality._records import detections_of
from detwatch.storage import open_storage
from test_quality_api import detections, event, label_everything, ok, truth

EVERYTHING: dict[str, Any] = {"random_sample": {"enabled": True, "rate": 1.0}}
IMAGES = 45


@pytest.fixture
def storage(database_url: str, client: FlaskClient) -> Iterator[Any]:
    """A second handle on the app's database (the app migrated it): the job's token is only there."""
    opened = open_storage(database_url)
    yield opened
    opened.close()


def setup_base(client: FlaskClient) -> tuple[str, str]:
    """``cams`` v1 on 45 images, all flagged and labelled; a dataset version of them. (dataset, version) ids."""
    ok(client.post("/v1/models", json={"model_id": "cams", "version": "v1"}), 201)
    dataset_id: str = ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
    ok(client.put("/v1/models/cams/data-engine", json={"config": EVERYTHING, "target_dataset_id": dataset_id}))
    now = time.time() - 3600
    ok(client.post("/v1/predictions", json={"predictions": [event(i, now - i) for i in range(IMAGES)]}))
    assert len(label_everything(client, dataset_id)) == IMAGES
    version = ok(client.post(f"/v1/datasets/{dataset_id}/versions", json={"name": "labelled"}), 201)
    return dataset_id, version["id"]


def create_job(client: FlaskClient, dataset_id: str, version_id: str, gate: dict[str, Any], **more: Any) -> Any:
    body = {"name": "ft", "dataset_id": dataset_id, "version_id": version_id, "base_model_id": "cams", "gate": gate}
    return client.post("/v1/training-jobs", json={**body, **more})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def without(name: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in found if d["class"] != name]


def post_candidate(client: FlaskClient, job_id: str, token: str, images: dict[str, list[dict[str, Any]]]) -> Any:
    body = {"predictions": [{"image_key": key, "detections": found} for key, found in images.items()]}
    return ok(client.post(f"/v1/training-jobs/{job_id}/predictions", json=body, headers=bearer(token)))


def report(client: FlaskClient, job_id: str, token: str, version: str) -> Any:
    body = {"status": "succeeded", "model_version": version}
    return client.post(f"/v1/training-jobs/{job_id}/status", json=body, headers=bearer(token))


def versions_of(client: FlaskClient) -> list[str]:
    return list(ok(client.get("/v1/models/cams"))["versions"])


def gated_job(client: FlaskClient, storage: Any, gate: dict[str, Any]) -> tuple[str, str]:
    dataset_id, version_id = setup_base(client)
    job = ok(create_job(client, dataset_id, version_id, gate), 201)
    assert job["gate"] == gate and job["gate_result"] is None
    return job["id"], storage.get_training_job(job["id"]).callback_token


def test_a_candidate_as_good_as_its_base_is_registered_with_the_gate_result(client: FlaskClient, storage: Any) -> None:
    job_id, token = gated_job(client, storage, {"metric": "ap50", "max_drop": 0.02})
    stored = post_candidate(client, job_id, token, {f"{i}.jpg": detections(i) for i in range(IMAGES)})
    assert stored == {"accepted": IMAGES, "rejected": []}
    job = ok(report(client, job_id, token, "ft-1"))
    msgspec.convert(job, TrainingJob)
    assert job["status"] == "succeeded" and job["model_version"] == "ft-1"
    result = job["gate_result"]
    assert result["passed"] and result["reason"] == "not_worse"
    assert result["n_images"] == IMAGES and result["labelled_images"] == IMAGES
    assert result["difference"] == 0.0 and result["base"] == result["candidate"]
    assert "ft-1" in versions_of(client)


def test_a_candidate_that_drops_a_class_is_gated_and_not_registered(client: FlaskClient, storage: Any) -> None:
    job_id, token = gated_job(client, storage, {"metric": "recall", "max_drop": 0.05})
    candidate = {f"{i}.jpg": without("car", detections(i)) for i in range(IMAGES)}
    post_candidate(client, job_id, token, candidate)
    job = ok(report(client, job_id, token, "ft-bad"))
    assert job["status"] == "gated" and job["model_version"] is None
    result = job["gate_result"]
    assert not result["passed"] and result["reason"] == "worse" and result["n_images"] == IMAGES
    # Recall at IoU 0.5 counted by hand: the boxes are disjoint, so a detection is right
    # exactly when the reviewer drew the same class at the same box.
    total = sum(len(truth(i)) for i in range(IMAGES))

    def found(side: dict[int, list[dict[str, Any]]]) -> int:
        return sum(
            1
            for i in range(IMAGES)
            for g in truth(i)
            if any(d["class"] == g["class"] and d["box"] == g["box"] for d in side[i])
        )

    base_recall = found({i: detections(i) for i in range(IMAGES)}) / total
    candidate_recall = found({i: without("car", detections(i)) for i in range(IMAGES)}) / total
    assert result["base"] == pytest.approx(base_recall)
    assert result["candidate"] == pytest.approx(candidate_recall)
    assert result["difference"] == pytest.approx(candidate_recall - base_recall)
    assert result["difference"] < -0.05
    assert "ft-bad" not in versions_of(client)
    assert job["history"][-1]["status"] == "gated" and "gate:" in job["history"][-1]["message"]
    # The trainer retrying its success changes nothing; it cannot report "gated" itself.
    again = ok(report(client, job_id, token, "ft-bad"))
    assert again["status"] == "gated" and again["history"] == job["history"]
    refused = client.post(f"/v1/training-jobs/{job_id}/status", json={"status": "gated"}, headers=bearer(token))
    assert ok(refused, 400)["error"]["field"] == "status"


def test_the_verdict_is_compare_versions_on_the_paired_images(client: FlaskClient, storage: Any) -> None:
    job_id, token = gated_job(client, storage, {"metric": "ap50", "max_drop": 0.1})
    candidate = {f"{i}.jpg": without("person", detections(i)) for i in range(IMAGES)}
    post_candidate(client, job_id, token, candidate)
    result = ok(report(client, job_id, token, "ft-2"))["gate_result"]
    pairs = [
        PairedImage(
            f"{i}.jpg",
            tuple(GroundTruth(g["class"], tuple(g["box"])) for g in truth(i)),
            detections_of(detections(i)),
            detections_of(candidate[f"{i}.jpg"]),
        )
        for i in sorted(range(IMAGES), key=lambda i: f"{i}.jpg")
    ]
    ap50 = compare_versions(pairs).overall.ap50
    assert (result["base"], result["candidate"]) == pytest.approx((ap50.a, ap50.b))
    assert result["ci"] == pytest.approx(list(ap50.ci))
    assert result["passed"] == (ap50.difference >= -0.1)


def test_too_few_paired_images_gate_the_job_as_insufficient_data(client: FlaskClient, storage: Any) -> None:
    job_id, token = gated_job(client, storage, {"metric": "ap50", "max_drop": 0.5})
    stored = post_candidate(
        client, job_id, token, {**{f"{i}.jpg": detections(i) for i in range(10)}, "elsewhere.jpg": []}
    )
    assert stored["accepted"] == 10
    assert stored["rejected"] == [
        {"index": 10, "field": "predictions[10].image_key", "error": stored["rejected"][0]["error"]}
    ]
    job = ok(report(client, job_id, token, "ft-3"))
    assert job["status"] == "gated"
    assert job["gate_result"]["reason"] == "insufficient_data" and job["gate_result"]["n_images"] == 10
    assert "ft-3" not in versions_of(client)


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ({"metric": "f1", "max_drop": 0.02}, "gate.metric"),
        ({"metric": "ap50", "max_drop": 1.5}, "gate.max_drop"),
        ({"metric": "ap50", "max_drop": -0.1}, "gate.max_drop"),
        ({"metric": "ap50"}, "gate.max_drop"),
        ({"metric": "ap50", "max_drop": 0.1, "min": 3}, "gate.min"),
        ("ap50", "gate"),
    ],
)
def test_a_bad_gate_is_refused_naming_its_field(client: FlaskClient, gate: Any, field: str) -> None:
    dataset_id, version_id = setup_base(client)
    assert ok(create_job(client, dataset_id, version_id, gate), 400)["error"]["field"] == field


def test_a_gate_without_a_base_model_is_refused(client: FlaskClient) -> None:
    dataset_id, version_id = setup_base(client)
    answer = create_job(client, dataset_id, version_id, {"metric": "ap", "max_drop": 0.0}, base_model_id=None)
    assert ok(answer, 400)["error"]["field"] == "gate"


def test_a_job_without_a_gate_takes_no_candidate_predictions(client: FlaskClient, storage: Any) -> None:
    dataset_id, version_id = setup_base(client)
    body = {"name": "ft", "dataset_id": dataset_id, "version_id": version_id, "base_model_id": "cams"}
    job = ok(client.post("/v1/training-jobs", json=body), 201)
    assert job["gate"] is None
    token = storage.get_training_job(job["id"]).callback_token
    answer = client.post(
        f"/v1/training-jobs/{job['id']}/predictions",
        json={"predictions": [{"image_key": "1.jpg", "detections": []}]},
        headers=bearer(token),
    )
    assert answer.status_code == 409
    assert ok(report(client, job["id"], token, "ft-4"))["status"] == "succeeded"


def test_candidate_predictions_need_the_jobs_token(tmp_path: Path, database_url: str) -> None:
    from detwatch.app import create_app, shutdown
    from detwatch.config import Settings

    app = create_app(Settings(data_dir=tmp_path, database_url=database_url, api_token="api-secret"))
    try:
        client = app.test_client()
        admin = bearer("api-secret")
        first = ok(client.post("/v1/datasets", json={"name": "d"}, headers=admin), 201)
        gate = {"metric": "ap50", "max_drop": 0.02}
        body = {"name": "ft", "dataset_id": first["id"], "version_id": first["version"]["id"], "base_model_id": "m"}
        job = ok(client.post("/v1/training-jobs", json={**body, "gate": gate}, headers=admin), 201)
        url = f"/v1/training-jobs/{job['id']}/predictions"
        post = {"predictions": [{"image_key": "1.jpg", "detections": []}]}
        assert client.post(url, json=post).status_code == 401
        assert client.post(url, json=post, headers=bearer("not-the-token")).status_code == 401
        opened = open_storage(database_url)
        try:
            record = opened.get_training_job(job["id"])
            assert record is not None
            token = record.callback_token
        finally:
            opened.close()
        # The job's own token is accepted (the key is no labelled image of the base: rejected, not refused).
        assert ok(client.post(url, json=post, headers=bearer(token)))["rejected"][0]["index"] == 0
        other = ok(client.post("/v1/training-jobs", json={**body, "gate": gate}, headers=admin), 201)
        other_url = f"/v1/training-jobs/{other['id']}/predictions"
        assert client.post(other_url, json=post, headers=bearer(token)).status_code == 401
        # A finished job's token posts nothing more.
        failed = {"status": "failed", "message": "out of memory"}
        ok(client.post(f"/v1/training-jobs/{job['id']}/status", json=failed, headers=bearer(token)))
        assert client.post(url, json=post, headers=bearer(token)).status_code == 403
    finally:
        shutdown(app)


def test_the_pure_judgement_names_a_bad_rule() -> None:
    with pytest.raises(ValueError, match="metric"):
        judge_training_gate([], metric="f1", max_drop=0.1)
    with pytest.raises(ValueError, match="max_drop"):
        judge_training_gate([], metric="ap", max_drop=2.0)


def test_the_predictions_index_serves_a_versions_lookup_by_image_key(tmp_path: Path) -> None:
    """Comparing versions reads a version's predictions by image key: not a scan of the model's predictions."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'plan.db'}"
    opened = open_storage(url)
    opened.migrate()
    opened.close()
    with sqlite3.connect(tmp_path / "plan.db") as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT image_key, time_unix_nano, prediction_id, detections FROM predictions "
            "WHERE model_id = ? AND model_version = ? AND image_key IN (?, ?)",
            ("m", "v1", "a", "b"),
        ).fetchall()
    assert any("predictions_version_image" in str(row[-1]) for row in plan), plan


def _finished(client: detwatch.Client, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get_training_job(job_id)
        if job["status"] in ("succeeded", "failed", "gated"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_the_local_trainer_posts_its_candidate_and_the_gate_stops_a_worse_one(
    tmp_path: Path, database_url: str
) -> None:
    with embedded_companion(tmp_path / "companion", database_url) as url:
        client = detwatch.Client(base_url=url)
        model = client.register_model(model_id="cams", version="v1")
        dataset = client.create_dataset(name="review")
        client.configure_data_engine(model_id=model["id"], config=EVERYTHING, target_dataset_id=dataset["id"])
        now = time.time() - 3600
        events = {"predictions": [event(i, now - i) for i in range(IMAGES)]}
        assert requests.post(f"{url}/v1/predictions", json=events, timeout=30).json()["accepted"] == IMAGES
        for item in client.claim_items(dataset_id=dataset["id"], reviewer="ann", limit=100):
            i = int(item["prediction_id"][1:])
            client.label_item(dataset_id=dataset["id"], item_id=item["id"], annotations=truth(i), reviewer="ann")
        version = client.create_dataset_version(
            dataset_id=dataset["id"], parent_version_id=dataset["version"]["id"], name="labelled"
        )
        gate: TrainingGate = {"metric": "ap50", "max_drop": 0.02}

        def job(name: str, **options: Any) -> Any:
            created = client.create_training_job(
                name=name, dataset_id=dataset["id"], version_id=version["id"], base_model_id=model["id"], gate=gate,
                options={"model_version": name, **options},
            )  # fmt: skip
            return _finished(client, created["id"])

        worse = job("ft-worse", drop_classes=["car"])
        assert worse["status"] == "gated" and worse["gate_result"]["reason"] == "worse"
        assert worse["gate_result"]["n_images"] == IMAGES
        # The labelled boxes at 0.9 against the base's own detections: never worse.
        better = job("ft-good")
        assert better["status"] == "succeeded" and better["gate_result"]["passed"]
        assert better["gate_result"]["difference"] >= 0
        versions = client.get_model("cams")["versions"]
        assert "ft-good" in versions and "ft-worse" not in versions
