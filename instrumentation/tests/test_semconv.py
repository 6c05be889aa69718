"""The registry of names: OpenTelemetry naming rules and the contract's bounds."""

from __future__ import annotations

import re

import pytest

from detwatch_instrumentation import semconv

NAME = re.compile(r"^objdet(\.[a-z][a-z0-9_]*)+$")


@pytest.mark.parametrize("spec", semconv.INSTRUMENTS, ids=lambda s: s.name)
def test_instrument_names_follow_opentelemetry_naming_rules(spec: semconv.InstrumentSpec) -> None:
    assert NAME.match(spec.name), spec.name
    assert len(spec.name) <= 255
    # UCUM units; counts use a singular curly-brace annotation.
    assert spec.unit in ("s", "1") or re.fullmatch(r"\{[a-z_]+\}", spec.unit), spec.unit
    if spec.unit.startswith("{"):
        assert not spec.unit.endswith("s}"), "annotations are singular"
    # Counters may be plural only with a curly-brace unit (OpenTelemetry naming guidance).
    if spec.kind == "counter" and spec.name.endswith("s"):
        assert spec.unit.startswith("{")
    assert spec.description


@pytest.mark.parametrize("spec", [s for s in semconv.INSTRUMENTS if s.kind == "histogram"], ids=lambda s: s.name)
def test_histogram_bounds_are_strictly_increasing(spec: semconv.InstrumentSpec) -> None:
    assert spec.bounds is not None
    assert list(spec.bounds) == sorted(set(spec.bounds))


def test_bounds_match_the_telemetry_contract() -> None:
    assert semconv.DETECTION_CONFIDENCE.bounds == tuple(round(x * 0.05, 2) for x in range(1, 20))
    assert semconv.DETECTION_CONFIDENCE.bounds[0] == 0.05
    assert semconv.DETECTION_CONFIDENCE.bounds[-1] == 0.95
    # Frame budgets at 60, 30 and 15 fps are bucket bounds.
    for fps in (60, 30, 15):
        assert semconv.is_bucket_bound(semconv.INFERENCE_DURATION, round(1 / fps, 4))
    assert semconv.IMAGE_DETECTIONS.bounds is not None
    assert semconv.IMAGE_DETECTIONS.bounds[0] == 0  # le=0: the empty-image rate
    assert semconv.is_bucket_bound(semconv.DETECTION_CONFIDENCE, 0.7)
    assert semconv.is_bucket_bound(semconv.INFERENCE_DURATION, 0.5)
    assert not semconv.is_bucket_bound(semconv.DETECTION_CONFIDENCE, 0.72)
    assert not semconv.is_bucket_bound(semconv.DETECTIONS, 1.0)


def test_instrument_names_are_unique() -> None:
    names = [s.name for s in semconv.INSTRUMENTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("spec", "part", "series"),
    [
        (semconv.INFERENCE_DURATION, "bucket", "objdet_inference_duration_seconds_bucket"),
        (semconv.DETECTION_CONFIDENCE, "sum", "objdet_detection_confidence_sum"),
        (semconv.DETECTIONS, "", "objdet_detections_total"),
        (semconv.FEEDBACK, "total", "objdet_feedback_total"),
        (semconv.DRIFT_SCORE, "", "objdet_drift_score_ratio"),
        (semconv.QUALITY_PRECISION, "", "objdet_quality_precision_ratio"),
        (semconv.QUALITY_PRECISION_LOW, "", "objdet_quality_precision_low_ratio"),
        (semconv.QUALITY_TRUSTED, "", "objdet_quality_trusted_ratio"),
        (semconv.IMAGE_DETECTIONS, "count", "objdet_image_detections_count"),
    ],
)
def test_prometheus_series_names(spec: semconv.InstrumentSpec, part: semconv.PrometheusPart, series: str) -> None:
    assert semconv.prometheus_series(spec, part) == series


def test_prometheus_series_refuses_parts_the_kind_does_not_have() -> None:
    with pytest.raises(ValueError, match="part"):
        semconv.prometheus_series(semconv.DETECTIONS, "bucket")
    with pytest.raises(ValueError, match="part"):
        semconv.prometheus_series(semconv.DETECTION_CONFIDENCE)
    with pytest.raises(ValueError, match="part"):
        semconv.prometheus_series(semconv.DRIFT_SCORE, "sum")


def test_prometheus_labels_replace_dots() -> None:
    assert semconv.prometheus_label(semconv.ATTR_DETECTION_CLASS) == "objdet_detection_class"
    assert semconv.prometheus_label(semconv.ATTR_ERROR_TYPE) == "error_type"
