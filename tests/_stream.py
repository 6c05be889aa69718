"""Fill a real VictoriaMetrics with the real decorator's metrics, counted from zero.

Used by the alerting end-to-end test and the dashboard/rule query tests. The metrics
go through the real SDK and OTLP/HTTP exporter with cumulative temporality
(VictoriaMetrics drops delta, DESIGN.md).

Why the first export comes after a few calls: ``increase()`` in VictoriaMetrics
has no sample before a new series' first one, and decides whether the series
started from zero by comparing its first value with the next increase: a first value
under ten always counts as grown from zero. A few calls touching every series record
only a few detections each, so every series' first value is under ten, and ``increase`` over the
window then equals everything recorded, which is what the tests compute
independently. (Prometheus extrapolates instead; its semantics are covered by the
promtool tests.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

import detwatch_instrumentation

__all__ = ["cumulative_provider", "export", "run_calls"]


def cumulative_provider(otlp_metrics_url: str, service_name: str) -> MeterProvider:
    """A MeterProvider exporting cumulative OTLP/HTTP only when flushed (no timer exports)."""
    temporality: dict[type, AggregationTemporality] = {
        Counter: AggregationTemporality.CUMULATIVE,
        Histogram: AggregationTemporality.CUMULATIVE,
        ObservableGauge: AggregationTemporality.CUMULATIVE,
    }
    exporter = OTLPMetricExporter(endpoint=otlp_metrics_url, preferred_temporality=temporality)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": service_name}),
        shutdown_on_exit=False,
    )


def export(provider: MeterProvider) -> None:
    """Drain the decorator's recording thread, then export everything recorded so far."""
    assert detwatch_instrumentation.flush(10.0)
    assert provider.force_flush(10_000)


def run_calls(provider: MeterProvider, first: Sequence[Callable[[], Any]], rest: Sequence[Callable[[], Any]]) -> None:
    """Run ``first``, export, run ``rest``, export (see the module docstring).

    ``first`` must touch every series the test will query (each class, arm, error
    type, ...), and leave each under ten.
    """
    for call in first:
        call()
    export(provider)
    for call in rest:
        call()
    export(provider)
