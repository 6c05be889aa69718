"""Model quality per A/B arm, on SQLite and PostgreSQL: each arm's figures come from its own items only.

Arm ``a`` predicts as :func:`test_quality_api.detections`; arm ``b`` (other images,
same model and version) places every car 25 px off, so its cars are false positives
and its real cars missed. Both arms' predictions are flagged by the weighted policy
and labelled; the route's answer for ``ab_variant=a`` (``b``) is exactly
:func:`estimate_quality` of that arm's labelled images and weights, and the two arms
differ as built. Items keep their prediction's arm, so the figures survive the raw
predictions' expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient

import detwatch
from detwatch.cli import main as cli
from detwatch.contract.shapes import FlaggedItem, QualityReport
from detwatch.demo.loop import embedded_companion
from detwatch.quality import Detection, GroundTruth, LabelledImage, estimate_quality
from detwatch.storage import open_storage
from detwatch.storage._schema import LATEST_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_TABLE, Dialect, statements_for
from test_quality_api import CONFIG, POLICY, detections, label_everything, ok, truth
from test_storage import is_sqlite, raw_execute

PER_ARM = 80


def shifted(i: int) -> list[dict[str, Any]]:
    """Arm b on image ``i``: as arm a, but every car 25 px to the right (IoU 5/55 with the real one)."""
    return [
        {**d, "box": [d["box"][0] + 25.0, d["box"][1], d["box"][2] + 25.0, d["box"][3]]} if d["class"] == "car" else d
        for d in detections(i)
    ]


ARMS: dict[str, tuple[range, Callable[[int], list[dict[str, Any]]]]] = {
    "a": (range(PER_ARM), detections),
    "b": (range(PER_ARM, 2 * PER_ARM), shifted),
}


def arm_of(i: int) -> str:
    return "a" if i < PER_ARM else "b"


def arm_event(i: int, at_s: float) -> dict[str, Any]:
    arm = arm_of(i)
    return {
        "prediction_id": f"p{i:04d}",
        "time": datetime.fromtimestamp(at_s, UTC).isoformat().replace("+00:00", "Z"),
        "model_id": "cams",
        "model_version": "v1",
        "ab_variant": arm,
        "image": {"key": f"{i}.jpg", "width": 640, "height": 480},
        "detections": ARMS[arm][1](i),
    }


def labelled_image(i: int) -> tuple[LabelledImage, float]:
    found = tuple(Detection(d["class"], d["confidence"], tuple(d["box"])) for d in ARMS[arm_of(i)][1](i))
    image = LabelledImage(f"p{i:04d}", found, tuple(GroundTruth(g["class"], tuple(g["box"])) for g in truth(i)))
    return image, POLICY.inclusion_probability(list(found), 640, 480)


def setup(client: FlaskClient) -> list[int]:
    """Both arms' predictions, flagged by the weighted policy and labelled; the labelled images' numbers."""
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    dataset_id = ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
    ok(client.put("/v1/models/cams/data-engine", json={"config": CONFIG, "target_dataset_id": dataset_id}))
    now = time.time() - 3600
    events = [arm_event(i, now - i) for i in range(2 * PER_ARM)]  # distinct times: the read's order is time order
    assert ok(client.post("/v1/predictions", json={"predictions": events}))["accepted"] == 2 * PER_ARM
    return [int(item["prediction_id"][1:]) for item in label_everything(client, dataset_id)]


def test_each_arms_figures_are_the_estimate_of_its_own_items(client: FlaskClient) -> None:
    labelled = setup(client)
    reports = {arm: ok(client.get(f"/v1/models/cams/quality?period=7d&ab_variant={arm}")) for arm in ARMS}
    everything = ok(client.get("/v1/models/cams/quality?period=7d"))
    for arm, report in reports.items():
        msgspec.convert(report, QualityReport)
        mine = sorted((i for i in labelled if arm_of(i) == arm), reverse=True)  # oldest first
        assert report["ab_variant"] == arm and report["n_images"] == len(mine) >= 30
        expected = estimate_quality([labelled_image(i) for i in mine], [])
        for name, metrics in [*expected.production.classes.items(), ("*", expected.production.overall)]:
            answered = report["overall"] if name == "*" else report["classes"][name]
            for metric in ("precision", "recall", "ap50", "ap"):
                want = getattr(metrics, metric)
                assert answered[metric]["n_images"] == want.n_images, (arm, name, metric)
                assert answered[metric]["estimate"] == pytest.approx(want.estimate), (arm, name, metric)
                assert answered[metric]["ci"] == pytest.approx(list(want.ci)), (arm, name, metric)
        # The label-free estimate counts this arm's detections only.
        cars = sum(1 for i in ARMS[arm][0] for d in ARMS[arm][1](i) if d["class"] == "car")
        assert report["estimated_precision"]["classes"]["car"]["detections"] == cars
    assert everything["ab_variant"] is None
    assert everything["n_images"] == reports["a"]["n_images"] + reports["b"]["n_images"]
    # As built: arm a's cars are all right, arm b's all wrong.
    assert reports["a"]["classes"]["car"]["precision"]["estimate"] == 1.0
    assert reports["b"]["classes"]["car"]["precision"]["estimate"] == 0.0


def test_an_arm_outside_a_and_b_is_refused_naming_ab_variant(client: FlaskClient) -> None:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    for value in ("c", "", "A"):
        answer = client.get(f"/v1/models/cams/quality?ab_variant={value}")
        assert ok(answer, 400)["error"]["field"] == "ab_variant"


def test_the_review_api_shows_each_item_s_arm_and_inclusion_probability(client: FlaskClient) -> None:
    """What the quality figures rest on is visible per item: its arm and the chance the policy picked it."""
    setup(client)
    dataset_id = ok(client.get("/v1/models/cams/data-engine"))["target_dataset_id"]
    items = ok(client.get(f"/v1/datasets/{dataset_id}/items?status=all&limit=1000"))["items"]
    assert items
    for item in items:
        msgspec.convert(item, FlaggedItem)
        i = int(item["prediction_id"][1:])
        assert item["ab_variant"] == arm_of(i)
        assert item["inclusion_probability"] == pytest.approx(labelled_image(i)[1])
    assert len({round(item["inclusion_probability"], 6) for item in items}) > 1  # a weighted sample, not a census


@pytest.fixture
def storage(database_url: str, client: FlaskClient) -> Iterator[Any]:
    """A second handle on the app's database (the app migrated it)."""
    opened = open_storage(database_url)
    yield opened
    opened.close()


def test_items_keep_their_arm_after_the_predictions_expire(client: FlaskClient, storage: Any) -> None:
    labelled = setup(client)
    before = ok(client.get("/v1/models/cams/quality?period=7d&ab_variant=b"))
    assert storage.expire_predictions(time.time_ns()) >= 2 * PER_ARM
    after = ok(client.get("/v1/models/cams/quality?period=7d&ab_variant=b"))
    assert after["n_images"] == before["n_images"] == sum(1 for i in labelled if arm_of(i) == "b")
    assert after["overall"] == before["overall"]


def test_the_client_and_cli_take_the_arm(tmp_path: Path) -> None:
    with embedded_companion(tmp_path / "companion") as url:
        client = detwatch.Client(base_url=url)
        client.register_model(model_id="cams", version="v1")
        dataset = client.create_dataset(name="review")
        client.configure_data_engine(model_id="cams", config=CONFIG, target_dataset_id=dataset["id"])
        now = time.time() - 3600
        events = {"predictions": [arm_event(i, now - i) for i in range(2 * PER_ARM)]}
        assert requests.post(f"{url}/v1/predictions", json=events, timeout=30).json()["accepted"] == 2 * PER_ARM
        while claimed := list(client.claim_items(dataset_id=dataset["id"], reviewer="ann", limit=100)):
            for item in claimed:
                i = int(item["prediction_id"][1:])
                client.label_item(dataset_id=dataset["id"], item_id=item["id"], annotations=truth(i), reviewer="ann")
        report = client.get_model_quality(model_id="cams", period="7d", ab_variant="b")
        assert report["ab_variant"] == "b" and report["classes"]["car"]["precision"]["estimate"] == 0.0
        shown = CliRunner().invoke(cli, ["quality", "cams", "--ab-variant", "b", "--url", url])
        assert shown.exit_code == 0, shown.output
        assert "arm b" in shown.output and f"{report['n_images']} labelled images" in shown.output
        refused = CliRunner().invoke(cli, ["quality", "cams", "--ab-variant", "c", "--url", url])
        assert refused.exit_code != 0 and "ab-variant" in refused.output


def test_migration_10_gives_items_flagged_before_the_arm_of_their_retained_prediction(database_url: str) -> None:
    # A database left at version 9: two labelled items of arm b, one whose prediction has expired.
    dialect: Dialect = "sqlite" if is_sqlite(database_url) else "postgresql"
    raw_execute(database_url, SCHEMA_MIGRATIONS_TABLE)
    for version, statements in MIGRATIONS[:9]:
        for statement in statements_for(statements, dialect):
            raw_execute(database_url, statement)
        raw_execute(database_url, f"INSERT INTO schema_migrations (version, applied_unix_nano) VALUES ({version}, 0)")
    raw_execute(
        database_url,
        "INSERT INTO predictions (prediction_id, model_id, model_version, ab_variant, time_unix_nano, detections, "
        "attributes, received_unix_nano) VALUES ('kept', 'cams', 'v1', 'b', 100, '[]', '{}', 100)",
    )
    for prediction_id in ("kept", "expired"):
        raw_execute(
            database_url,
            "INSERT INTO flagged_items (id, dataset_id, prediction_id, model_id, model_version, time_unix_nano, "
            "reasons, detections, status, label, created_unix_nano, updated_unix_nano, inclusion_probability) "
            f"VALUES ('{prediction_id}-item', 'd', '{prediction_id}', 'cams', 'v1', 100, '[\"random_sample\"]', '[]', "
            "'labeled', '[]', 100, 100, 1.0)",
        )
    opened = open_storage(database_url)
    try:
        assert opened.migrate() == LATEST_VERSION
        items = opened.labelled_items("cams", since_unix_nano=0, until_unix_nano=200)
        assert {item.prediction_id: item.ab_variant for item in items} == {"kept": "b", "expired": None}
        arm_b = opened.labelled_items("cams", since_unix_nano=0, until_unix_nano=200, ab_variant="b")
        assert [item.prediction_id for item in arm_b] == ["kept"]
    finally:
        opened.close()
