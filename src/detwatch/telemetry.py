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
from typing import Any, Literal

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
from detwatch_instrumentation import _recorder_process

__all__ = ["Telemetry", "configure_opentelemetry", "recorder_providers"]

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
        _recorder_process.PROCESS.release(self.meter_provider, self.logger_provider)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def _resource(
    *,
    service_name: str | None,
    service_version: str | None,
    environment: str | None,
    resource_attributes: Mapping[str, str],
    **_: Any,
) -> Resource:
    attrs: dict[str, str] = {}
    if service_name is not None:
        attrs["service.name"] = service_name
    if service_version is not None:
        attrs["service.version"] = service_version
    if environment is not None:
        attrs["deployment.environment.name"] = environment
    attrs.update(resource_attributes)
    # Resource.create lets code override the environment; deployments expect the
    # opposite (an operator's OTEL_SERVICE_NAME wins), so the environment is merged last.
    return Resource.create(attrs).merge(OTELResourceDetector().detect())


def _url(endpoint: str | None, path: str) -> str | None:
    return f"{endpoint.rstrip('/')}/v1/{path}" if endpoint else None


def recorder_providers(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> tuple[MeterProvider, LoggerProvider]:
    """The meter and logger providers of :func:`configure_opentelemetry` (also run in the recorder process)."""
    resource = _resource(
        service_name=service_name,
        service_version=service_version,
        environment=environment,
        resource_attributes=dict(resource_attributes or {}),
    )
    # Exemplars off unless the user asks for them through the standard variable.
    exemplar_filter = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=_url(endpoint, "metrics"), preferred_temporality=dict(_CUMULATIVE))
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], exemplar_filter=exemplar_filter)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=_url(endpoint, "logs"))))
    return meter_provider, logger_provider


def configure_opentelemetry(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
    recorder: Literal["process", "thread"] = "process",
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

    ``recorder="process"`` (default) records the decorator's metrics and prediction
    events in a separate process that builds the same providers, so that the
    per-detection work never takes the inference process's GIL (a detector's eager
    forward pass holds it); spans stay here. ``"thread"`` records them on a
    background thread of this process.
    """
    if recorder not in ("process", "thread"):
        raise ValueError(f"recorder: must be 'process' or 'thread', got {recorder!r}")
    settings: dict[str, Any] = {
        "service_name": service_name,
        "service_version": service_version,
        "environment": environment,
        "endpoint": endpoint,
        "resource_attributes": dict(resource_attributes or {}),
    }
    resource = _resource(**settings)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_url(endpoint, "traces"))))
    meter_provider, logger_provider = recorder_providers(**settings)
    if recorder == "process":
        # The decorator's metrics and events are recorded by a process that builds these
        # two providers again from the same settings (and environment): see
        # detwatch_instrumentation._recorder_process for why.
        detwatch_instrumentation.use_recorder_process(
            "detwatch.telemetry:recorder_providers",
            config=settings,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
        )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _logs.set_logger_provider(logger_provider)
    return Telemetry(tracer_provider, meter_provider, logger_provider)
