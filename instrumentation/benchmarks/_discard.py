"""Exporters that count and discard, and an SDK built on them, for the overhead benchmarks.

Discarding takes serialisation for the wire out of every variant alike, so that the
benchmarks compare the recording work itself. The recorder process builds its
providers with :func:`recorder_process_providers` (passed to
``detwatch_instrumentation.use_recorder_process``); since its exporters live in another
process, they write what they counted to a JSON file after every export, which the
benchmark reads back to check that everything arrived. This module imports no
framework, so that a recorder process started from a GPU benchmark stays light.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from detwatch_instrumentation import semconv

SERVICE = "detwatch-bench"


class _Tally:
    """What the exporters of one SDK received; written to ``path`` (if any) after each export."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.spans = 0
        self.logs = 0
        self.detections = 0.0
        self._lock = threading.Lock()  # the span and log exporters save from their own threads

    def save(self) -> None:
        if self.path is not None:
            with self._lock:
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump({"spans": self.spans, "logs": self.logs, "detections": self.detections}, f)
                os.replace(tmp, self.path)


class Spans(SpanExporter):
    def __init__(self, tally: _Tally) -> None:
        self.tally = tally

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.tally.spans += len(spans)
        self.tally.save()
        return SpanExportResult.SUCCESS


class Metrics(MetricExporter):
    """Discards metrics; remembers the cumulative sum of ``objdet.detections``."""

    def __init__(self, tally: _Tally) -> None:
        super().__init__()
        self.tally = tally

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        total = 0.0
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == semconv.DETECTIONS.name:
                        total += sum(float(getattr(p, "value", 0.0)) for p in metric.data.data_points)
        self.tally.detections = total
        self.tally.save()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class Logs(LogRecordExporter):
    def __init__(self, tally: _Tally) -> None:
        self.tally = tally

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.tally.logs += len(batch)
        self.tally.save()
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class Sdk:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    tally: _Tally

    def force_flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def _meter_and_logger(tally: _Tally) -> tuple[MeterProvider, LoggerProvider]:
    resource = Resource.create({"service.name": SERVICE})
    reader = PeriodicExportingMetricReader(Metrics(tally), export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(Logs(tally)))
    return meter_provider, logger_provider


def _tracer(tally: _Tally) -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    tracer_provider.add_span_processor(BatchSpanProcessor(Spans(tally)))
    return tracer_provider


def discarding_sdk(counts_path: str | None = None) -> Sdk:
    """The realistic set-up: batch processors and a periodic reader (60 s: no export mid-measurement)."""
    tally = _Tally(counts_path)
    tracer_provider = _tracer(tally)
    meter_provider, logger_provider = _meter_and_logger(tally)
    return Sdk(tracer_provider, meter_provider, logger_provider, tally)


def recorder_process_providers(counts_path: str) -> tuple[MeterProvider, LoggerProvider, TracerProvider]:
    """The same three providers, in the recorder process, which then also builds the planned spans."""
    tally = _Tally(counts_path)
    meter_provider, logger_provider = _meter_and_logger(tally)
    return meter_provider, logger_provider, _tracer(tally)


def read_counts(path: str) -> dict[str, float]:
    """What a recorder process's exporters counted (zeros before its first export)."""
    try:
        with open(path, encoding="utf-8") as f:
            counts: dict[str, float] = json.load(f)
            return counts
    except FileNotFoundError:
        return {"spans": 0, "logs": 0, "detections": 0.0}
