"""The quality schedule through the real stack: gunicorn, a ``quality:`` section, OTLP to a loopback Collector.

The companion runs under gunicorn with a ``detwatch.yaml`` whose ``quality:`` section
estimates ``cams`` v1 every 300 ms over the last 7 days, exporting its own metrics to
the suite's OTLP receiver. The predictions and labels are the quality route's tests'
(sent through :class:`detwatch.Client`); the gauges that arrive must be the
``estimated_precision`` the route answers for the same period, on both backends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

import detwatch
from _otlp_receiver import Receiver
from _service import Companion, companion_on
from detwatch_instrumentation import semconv
from test_quality_api import send_and_label

SCHEDULE = {"quality": {"interval": "300ms", "period": "7d", "models": {"cams": {"model_version": "v1"}}}}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The Collector the companion exports its own metrics to."""
    with Receiver() as collector:
        yield collector


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[Companion]:
    directory = tmp_path_factory.mktemp("quality-schedule")
    (directory / "detwatch.yaml").write_text(yaml.safe_dump(SCHEDULE))
    env = receiver.companion_env(f"quality-{request.param}", directory / "detwatch.yaml")
    with companion_on(request.param, request, directory / "data", env=env) as service:
        send_and_label(detwatch.Client(base_url=service.url))
        yield service


def _latest(receiver: Receiver, service: str) -> dict[tuple[str, str], float]:
    """(gauge name, class) -> the last value the service exported for cams v1."""
    found: dict[tuple[str, str], float] = {}
    for name, unit, attributes, value in receiver.gauge_points(service, "objdet.quality."):
        assert unit == "1"
        assert attributes[semconv.ATTR_MODEL_ID] == "cams"
        assert attributes[semconv.ATTR_MODEL_VERSION] == "v1"
        found[(name, attributes[semconv.ATTR_DETECTION_CLASS])] = value
    return found


def test_the_scheduled_estimate_reaches_the_collector_as_the_route_answers_it(
    companion: Companion, receiver: Receiver
) -> None:
    report = detwatch.Client(base_url=companion.url).get_model_quality(model_id="cams", period="7d", model_version="v1")
    estimated = report["estimated_precision"]
    expected = {semconv.ALL_CLASSES: estimated["overall"], **estimated["classes"]}
    assert set(expected) == {"__all__", "car", "person"}
    service = companion.env["OTEL_SERVICE_NAME"]

    def matches(found: dict[tuple[str, str], float]) -> bool:
        for name, figure in expected.items():
            exported = {
                "estimate": found.get((semconv.QUALITY_PRECISION.name, name)),
                "low": found.get((semconv.QUALITY_PRECISION_LOW.name, name)),
                "high": found.get((semconv.QUALITY_PRECISION_HIGH.name, name)),
                "trusted": found.get((semconv.QUALITY_TRUSTED.name, name)),
            }
            wanted: dict[str, float | None] = {
                "estimate": figure["estimate"],
                "low": figure["ci"][0],
                "high": figure["ci"][1],
                "trusted": 1.0 if figure["trusted"] else 0.0,
            }
            for key, value in exported.items():
                target = wanted[key]
                if value is None or target is None or abs(value - target) > 1e-9:
                    return False
        return True

    deadline = time.monotonic() + 30
    found = _latest(receiver, service)
    while not matches(found) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = _latest(receiver, service)
    assert matches(found), (found, expected)
    assert found[(semconv.QUALITY_PRECISION.name, "car")] == 1.0  # every sure car is right
    assert 0.0 < found[(semconv.QUALITY_PRECISION.name, "person")] < 1.0
