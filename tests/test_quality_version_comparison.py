"""Two versions of a model compared on a dataset's labelled images, read from real storage (SQLite, PostgreSQL).

Version 1's predictions are flagged and labelled through the review routes; version
2 predicts the same images (same image keys, other prediction ids) later. The
comparison pairs each labelled image's truth with both versions' detections found by
image key, and is exactly :func:`compare_versions` of those pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

import detwatch
from _service import Companion, companion_on
from detwatch.api.quality_comparison import comparison_json
from detwatch.cli import main as cli
from detwatch.contract.shapes import VersionComparisonReport
from detwatch.quality import GroundTruth, PairedImage, compare_model_versions, compare_versions
from detwatch.quality._records import detections_of
from detwatch.storage import open_storage
from test_quality_api import detections, event, label_everything, ok, truth

EVERYTHING: dict[str, Any] = {"random_sample": {"enabled": True, "rate": 1.0}}


@pytest.fixture
def storage(database_url: str, client: FlaskClient) -> Iterator[Any]:
    """A second handle on the app's database (the app migrated it)."""
    opened = open_storage(database_url)
    yield opened
    opened.close()


def second_version(i: int) -> list[dict[str, Any]]:
    """Version 2 on image ``i``: the car, slightly off, and never the person."""
    return [{**d, "box": [d["box"][0] + 2.0, *d["box"][1:]]} for d in detections(i) if d["class"] == "car"]


def setup(client: FlaskClient) -> str:
    """Version 1 on 45 images, all flagged and labelled; version 2 on the first 40 of them (same keys)."""
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    dataset_id: str = ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
    ok(client.put("/v1/models/cams/data-engine", json={"config": EVERYTHING, "target_dataset_id": dataset_id}))
    now = time.time() - 3600
    ok(client.post("/v1/predictions", json={"predictions": [event(i, now - i) for i in range(45)]}))
    labelled = label_everything(client, dataset_id)
    assert len(labelled) == 45
    ok(client.post("/v1/predictions", json={"predictions": second_version_events(now)}))
    return dataset_id


def second_version_events(now: float) -> list[dict[str, Any]]:
    v2 = []
    for i in range(40):  # images 40..44: version 2 never saw them
        e = event(i, now + 10 + i, "v2")
        v2.append({**e, "prediction_id": f"q{i:04d}", "detections": second_version(i)})
    stale = {**event(3, now + 5, "v2"), "prediction_id": "q-old", "detections": []}  # older: not read
    return [*v2, stale]


def test_versions_are_paired_by_image_key_and_scored_as_compare_versions(client: FlaskClient, storage: Any) -> None:
    dataset_id = setup(client)
    found = compare_model_versions(storage, "cams", version_a="v1", version_b="v2", dataset_id=dataset_id, resamples=60)
    assert found.labelled_images == 45
    assert found.comparison.n_images == 40 and found.comparison.status == "ok"
    pairs = [
        PairedImage(
            f"{i}.jpg",
            tuple(GroundTruth(g["class"], tuple(g["box"])) for g in truth(i)),
            detections_of(detections(i)),
            detections_of(second_version(i)),
        )
        for i in sorted(range(40), key=lambda i: f"{i}.jpg")  # in the order of the image keys
    ]
    assert repr(found.comparison) == repr(compare_versions(pairs, resamples=60))
    # Version 2 finds no person: recall drops, its interval says so.
    assert found.comparison.overall.recall.difference < 0
    assert found.comparison.overall.recall.ci[1] < 0
    with pytest.raises(LookupError):
        compare_model_versions(storage, "cams", version_a="v1", version_b="v2", dataset_id="nope")


def test_the_route_answers_the_comparison_in_its_shape(client: FlaskClient, storage: Any) -> None:
    dataset_id = setup(client)
    query = f"version_a=v1&version_b=v2&dataset_id={dataset_id}"
    report = ok(client.get(f"/v1/models/cams/quality/compare?{query}"))
    msgspec.convert(report, VersionComparisonReport)
    expected = compare_model_versions(storage, "cams", version_a="v1", version_b="v2", dataset_id=dataset_id)
    assert report == comparison_json(expected)
    assert report["n_images"] == 40 and report["labelled_images"] == 45
    assert report["classes"]["person"]["recall"]["b"] == 0.0
    # The other way round, every difference changes sign.
    back = ok(client.get(f"/v1/models/cams/quality/compare?version_a=v2&version_b=v1&dataset_id={dataset_id}"))
    assert back["overall"]["recall"]["difference"] == pytest.approx(-report["overall"]["recall"]["difference"])
    none = ok(client.get(f"/v1/models/cams/quality/compare?version_a=v1&version_b=v9&dataset_id={dataset_id}"))
    assert none["status"] == "insufficient_data" and none["n_images"] == 0
    assert none["overall"]["ap"] == {"a": None, "b": None, "difference": None, "ci": [None, None]}
    msgspec.convert(none, VersionComparisonReport)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("version_b=v2&dataset_id=d", 400, "version_a"),
        ("version_a=v1&dataset_id=d", 400, "version_b"),
        ("version_a=v1&version_b=v2", 400, "dataset_id"),
        ("version_a=&version_b=v2&dataset_id=d", 400, "version_a"),
        ("version_a=v1&version_b=v2&dataset_id=nope", 404, "dataset_id"),
    ],
)
def test_bad_parameters_are_named(client: FlaskClient, query: str, status: int, field: str) -> None:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    response = client.get(f"/v1/models/cams/quality/compare?{query}")
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    unknown = client.get(f"/v1/models/nobody/quality/compare?{query}")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "model_not_found"


@pytest.fixture(scope="module")
def companion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    """The service under gunicorn (SQLite: the route is tested on both backends above)."""
    with companion_on("sqlite", request, tmp_path_factory.mktemp("compare")) as service:
        yield service


def test_the_client_and_the_cli_show_the_comparison(companion: Companion) -> None:
    client = detwatch.Client(base_url=companion.url)
    client.register_model(model_id="cams")
    dataset = client.create_dataset(name="review")
    client.configure_data_engine(model_id="cams", config=EVERYTHING, target_dataset_id=dataset["id"])
    now = time.time() - 3600
    client.send_predictions([event(i, now - i) for i in range(45)])
    for item in client.get_flagged_items(dataset_id=dataset["id"], status="all", limit=1000):
        i = int(item["prediction_id"][1:])
        client.label_item(dataset_id=dataset["id"], item_id=item["id"], annotations=truth(i), reviewer="ann")
    client.send_predictions(second_version_events(now))
    report = client.compare_model_versions(model_id="cams", version_a="v1", version_b="v2", dataset_id=dataset["id"])
    assert report["status"] == "ok" and report["n_images"] == 40
    high = report["overall"]["recall"]["ci"][1]
    assert high is not None and high < 0
    args = ["quality-compare", "cams", "--version-a", "v1", "--version-b", "v2", "--dataset-id", dataset["id"]]
    printed = CliRunner().invoke(cli, [*args, "--url", companion.url])
    assert printed.exit_code == 0, printed.output
    assert "cams: v2 - v1 on dataset" in printed.output and "40 of 45 labelled images" in printed.output
    assert "person" in printed.output and "(overall)" in printed.output
    as_json = CliRunner().invoke(cli, [*args, "--json", "--url", companion.url])
    assert as_json.exit_code == 0 and '"labelled_images": 45' in as_json.output
    missing = CliRunner().invoke(cli, [*args[:-1], "nope", "--url", companion.url])
    assert missing.exit_code != 0 and "nope" in missing.output
