"""The decorator's metrics in a real Prometheus-compatible store.

A real VictoriaMetrics (Debian's package, started on loopback with
``-opentelemetry.usePrometheusNaming``) receives the metrics over real OTLP/HTTP
from the SDK's exporter. The Prometheus series names depend on the translator, so
they are pinned here, literally, and :func:`semconv.prometheus_series` must agree
with them: dashboards and rules are generated from that function. PromQL answers
are checked against values computed independently from what the test fed in.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

import detwatch_instrumentation
from _components import VictoriaMetrics
from detwatch_instrumentation import monitor_detections, semconv

PINNED_SERIES = {
    "objdet_inference_duration_seconds_bucket",
    "objdet_inference_duration_seconds_sum",
    "objdet_inference_duration_seconds_count",
    "objdet_images_total",
    "objdet_image_detections_bucket",
    "objdet_image_detections_sum",
    "objdet_image_detections_count",
    "objdet_detections_total",
    "objdet_detection_confidence_bucket",
    "objdet_detection_confidence_sum",
    "objdet_detection_confidence_count",
    "objdet_detection_box_area_bucket",
    "objdet_detection_box_area_sum",
    "objdet_detection_box_area_count",
    "objdet_detection_box_aspect_ratio_bucket",
    "objdet_detection_box_aspect_ratio_sum",
    "objdet_detection_box_aspect_ratio_count",
    "objdet_batch_size_bucket",
    "objdet_batch_size_sum",
    "objdet_batch_size_count",
    "objdet_invalid_outputs_total",
}

FAST_CALLS = 150
SLOW_CALLS = 50
SLOW_SECONDS = 0.02  # mid-bucket (0.0167, 0.025]: sleep overshoot stays inside it


@pytest.fixture(scope="module")
def store() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as vm:
        yield vm


def prometheus_quantile(q: float, bounds: tuple[float, ...], values: list[float]) -> float:
    """Prometheus' histogram_quantile, computed from raw values: the textbook algorithm.

    Buckets are cumulative counts at each upper bound; the quantile is linearly
    interpolated inside the bucket holding rank q * total, from 0 for the first.
    """
    cumulative = [sum(1 for v in values if v <= b) for b in bounds]
    total = len(values)
    rank = q * total
    lower, below = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return bounds[-1]


def scalar(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _duration_bucket_counts(memory: InMemoryMetricReader) -> list[int]:
    """Bucket counts of the inference duration over the model's unstaged series, summed (as the query sums by le)."""
    data = memory.get_metrics_data()
    assert data is not None
    totals: list[int] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != semconv.INFERENCE_DURATION.name:
                    continue
                for point in metric.data.data_points:
                    attrs = point.attributes or {}
                    if attrs.get(semconv.ATTR_MODEL_ID) != "vehicles" or attrs.get(semconv.ATTR_STAGE):
                        continue
                    counts = list(point.bucket_counts)  # type: ignore[union-attr]
                    totals = [a + b for a, b in itertools.zip_longest(totals, counts, fillvalue=0)]
    return totals


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1]) for r in result}


def test_decorator_metrics_reach_victoriametrics_with_pinned_names_and_right_values(store: VictoriaMetrics) -> None:
    temporality: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.CUMULATIVE,
        Histogram: AggregationTemporality.CUMULATIVE,
    }
    exporter = OTLPMetricExporter(endpoint=store.otlp_metrics_url, preferred_temporality=temporality)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    memory = InMemoryMetricReader()  # the SDK's own buckets, to compare with what the store computes
    provider = MeterProvider(
        metric_readers=[reader, memory],
        resource=Resource.create({"service.name": "detwatch-vm-test"}),
        shutdown_on_exit=False,
    )
    rng = np.random.default_rng(7)
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    confidences: dict[str, list[float]] = {"car": [], "person": []}
    latencies: list[float] = []

    @monitor_detections(model_id="vehicles", model_version="v2", meter_provider=provider)
    def predict(frame: Any, pause: float) -> list[dict[str, Any]]:
        if pause:
            time.sleep(pause)
        out = []
        for cls in ("car", "car", "person"):
            conf = float(rng.uniform(0.3, 1.0))
            out.append({"class": cls, "confidence": conf, "box": [0.0, 0.0, 64.0, 48.0]})
        return out

    for i in range(FAST_CALLS + SLOW_CALLS):
        pause = SLOW_SECONDS if i % 4 == 0 else 0.0
        started = time.perf_counter()
        result = predict(image, pause)
        latencies.append(time.perf_counter() - started)
        for det in result:
            confidences[det["class"]].append(det["confidence"])

    @monitor_detections(model_id="vehicles", model_version="v2", meter_provider=provider)
    def predict_batch(frames: list[Any]) -> list[list[dict[str, Any]]]:
        return [[], [{"class": "car", "confidence": math.nan, "box": [0, 0, 1, 1]}]]

    started = time.perf_counter()
    predict_batch([image, image])
    latencies.append(time.perf_counter() - started)  # a batch call is one duration sample

    assert detwatch_instrumentation.flush(10.0)
    assert provider.force_flush(10_000)
    recorded = _duration_bucket_counts(memory)
    provider.shutdown()
    store.flush()

    names = {s["__name__"] for s in store.series('{__name__=~"objdet_.*"}')}
    assert names == PINNED_SERIES
    derived = set()
    for spec in semconv.INSTRUMENTS:
        if spec.emitted_by != "instrumentation" or spec is semconv.TELEMETRY_DROPPED:
            continue
        if spec.kind == "histogram":
            derived |= {semconv.prometheus_series(spec, part) for part in ("bucket", "sum", "count")}
        else:
            derived.add(semconv.prometheus_series(spec))
    assert derived == PINNED_SERIES

    labels = store.series('objdet_detections_total{objdet_detection_class="car"}')[0]
    assert labels["objdet_model_id"] == "vehicles"
    assert labels["objdet_model_version"] == "v2"
    assert labels["service_name"] == "detwatch-vm-test"
    for attr in (semconv.ATTR_MODEL_ID, semconv.ATTR_MODEL_VERSION, semconv.ATTR_DETECTION_CLASS):
        assert semconv.prometheus_label(attr) in labels

    sel = '{objdet_model_id="vehicles"}'
    counts = by_label(
        store.query(f"sum by (objdet_detection_class) (objdet_detections_total{sel})"), "objdet_detection_class"
    )
    assert counts == {"car": len(confidences["car"]), "person": len(confidences["person"])}

    mean = by_label(
        store.query(
            f"sum by (objdet_detection_class) (objdet_detection_confidence_sum{sel})"
            f" / sum by (objdet_detection_class) (objdet_detection_confidence_count{sel})"
        ),
        "objdet_detection_class",
    )
    assert mean["car"] == pytest.approx(float(np.mean(confidences["car"])), rel=1e-9)
    assert mean["person"] == pytest.approx(float(np.mean(confidences["person"])), rel=1e-9)

    p99 = scalar(
        store.query(
            "histogram_quantile(0.99, sum by (le) "
            '(objdet_inference_duration_seconds_bucket{objdet_model_id="vehicles", objdet_stage=""}))'
        )
    )
    bounds = semconv.INFERENCE_DURATION.bounds
    assert bounds is not None
    # The store's p99 is the textbook quantile of the buckets the SDK recorded (one sample
    # per call, at its bucket's upper bound: the same bucket counts).
    assert sum(recorded) == len(latencies)
    at_bounds = [(*bounds, 2 * bounds[-1])[i] for i, n in enumerate(recorded) for _ in range(n)]
    assert p99 == pytest.approx(prometheus_quantile(0.99, bounds, at_bounds), rel=1e-6)
    # And those buckets hold the calls the test timed: the test's timings enclose the
    # decorator's, so at every bound at least as many recorded durations lie below it
    # (a machine hiccup can only move a test timing up), and the slow calls are there.
    for bound, below in zip(bounds, itertools.accumulate(recorded), strict=False):
        assert below >= sum(1 for t in latencies if t <= bound), bound
    assert sum(recorded[i] for i, b in enumerate(bounds) if b >= SLOW_SECONDS) >= SLOW_CALLS

    empty_rate = scalar(
        store.query(
            f'sum(objdet_image_detections_bucket{{objdet_model_id="vehicles", le="0"}})'
            f" / sum(objdet_image_detections_count{sel})"
        )
    )
    # Both batch images have no valid detection (one empty, one with only a NaN).
    assert empty_rate == pytest.approx(2 / (FAST_CALLS + SLOW_CALLS + 2))

    invalid = by_label(store.query(f"sum by (objdet_reason) (objdet_invalid_outputs_total{sel})"), "objdet_reason")
    assert invalid == {"confidence_not_finite": 1.0}
    batch = scalar(store.query(f"sum(objdet_batch_size_sum{sel}) / sum(objdet_batch_size_count{sel})"))
    assert batch == 2.0
