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

import pytest
from flask.testing import FlaskClient

from detwatch.quality import PairedImage, compare_model_versions, compare_versions
from detwatch.quality._matching import GroundTruth
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


def test_versions_are_paired_by_image_key_and_scored_as_compare_versions(client: FlaskClient, storage: Any) -> None:
    ok(client.post("/v1/models", json={"model_id": "cams"}), 201)
    dataset_id = ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
    ok(client.put("/v1/models/cams/data-engine", json={"config": EVERYTHING, "target_dataset_id": dataset_id}))
    now = time.time() - 3600
    ok(client.post("/v1/predictions", json={"predictions": [event(i, now - i) for i in range(45)]}))
    labelled = label_everything(client, dataset_id)
    assert len(labelled) == 45
    v2 = []
    for i in range(40):  # images 40..44: version 2 never saw them
        e = event(i, now + 10 + i, "v2")
        v2.append({**e, "prediction_id": f"q{i:04d}", "detections": second_version(i)})
    stale = {**event(3, now + 5, "v2"), "prediction_id": "q-old", "detections": []}  # older: not read
    ok(client.post("/v1/predictions", json={"predictions": [*v2, stale]}))

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
