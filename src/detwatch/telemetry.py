"""One-line OpenTelemetry SDK set-up for applications that use detwatch.

The instrumentation package depends on the OpenTelemetry API only, as OpenTelemetry
intends for libraries; an application must still choose exporters. Most detwatch
users want the same thing: OTLP/HTTP for metrics, traces and logs to a Collector,
with the standard ``OTEL_*`` environment variables honoured (endpoint, headers,
resource attributes, service name, export intervals). This module does exactly
that and nothing clever.

Metrics are exported with **cumulative** temporality whatever
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` says: Prometheus-compatible
stores (VictoriaMetrics in particular) accept delta points over OTLP and silently
drop them. Exemplars are off unless ``OTEL_METRICS_EXEMPLAR_FILTER`` is set:
offering every measurement to an exemplar reservoir costs time on the hot path, and
users who want exemplars set the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import _logs, metrics, trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import detwatch_instrumentation

__all__ = ["Telemetry", "configure_opentelemetry"]

_CUMULATIVE: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.CUMULATIVE,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    Histogram: AggregationTemporality.CUMULATIVE,
    ObservableCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}


@dataclass(frozen=True)
class Telemetry:
    """The providers :func:`configure_opentelemetry` created."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Record what the decorator has queued, then export everything now."""
        recorded = detwatch_instrumentation.flush(timeout_millis / 1000)
        ok = self.tracer_provider.force_flush(timeout_millis)
        ok = self.meter_provider.force_flush(timeout_millis) and ok
        ok = self.logger_provider.force_flush(timeout_millis) and ok
        return recorded and ok

    def shutdown(self) -> None:
        """Flush and stop all three providers (also happens at interpreter exit)."""
        detwatch_instrumentation.flush(5.0)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def configure_opentelemetry(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Configure the OpenTelemetry SDK with OTLP/HTTP exporters for all three signals.

    ``endpoint`` is the Collector's base URL (e.g. ``http://localhost:4318``); when
    omitted, the exporters read ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the per-signal
    variables themselves (default ``http://localhost:4318``). ``service_name``,
    ``service_version`` and ``environment`` become ``service.name``,
    ``service.version`` and ``deployment.environment.name`` unless
    ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` already set them. With
    ``set_global`` (default) the providers become the global ones, which is what
    ``@monitor_detections`` uses unless given providers explicitly.
    """
    attrs: dict[str, str] = {}
    if service_name is not None:
        attrs["service.name"] = service_name
    if service_version is not None:
        attrs["service.version"] = service_version
    if environment is not None:
        attrs["deployment.environment.name"] = environment
    attrs.update(resource_attributes or {})
    # Resource.create lets code override the environment; deployments expect the
    # opposite (an operator's OTEL_SERVICE_NAME wins), so the environment is merged last.
    resource = Resource.create(attrs).merge(OTELResourceDetector().detect())

    def url(path: str) -> str | None:
        return f"{endpoint.rstrip('/')}/v1/{path}" if endpoint else None

    # Exemplars off unless the user asks for them through the standard variable.
    exemplar_filter = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url("traces"))))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url("metrics"), preferred_temporality=dict(_CUMULATIVE))
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], exemplar_filter=exemplar_filter)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=url("logs"))))
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _logs.set_logger_provider(logger_provider)
    return Telemetry(tracer_provider, meter_provider, logger_provider)
