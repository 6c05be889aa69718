"""Scheduled quality: the companion estimates precision without labels per model and exports objdet.quality.*.

Against real storage (SQLite and PostgreSQL, the ``app`` fixture): the predictions and
labels the quality route's tests use, a run of the schedule, and the gauges equal to the
label-free estimate read for the same period. The export through OTLP is tested with the
service (tests/test_quality_schedule_export.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from detwatch.config import ConfigError
from detwatch.jobs._periodic import parse_interval
from detwatch.jobs.quality_schedule import QualitySchedule, QualityScheduler, start_quality_schedule
from detwatch.quality import parse_window, period_precision
from detwatch_instrumentation import semconv
from test_quality_api import label_everything, ok, setup

GAUGES = {
    semconv.QUALITY_PRECISION.name: "estimate",
    semconv.QUALITY_PRECISION_LOW.name: "low",
    semconv.QUALITY_PRECISION_HIGH.name: "high",
    semconv.QUALITY_TRUSTED.name: "trusted",
}


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, str, str | None], dict[str, float]]:
    """(model, class, version) -> {estimate, low, high, trusted} as exported."""
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[tuple[str, str, str | None], dict[str, float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name not in GAUGES:
                    continue
                assert metric.unit == "1"
                for p in metric.data.data_points:
                    assert isinstance(p, NumberDataPoint)
                    attributes = dict(p.attributes or {})
                    key = (
                        str(attributes[semconv.ATTR_MODEL_ID]),
                        str(attributes[semconv.ATTR_DETECTION_CLASS]),
                        None
                        if semconv.ATTR_MODEL_VERSION not in attributes
                        else str(attributes[semconv.ATTR_MODEL_VERSION]),
                    )
                    out.setdefault(key, {})[GAUGES[metric.name]] = float(p.value)
    return out


def test_a_run_exports_the_label_free_estimate_of_the_period(app: Flask, client: FlaskClient) -> None:
    dataset_id, _ = setup(client)
    label_everything(client, dataset_id)
    storage: Any = app.extensions["detwatch.storage"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    schedule = QualitySchedule.from_config(
        {"interval": "1h", "period": "24h", "models": {"cams": {"model_version": "v1", "period": "7d"}}}
    )
    scheduler = QualityScheduler(schedule, lambda: storage, meter_provider=provider)
    now = time.time_ns()
    results = scheduler.run_once(now_unix_nano=now)

    since, until = parse_window("7d", now_unix_nano=now)
    expected = period_precision(storage, "cams", since_unix_nano=since, until_unix_nano=until, model_version="v1")
    assert results["cams"] == expected
    points = _points(reader)
    figures = {semconv.ALL_CLASSES: expected.overall, **expected.classes}
    assert set(points) == {("cams", name, "v1") for name in figures}
    for name, figure in figures.items():
        exported = points[("cams", name, "v1")]
        assert exported["estimate"] == pytest.approx(figure.estimate)
        assert exported["low"] == pytest.approx(figure.ci[0])
        assert exported["high"] == pytest.approx(figure.ci[1])
        assert exported["trusted"] == (1.0 if figure.trusted else 0.0)
    # The data: every sure car is right, a third of the weak persons wrong.
    assert points[("cams", "car", "v1")]["estimate"] == 1.0
    assert 0.0 < points[("cams", "person", "v1")]["estimate"] < 1.0
    assert points[("cams", "__all__", "v1")]["low"] <= points[("cams", "__all__", "v1")]["estimate"]

    # The route answers the same figures for the same period.
    report = ok(client.get("/v1/models/cams/quality?period=7d&model_version=v1"))
    assert report["estimated_precision"]["overall"]["estimate"] == pytest.approx(expected.overall.estimate)
    provider.shutdown()


def test_a_run_replaces_the_model_s_values_and_a_class_no_longer_there_is_not_reported(
    app: Flask, client: FlaskClient
) -> None:
    dataset_id, _ = setup(client)
    label_everything(client, dataset_id)
    storage: Any = app.extensions["detwatch.storage"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    schedule = QualitySchedule.from_config({"period": "7d", "models": {"cams": {"model_version": "v1"}}})
    scheduler = QualityScheduler(schedule, lambda: storage, meter_provider=provider)
    scheduler.run_once()
    assert {key[1] for key in _points(reader)} == {"__all__", "car", "person"}
    # A month later the week holds no detections: no class, and an overall value that is no number.
    later = scheduler.run_once(now_unix_nano=time.time_ns() + 30 * 86_400 * 10**9)["cams"]
    assert later.classes == {} and later.overall.detections == 0
    assert _points(reader) == {("cams", "__all__", "v1"): {"trusted": 0.0}}
    assert scheduler.runs == 2
    provider.shutdown()


def test_a_class_without_labels_exports_untrusted_and_no_estimate(app: Flask, client: FlaskClient) -> None:
    setup(client)  # nothing labelled: no calibration
    storage: Any = app.extensions["detwatch.storage"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    scheduler = QualityScheduler(
        QualitySchedule.from_config({"models": {"cams": None}}), lambda: storage, meter_provider=provider
    )
    result = scheduler.run_once()["cams"]
    assert math.isnan(result.overall.estimate)
    points = _points(reader)
    assert points[("cams", "__all__", None)] == {"trusted": 0.0}
    assert points[("cams", "car", None)] == {"trusted": 0.0}
    provider.shutdown()


def test_defaults_and_overrides() -> None:
    schedule = QualitySchedule.from_config({"models": {"cams": {"period": "7d"}, "vehicles": None}})
    assert schedule.interval_s == 900.0 and schedule.period == "24h"
    assert [(m.model_id, m.period, m.model_version) for m in schedule.models] == [
        ("cams", "7d", None),
        ("vehicles", "24h", None),
    ]
    assert QualitySchedule.from_config({"period": "last 2w", "models": {"a": {}}}).models[0].period == "last 2w"
    assert parse_interval("x", "90s") == 90.0 and parse_interval("x", 2) == 2.0


@pytest.mark.parametrize(
    ("section", "setting"),
    [
        ({"interval": "soon", "models": {}}, "quality.interval"),
        ({"interval": "30d", "models": {}}, "quality.interval"),
        ({"period": "yesterday", "models": {}}, "quality.period"),
        ({"models": {"cams": {"period": "0h"}}}, "quality.models.cams.period"),
        ({"models": {"cams": {"period": 24}}}, "quality.models.cams.period"),
        ({"models": {"cams": {"model_version": ""}}}, "quality.models.cams.model_version"),
        ({"models": {"cams": {"ab_variant": "a"}}}, "quality.models.cams.ab_variant"),
        ({"models": {"cams": "7d"}}, "quality.models.cams"),
        ({"models": ["cams"]}, "quality.models"),
        ({"modles": {}}, "quality.modles"),
        ("15m", "quality"),
    ],
)
def test_a_bad_quality_setting_is_a_config_error_naming_it(tmp_path: Path, section: Any, setting: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{setting.replace('.', '[.]')}:"):
        start_quality_schedule(section, tmp_path, f"sqlite:///{tmp_path / 'd.db'}")


def test_no_section_or_no_models_starts_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert start_quality_schedule(None, tmp_path, url) is None
    assert start_quality_schedule({"interval": "1m"}, tmp_path, url) is None


def test_the_app_starts_the_schedule_from_its_settings(tmp_path: Path) -> None:
    from detwatch.app import create_app, shutdown
    from detwatch.config import Settings

    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'd.db'}",
        extra={"quality": {"interval": "1h", "models": {"cams": None}}},
    )
    app = create_app(settings)
    try:
        scheduler = app.extensions["detwatch.quality_scheduler"]
        assert isinstance(scheduler, QualityScheduler)
        assert scheduler.interval_s == 3600.0
        deadline = time.monotonic() + 20
        while scheduler.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.runs == 1  # the first run at start, the next an hour later
        assert (tmp_path / "quality-schedule.lock").exists()
    finally:
        shutdown(app)
