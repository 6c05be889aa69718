"""The drift report and A/B results answered over HTTP stay byte for byte what they were.

The analyses return frozen dataclasses and are turned into JSON only at the HTTP edge
(:mod:`detwatch.api._analysis_json`); these answers were captured from the routes
before that move, on fixed, seeded traffic, so any change of a key, its order, a
number or how a non-finite one is written shows here. Regenerate the files only for
a change of the answer that is meant (``DETWATCH_WRITE_GOLDEN=1``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import numpy as np
from flask.testing import FlaskClient

from detwatch.api._context import storage_for
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.contract.predictions import Prediction, parse_prediction

NS: Final = 1_000_000_000
DAY_S: Final = 86_400
JANUARY: Final = 1_704_067_200  # 2024-01-01T00:00:00Z
GOLDEN: Final = Path(__file__).parent / "golden"


def _events(seed: int, count: int, day: int, *, variant: str | None, classes: tuple[str, ...]) -> list[Prediction]:
    """Images over three days whose detections move together (a level per image, a favourite class)."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(count):
        m = int(rng.choice([0, 1, 2, 3, 6]))
        level = rng.normal(0.7, 0.12)
        favourite = int(rng.integers(len(classes)))
        detections = [
            {
                "class": classes[favourite if rng.random() < 0.6 else int(rng.integers(len(classes)))],
                "confidence": round(float(np.clip(level + rng.normal(0.0, 0.05), 0.001, 0.999)), 6),
                "box": [
                    0.0,
                    0.0,
                    round(float(10 ** rng.normal(1.5, 0.3)), 3),
                    round(float(10 ** rng.normal(1.5, 0.3)), 3),
                ],
            }
            for _ in range(m)
        ]
        event: dict[str, Any] = {
            "prediction_id": f"g{seed}-{i:05d}",
            "model_id": "m",
            "model_version": "v1",
            "time_unix_nano": (day + int(rng.integers(3 * DAY_S))) * NS,
            "detections": detections,
            "image": {"width": 640, "height": 480},
            "latency_ms": round(float(rng.lognormal(3.0, 0.4)), 3),
        }
        if variant is not None:
            event["ab_variant"] = variant
        events.append(parse_prediction(event))
    return events


def _answers(tmp_path: Path) -> dict[str, bytes]:
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'detwatch.db'}"))
    try:
        storage = storage_for(app)
        client: FlaskClient = app.test_client()
        storage.register_model("m", None, {})
        storage.ingest_predictions(
            _events(1, 300, JANUARY, variant=None, classes=("car", "person", "truck"))
            + _events(2, 300, JANUARY + 31 * DAY_S, variant=None, classes=("car", "person", "bus"))
            + _events(3, 200, JANUARY + 10 * DAY_S, variant="a", classes=("car", "person", "truck"))
            + _events(4, 200, JANUARY + 10 * DAY_S, variant="b", classes=("car", "person", "truck"))
        )
        answers: dict[str, bytes] = {}
        periods = {"reference_period": "2024-01-01:2024-01-05", "current_period": "2024-02-01:2024-02-05"}
        answers["drift"] = client.post("/v1/models/m/drift", json=periods).data
        thin = {"reference_period": "2024-01-01:2024-01-01", "current_period": "2024-02-01:2024-02-01"}
        answers["drift_thin"] = client.post("/v1/models/m/drift", json={**thin, "min_images": 500}).data
        for name, start in (("ab_results", "2024-01-11T00:00:00Z"), ("ab_results_empty", "2023-06-01T00:00:00Z")):
            created = client.post(
                "/v1/ab-tests",
                json={
                    "name": name, "model_a_id": "m", "model_b_id": "m", "start": start,
                    "config": {"traffic_split": 0.5, "metrics": ["confidence", "class_mix"], "duration_days": 3},
                },
            ).get_json()  # fmt: skip
            # The id is random: the answer is compared with it written as "ID".
            body = client.get(f"/v1/ab-tests/{created['id']}/results").data
            answers[name] = body.replace(created["id"].encode(), b"ID")
        return answers
    finally:
        storage_for(app).close()


def test_drift_and_ab_answers_are_byte_identical_to_the_captured_ones(tmp_path: Path) -> None:
    answers = _answers(tmp_path)
    for name, body in answers.items():
        path = GOLDEN / f"{name}.json"
        if os.environ.get("DETWATCH_WRITE_GOLDEN") == "1":
            path.write_bytes(body)
        assert body == path.read_bytes(), name
