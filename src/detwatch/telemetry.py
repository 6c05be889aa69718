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

The standard variables choose the exporters as the SDK's own auto-configuration does:
``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` and ``OTEL_LOGS_EXPORTER`` (``otlp``,
the default; ``console``; ``none``, which leaves that signal's provider a no-op, so the
decorator does no work for it), ``OTEL_EXPORTER_OTLP[_{SIGNAL}]_PROTOCOL``
(``http/protobuf``; ``grpc`` when ``opentelemetry-exporter-otlp-proto-grpc`` is
installed), and ``OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT``, which wins over the
``endpoint`` argument: that is how one signal goes elsewhere (prediction events straight
to the companion's ``/v1/logs``, say). Timeouts and headers are read by the exporters.

An unreachable Collector costs one warning per signal (then one every
:data:`EXPORT_WARNING_INTERVAL_S` with the count of what was suppressed), not one per
retry, and :meth:`Telemetry.force_flush` returns within its timeout.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import _logs, metrics, trace
from opentelemetry._logs import LoggerProvider as ApiLoggerProvider
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter, LogRecordExporter
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
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as ApiTracerProvider

import detwatch_instrumentation
from detwatch_instrumentation import _recorder_process

__all__ = ["Telemetry", "configure_opentelemetry", "recorder_process_providers", "recorder_providers"]

_CUMULATIVE: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.CUMULATIVE,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    Histogram: AggregationTemporality.CUMULATIVE,
    ObservableCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}


EXPORT_WARNING_INTERVAL_S = 300.0
"""Least time between two logged export failures of one signal (the others are counted)."""
_EXPORT_LOGGERS = (
    *(
        f"opentelemetry.exporter.otlp.proto.{transport}.{module}"
        for transport in ("http", "grpc")
        for module in ("trace_exporter", "metric_exporter", "_log_exporter")
    ),
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)
"""The loggers through which the OTLP exporters report failed and retried exports."""
_SIGNALS = ("traces", "metrics", "logs")
_EXPORTERS = ("otlp", "console", "none")


class _OncePerSignal(logging.Filter):
    """Lets one export failure per signal through, then one per interval with the count suppressed.

    The OTLP exporters log every retry of every batch: with the Collector down, a
    console fills with "Transient error ... retrying" lines that say nothing new.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        signal = record.name  # each signal's exporter has its own logger
        now = time.monotonic()
        with self._lock:
            last = self._last.get(signal)
            if last is not None and now - last[0] < EXPORT_WARNING_INTERVAL_S:
                self._last[signal] = (last[0], last[1] + 1)
                return False
            self._last[signal] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} similar messages suppressed)"
        return True


_EXPORT_FILTER = _OncePerSignal()


def _quiet_export_failures() -> None:
    for name in _EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        if _EXPORT_FILTER not in logger.filters:
            logger.addFilter(_EXPORT_FILTER)


def _exporter_kind(signal: str) -> str:
    """``otlp``, ``console`` or ``none`` for ``signal``, from ``OTEL_{SIGNAL}_EXPORTER``."""
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    value = os.environ.get(variable, "otlp").strip().lower() or "otlp"
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in _EXPORTERS]
    if unknown or len(kinds) != 1:
        raise ValueError(f"{variable}: detwatch supports one of {', '.join(_EXPORTERS)}, got {value!r}")
    return kinds[0]


def _protocol(signal: str) -> str:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(variable, "").strip().lower()
        if value:
            if value not in ("http/protobuf", "grpc"):
                raise ValueError(f"{variable}: detwatch supports http/protobuf and grpc, got {value!r}")
            return value
    return "http/protobuf"


_GRPC_EXPORTERS = {
    "traces": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    "logs": ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
}
_HTTP_EXPORTERS: dict[str, Callable[..., Any]] = {
    "traces": OTLPSpanExporter,
    "metrics": OTLPMetricExporter,
    "logs": OTLPLogExporter,
}


def _otlp_exporter(signal: str, endpoint: str | None, **kwargs: Any) -> Any:
    """The OTLP exporter of ``signal``; a per-signal endpoint variable wins over ``endpoint``."""
    if os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"):
        endpoint = None  # the exporter reads it
    protocol = _protocol(signal)
    if protocol == "grpc":
        module_name, class_name = _GRPC_EXPORTERS[signal]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError:
            raise ValueError(
                "OTEL_EXPORTER_OTLP_PROTOCOL: grpc needs the opentelemetry-exporter-otlp-proto-grpc package"
                " (pip install opentelemetry-exporter-otlp-proto-grpc), or use http/protobuf"
            ) from None
        # A gRPC endpoint is a host and port, not a URL path.
        return cls(endpoint=endpoint, **kwargs)
    return _HTTP_EXPORTERS[signal](endpoint=_url(endpoint, signal), **kwargs)


@dataclass(frozen=True)
class Telemetry:
    """The providers :func:`configure_opentelemetry` created (a signal set to ``none`` has the API's no-op)."""

    tracer_provider: ApiTracerProvider
    meter_provider: ApiMeterProvider
    logger_provider: ApiLoggerProvider

    def _providers(self) -> list[Any]:
        return [self.tracer_provider, self.meter_provider, self.logger_provider]

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Record what the decorator has queued, then export everything now; ``False`` past the timeout.

        The providers flush side by side, each given what is left of ``timeout_millis``:
        an exporter retrying an unreachable Collector makes this return ``False`` on time
        (it goes on retrying in the background), never wait once per signal.
        """
        deadline = time.monotonic() + timeout_millis / 1000
        recorded = detwatch_instrumentation.flush(timeout_millis / 1000)
        results: list[bool] = []

        def flush(provider: Any) -> None:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            results.append(bool(provider.force_flush(left)))

        threads = [
            threading.Thread(target=flush, args=(p,), name="detwatch-force-flush", daemon=True)
            for p in self._providers()
            if hasattr(p, "force_flush")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return recorded and len(results) == len(threads) and all(results)

    def shutdown(self) -> None:
        """Flush and stop all three providers (also happens at interpreter exit)."""
        detwatch_instrumentation.flush(5.0)
        _recorder_process.PROCESS.release(self.meter_provider, self.logger_provider)
        for provider in self._providers():
            if hasattr(provider, "shutdown"):
                provider.shutdown()


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
) -> tuple[ApiMeterProvider, ApiLoggerProvider]:
    """The meter and logger providers of :func:`configure_opentelemetry` (also run in the recorder process)."""
    _quiet_export_failures()
    resource = _resource(
        service_name=service_name,
        service_version=service_version,
        environment=environment,
        resource_attributes=dict(resource_attributes or {}),
    )
    meter_provider: ApiMeterProvider = NoOpMeterProvider()
    metrics_kind = _exporter_kind("metrics")
    if metrics_kind != "none":
        metric_exporter: MetricExporter
        if metrics_kind == "console":
            metric_exporter = ConsoleMetricExporter(preferred_temporality=dict(_CUMULATIVE))
        else:
            metric_exporter = _otlp_exporter("metrics", endpoint, preferred_temporality=dict(_CUMULATIVE))
        # Exemplars off unless the user asks for them through the standard variable.
        exemplar_filter = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
        reader = PeriodicExportingMetricReader(metric_exporter)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader], exemplar_filter=exemplar_filter)
    logger_provider: ApiLoggerProvider = NoOpLoggerProvider()
    logs_kind = _exporter_kind("logs")
    if logs_kind != "none":
        log_exporter: LogRecordExporter = (
            ConsoleLogRecordExporter() if logs_kind == "console" else _otlp_exporter("logs", endpoint)
        )
        sdk_logger_provider = LoggerProvider(resource=resource)
        sdk_logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        logger_provider = sdk_logger_provider
    return meter_provider, logger_provider


def _tracer_provider(resource: Resource, endpoint: str | None) -> ApiTracerProvider:
    traces_kind = _exporter_kind("traces")
    if traces_kind == "none":
        return NoOpTracerProvider()
    span_exporter: SpanExporter = (
        ConsoleSpanExporter() if traces_kind == "console" else _otlp_exporter("traces", endpoint)
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return tracer_provider


def recorder_process_providers(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> tuple[ApiMeterProvider, ApiLoggerProvider, ApiTracerProvider]:
    """:func:`recorder_providers` plus the tracer provider of :func:`configure_opentelemetry`, for the recorder."""
    meter_provider, logger_provider = recorder_providers(
        service_name=service_name,
        service_version=service_version,
        environment=environment,
        endpoint=endpoint,
        resource_attributes=resource_attributes,
    )
    resource = _resource(
        service_name=service_name,
        service_version=service_version,
        environment=environment,
        resource_attributes=dict(resource_attributes or {}),
    )
    return meter_provider, logger_provider, _tracer_provider(resource, endpoint)


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
    variables themselves (default ``http://localhost:4318``); a per-signal endpoint
    variable wins over ``endpoint``, and ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` choose
    ``otlp``, ``console`` or ``none`` per signal (see the module documentation).
    ``service_name``, ``service_version`` and ``environment`` become ``service.name``,
    ``service.version`` and ``deployment.environment.name`` unless
    ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` already set them. With
    ``set_global`` (default) the providers become the global ones, which is what
    ``@monitor_detections`` uses unless given providers explicitly.

    ``recorder="process"`` (default) records the decorator's metrics and prediction
    events in a separate process that builds the same providers, so that the
    per-detection work never takes the inference process's GIL (a detector's eager
    forward pass holds it); the decorator's spans are planned here (ids, sampling,
    parent, times) and built and exported there too. ``"thread"`` records them on a
    background thread of this process.

    A variable with a value detwatch cannot honour raises ``ValueError`` naming it.
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
    for signal in _SIGNALS:  # every mistake in the variables is reported here, before anything starts
        if _exporter_kind(signal) == "otlp":
            _protocol(signal)
    _quiet_export_failures()
    resource = _resource(**settings)
    instance = resource.attributes.get("service.instance.id")
    if isinstance(instance, str):
        # The recorder process describes this process: the same instance, not a new random one.
        settings["resource_attributes"] = {**settings["resource_attributes"], "service.instance.id": instance}
    tracer_provider = _tracer_provider(resource, endpoint)
    meter_provider, logger_provider = recorder_providers(**settings)
    recorded = isinstance(meter_provider, MeterProvider) or isinstance(logger_provider, LoggerProvider)
    if recorder == "process" and recorded:
        # The decorator's metrics and events are recorded by a process that builds these
        # two providers again from the same settings (and environment): see
        # detwatch_instrumentation._recorder_process for why.
        # It builds the tracer provider too, and the decorator's spans with it (planned
        # here: detwatch_instrumentation._span_plan).
        detwatch_instrumentation.use_recorder_process(
            "detwatch.telemetry:recorder_process_providers",
            config=settings,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            tracer_provider=tracer_provider,
        )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _logs.set_logger_provider(logger_provider)
    return Telemetry(tracer_provider, meter_provider, logger_provider)
