"""Scheduled drift: the companion compares current and baseline windows per model and exports objdet.drift.score.

The export under gunicorn to a Collector is tested with the service (tests/test_drift_service.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from _drift_samples import Box, Stream, simulate
from detwatch.api._analysis_json import drift_report_json
from detwatch.config import ConfigError
from detwatch.contract.predictions import parse_prediction
from detwatch.drift import drift_report
from detwatch.jobs.drift_schedule import DriftSchedule, DriftScheduler, start_drift_schedule
from detwatch.storage import open_storage
from detwatch_instrumentation import semconv

HOUR_NS = 3600 * 10**9
SIDE = 500


def _events(images: list[list[Box]], end_ns: int, tag: str) -> list[dict[str, Any]]:
    """Events spread over the 20 hours before ``end_ns``."""
    return [
        {
            "prediction_id": f"{tag}-{i}",
            "model_id": "vehicles",
            "model_version": "v2",
            "time_unix_nano": end_ns - (1 + i % 20) * HOUR_NS,
            "image": {"width": SIDE, "height": SIDE},
            "detections": [
                {
                    "class": b.name,
                    "confidence": b.confidence,
                    "box": [0, 0, min(b.width, 1) * SIDE, min(b.height, 1) * SIDE],
                }
                for b in image
            ],
        }
        for i, image in enumerate(images)
    ]


def _week_and_today(now: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(50)
    baseline = simulate(Stream(), 120, rng)
    today = simulate(Stream(confidence_logit=0.0, classes=("car", "person", "bus"), shares=(0.4, 0.3, 0.3)), 80, rng)
    return [*_events(baseline, now - 3 * 24 * HOUR_NS, "base"), *_events(today, now, "today")]


def test_a_run_sets_one_score_per_headline_distance_and_the_verdict(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    now = time.time_ns()
    storage.ingest_predictions([parse_prediction(e, index=i) for i, e in enumerate(_week_and_today(now))])
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    schedule = DriftSchedule.from_config({"interval": "1h", "models": {"vehicles": {"model_version": "v2"}}})
    scheduler = DriftScheduler(schedule, lambda: storage, meter_provider=provider)
    reports = scheduler.run_once(now_unix_nano=now)
    expected = drift_report(storage, "vehicles", "previous 7d", "last 24h", model_version="v2", now_unix_nano=now)
    assert drift_report_json(reports["vehicles"]) == drift_report_json(expected)
    data = reader.get_metrics_data()
    assert data is not None
    points = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == semconv.DRIFT_SCORE.name:
                    assert metric.unit == "1"
                    for p in metric.data.data_points:
                        assert isinstance(p, NumberDataPoint)
                        attributes = dict(p.attributes or {})
                        assert attributes[semconv.ATTR_MODEL_ID] == "vehicles"
                        assert attributes[semconv.ATTR_MODEL_VERSION] == "v2"
                        points[(attributes[semconv.ATTR_DRIFT_KIND], attributes[semconv.ATTR_DRIFT_METHOD])] = p.value
    assert points[("class", "jensen_shannon")] == pytest.approx(expected.class_drift)
    assert points[("confidence", "ks")] == pytest.approx(expected.confidence_drift)
    assert points[("count", "ks")] == pytest.approx(expected.count_drift)
    assert points[("any", "holm")] == 1.0
    assert {kind for kind, _ in points} >= {"class", "confidence", "count", "empty_rate", "any"}
    provider.shutdown()
    storage.close()


@pytest.mark.parametrize(
    ("section", "setting"),
    [
        ({"interval": "soon", "models": {}}, "drift.interval"),
        ({"models": {"vehicles": {"current": "last week"}}}, "drift.models.vehicles.current"),
        ({"models": {"vehicles": {"reference": "2024-02-30:2024-03-01"}}}, "drift.models.vehicles.reference"),
        ({"models": {"vehicles": {"options": {"alpha": 3}}}}, "drift.models.vehicles.options.alpha"),
        ({"models": {"vehicles": {"ab_variant": "c"}}}, "drift.models.vehicles.ab_variant"),
        ({"modles": {}}, "drift.modles"),
    ],
)
def test_a_bad_drift_setting_is_a_config_error_naming_it(tmp_path: Path, section: Any, setting: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{setting.replace('.', '[.]')}:"):
        start_drift_schedule(section, tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
