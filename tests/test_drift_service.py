"""Drift through the real HTTP stack: gunicorn, the client's ``check_drift``, ``detwatch drift``, both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

import detwatch
from _drift_samples import Box, Stream, as_stored, bin_images, rounded, simulate
from _otlp_receiver import Receiver
from _service import Companion, companion_on
from detwatch.api._analysis_json import drift_report_json
from detwatch.cli import main as cli
from detwatch.drift import compare
from detwatch.storage import open_storage
from detwatch_instrumentation import semconv

SIDE = 500
HOUR_NS = 3600 * 10**9


def _ns(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * 10**9


def _events(images: list[list[Box]], day: str, tag: str, **fields: Any) -> list[dict[str, Any]]:
    """Prediction events (the JSON ingest shape) spread over the hours of ``day``."""
    return [
        {
            "prediction_id": f"{tag}-{i}",
            "model_id": "vehicles",
            "model_version": "v2",
            "time_unix_nano": _ns(day) + (i % 24) * HOUR_NS,
            "image": {"width": SIDE, "height": SIDE},
            "detections": [
                {"class": b.name, "confidence": b.confidence, "box": [0, 0, b.width * SIDE, b.height * SIDE]}
                for b in image
            ],
            **fields,
        }
        for i, image in enumerate(images)
    ]


def _stored_kinds(companion: Companion) -> tuple[set[str], bool]:
    """The aggregate kinds the service's storage holds, and whether its cells have sums of squares."""
    url = companion.env.get("DETWATCH_DATABASE_URL") or f"sqlite:///{(companion.data_dir / 'detwatch.db').resolve()}"
    storage = open_storage(url)
    try:
        rows = storage.aggregates("vehicles", 0, 2**62)
    finally:
        storage.close()
    return {r.kind for r in rows}, hasattr(rows[0], "value_sq")


def _clipped(images: list[list[Box]]) -> list[list[Box]]:
    return [[Box(b.name, b.confidence, min(b.width, 1.0), min(b.height, 1.0)) for b in image] for image in images]


SHIFTED = Stream(classes=("car", "person", "scooter"), shares=(0.5, 0.2, 0.3), confidence_logit=0.5)
"""February: scooters appear, trucks vanish, confidences drop."""


@pytest.fixture(scope="module")
def data() -> dict[str, list[list[Box]]]:
    rng = np.random.default_rng(40)
    return {
        "january": _clipped(simulate(Stream(), 150, rng)),
        "february": _clipped(simulate(SHIFTED, 150, rng)),
        "march_b": _clipped(simulate(Stream(), 150, rng)),
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The Collector the companion exports its own metrics to."""
    with Receiver() as collector:
        yield collector


REFERENCE, CURRENT = "2024-01-01:2024-01-31", "2024-02-01:2024-02-28"
SCHEDULE = {"drift": {"interval": "300ms", "models": {"vehicles": {"reference": REFERENCE, "current": CURRENT}}}}
"""Scheduled drift over the same periods as the user guide's call, so both must agree."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    data: dict[str, list[list[Box]]],
    receiver: Receiver,
) -> Iterator[Companion]:
    directory = tmp_path_factory.mktemp("drift")
    (directory / "detwatch.yaml").write_text(yaml.safe_dump(SCHEDULE))
    env = receiver.companion_env(f"drift-{request.param}", directory / "detwatch.yaml")
    with companion_on(request.param, request, directory / "data", env=env) as service:
        client = detwatch.Client(base_url=service.url)
        batch = [
            *_events(data["january"], "2024-01-10", "jan"),
            *_events(data["february"], "2024-02-10", "feb"),
            *_events(data["march_b"], "2024-03-10", "mar", ab_variant="b"),
        ]
        assert client.send_predictions(batch)["accepted"] == len(batch)
        yield service


def test_check_drift_as_the_user_guide_calls_it(companion: Companion, data: dict[str, list[list[Box]]]) -> None:
    client = detwatch.Client(base_url=companion.url)
    model = client.get_model("vehicles")
    drift_report = client.check_drift(
        model_id=model["id"], reference_period="2024-01-01:2024-01-31", current_period="2024-02-01:2024-02-28"
    )
    lines = [
        f"Class distribution drift: {drift_report['class_drift']:.3f}",
        f"Confidence drift: {drift_report['confidence_drift']:.3f}",
        f"Detection count drift: {drift_report['count_drift']:.3f}",
    ]
    assert all(line.split(": ")[1] for line in lines)
    assert drift_report["significant_drift"] is True
    assert "scooter" in drift_report["affected_classes"]
    assert drift_report["new_classes"] == ["scooter"]
    assert drift_report["vanished_classes"] == ["truck"]
    # The class mix recomputed by SciPy from the raw detections that were posted.
    names = ["car", "person", "scooter", "truck"]
    raw = [[sum(b.name == n for image in data[m] for b in image) for n in names] for m in ("january", "february")]
    assert drift_report["class_drift"] == pytest.approx(jensenshannon(raw[0], raw[1], base=2))
    # Everything else: what the statistics give on the same images binned by the test.
    kinds, value_sq = _stored_kinds(companion)
    expected = drift_report_json(
        compare(
            as_stored(bin_images(data["january"]), kinds, value_sq=value_sq),
            as_stored(bin_images(data["february"]), kinds, value_sq=value_sq),
        )
    )
    # Design effects come from per-image sums added in another order: equal up to round-off.
    assert rounded(drift_report["tests"]) == rounded(expected["tests"])
    assert drift_report["reference"]["images"] == 150


def test_positional_call_filters_and_no_drift_on_the_same_stream(companion: Companion) -> None:
    client = detwatch.Client(base_url=companion.url)
    report = client.check_drift("vehicles", "2024-01-01:2024-01-31", "2024-03-01/2024-03-31")
    assert (report["reference"]["images"], report["current"]["images"]) == (150, 150)
    assert report["status"] == "no_drift"
    assert report["significant_drift"] is False
    assert report["affected_classes"] == []
    only_b = client.check_drift("vehicles", "2024-01-01:2024-01-31", "2024-03-01/2024-03-31", ab_variant="b")
    assert (only_b["reference"]["images"], only_b["current"]["images"]) == (0, 150)
    assert only_b["status"] == "insufficient_data"
    assert only_b["significant_drift"] is False
    assert (
        client.check_drift("vehicles", "2024-01-01:2024-01-31", "2024-02-01:2024-02-28", model_version="v1")["current"][
            "images"
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reference_period": "2024-13-01:2024-13-31", "current_period": "last 24h"}, "reference_period"),
        ({"reference_period": "previous 7d", "current_period": "yesterday"}, "current_period"),
        ({"reference_period": "previous 7d", "current_period": "last 1d", "alpha": 2}, "alpha"),
        ({"reference_period": "previous 7d", "current_period": "last 1d", "threshold": 2}, "threshold"),
        ({"reference_period": "previous 7d", "current_period": "last 1d", "ab_variant": "c"}, "ab_variant"),
    ],
)
def test_bad_drift_input_is_a_400_naming_the_field(companion: Companion, body: dict[str, Any], field: str) -> None:
    client = detwatch.Client(base_url=companion.url)
    with pytest.raises(detwatch.InvalidRequestError) as error:
        client.check_drift("vehicles", **body)
    assert error.value.status == 400
    assert error.value.field == field


def test_drift_of_an_unknown_model_is_a_404(companion: Companion) -> None:
    with pytest.raises(detwatch.NotFoundError) as error:
        detwatch.Client(base_url=companion.url).check_drift("no-such-model", "previous 7d", "last 1d")
    assert error.value.field == "model_id"


def test_cli_prints_a_readable_report_and_the_json(companion: Companion) -> None:
    runner = CliRunner()
    args = ["drift", "vehicles", "--reference", "2024-01-01:2024-01-31", "--current", "2024-02-01:2024-02-28"]
    result = runner.invoke(cli, [*args, "--url", companion.url])
    assert result.exit_code == 0, result.output
    assert "SIGNIFICANT DRIFT" in result.output
    assert "most affected classes: " in result.output and "scooter" in result.output
    assert "new classes: scooter" in result.output
    assert "class_mix" in result.output
    assert "effective n" in result.output  # each test's evidence in independent units
    result = runner.invoke(cli, [*args, "--json", "--url", companion.url])
    assert result.exit_code == 0, result.output
    assert '"significant_drift": true' in result.output
    bad = ["drift", "vehicles", "--reference", "soon", "--current", "now", "--url", companion.url]
    result = runner.invoke(cli, bad)
    assert result.exit_code == 1
    assert "reference_period" in result.output


def test_the_scheduled_drift_score_reaches_the_collector(companion: Companion, receiver: Receiver) -> None:
    """The schedule's periods are the user guide's: its exported scores are the report's distances."""
    report = detwatch.Client(base_url=companion.url).check_drift("vehicles", REFERENCE, CURRENT)
    service = companion.env["OTEL_SERVICE_NAME"]
    found: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(found) < 4:
        time.sleep(0.2)
        for name, unit, attributes, value in receiver.gauge_points(service, semconv.DRIFT_SCORE.name):
            assert name == semconv.DRIFT_SCORE.name and unit == "1"
            assert attributes[semconv.ATTR_MODEL_ID] == "vehicles"
            found[(attributes[semconv.ATTR_DRIFT_KIND], attributes[semconv.ATTR_DRIFT_METHOD])] = value
    assert found[("class", "jensen_shannon")] == pytest.approx(report["class_drift"])
    assert found[("confidence", "ks")] == pytest.approx(report["confidence_drift"])
    assert found[("count", "ks")] == pytest.approx(report["count_drift"])
    assert found[("any", "holm")] == 1.0
