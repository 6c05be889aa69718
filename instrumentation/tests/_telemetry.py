"""In-memory OpenTelemetry SDK pipelines, fresh for each test (a pytest plugin: ``-p _telemetry``).

The SDK is a test-only dependency of the instrumentation. Providers are passed to
the decorator explicitly, never set globally, so tests cannot leak telemetry
configuration into each other and the "no SDK configured" path stays testable.
Loaded as a plugin by both pytest configurations (the repository's and the
instrumentation distribution's), so the companion's tests use the same fixture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import detwatch_instrumentation

__all__ = ["Telemetry", "sums_by", "telemetry"]


@dataclass
class Telemetry:
    """In-memory tracer, meter and logger providers, and readers for what they got."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    reader: InMemoryMetricReader
    spans_exporter: InMemorySpanExporter
    logs_exporter: InMemoryLogRecordExporter

    @property
    def providers(self) -> dict[str, Any]:
        """Keyword arguments for ``monitor_detections``."""
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def metrics(self) -> dict[str, Metric]:
        """Every metric collected so far, by name (after the recorder has drained)."""
        assert detwatch_instrumentation.flush(10.0)
        data = self.reader.get_metrics_data()
        found: dict[str, Metric] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name: str) -> list[Any]:
        """Data points of metric ``name`` (empty when it was never recorded)."""
        metric = self.metrics().get(name)
        return list(metric.data.data_points) if metric is not None else []

    def all_points(self) -> list[Any]:
        """Every data point of every metric."""
        return [p for m in self.metrics().values() for p in m.data.data_points]

    def bodies(self) -> list[dict[str, Any]]:
        """Bodies of the prediction events emitted so far."""
        found = []
        for log in self.logs():
            body = log.log_record.body
            assert isinstance(body, str), body  # the prediction object as JSON
            found.append(json.loads(body))
        return found

    def spans(self) -> list[ReadableSpan]:
        assert detwatch_instrumentation.flush(10.0)
        return list(self.spans_exporter.get_finished_spans())

    def logs(self) -> list[ReadableLogRecord]:
        assert detwatch_instrumentation.flush(10.0)
        return list(self.logs_exporter.get_finished_logs())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    yield Telemetry(tracer_provider, meter_provider, logger_provider, reader, spans, logs)
    detwatch_instrumentation.flush(10.0)
    meter_provider.shutdown()
    tracer_provider.shutdown()
    logger_provider.shutdown()


def sums_by(reader: InMemoryMetricReader, name: str, attribute: str) -> tuple[str | None, dict[str, int]]:
    """The unit of sum metric ``name`` and its value for each value of ``attribute``, as ``reader`` holds them."""
    unit: str | None = None
    sums: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != name:
                    continue
                unit = metric.unit
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint) and point.attributes is not None
                    sums[str(point.attributes[attribute])] = int(point.value)
    return unit, sums
