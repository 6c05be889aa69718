"""``detwatch.configure_opentelemetry``: real OTLP/HTTP exports to a loopback receiver.

The receiver is a plain HTTP server that decodes what the SDK's exporters post with
the OTLP protobuf definitions, as a Collector's ``otlphttp`` receiver would.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

import detwatch
import detwatch_instrumentation
from _components import free_port
from _otlp_receiver import Receiver
from detwatch_instrumentation import monitor_detections, semconv

DETECTIONS = [{"class": "car", "confidence": 0.9, "box": [0.0, 0.0, 64.0, 48.0]}]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def resource_attrs(resource: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in resource.attributes}


def test_one_call_sets_up_otlp_http_for_metrics_traces_and_logs(receiver: Receiver) -> None:
    telemetry = detwatch.configure_opentelemetry(
        service_name="vehicle-detector",
        service_version="1.4.0",
        environment="staging",
        endpoint=receiver.url,
        set_global=False,
    )

    @monitor_detections(
        model_id="vehicles",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    predict(np.zeros((480, 640, 3), dtype=np.uint8))
    assert telemetry.force_flush()
    telemetry.shutdown()

    metric_requests = receiver.metrics()
    assert metric_requests
    rm = metric_requests[0].resource_metrics[0]
    assert (
        resource_attrs(rm.resource).items()
        >= {
            "service.name": "vehicle-detector",
            "service.version": "1.4.0",
            "deployment.environment.name": "staging",
        }.items()
    )
    metrics = {m.name: m for r in metric_requests for sm in r.resource_metrics[0].scope_metrics for m in sm.metrics}
    assert metrics[semconv.DETECTION_CONFIDENCE.name].histogram.aggregation_temporality == (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    assert metrics[semconv.DETECTIONS.name].sum.aggregation_temporality == (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    point = metrics[semconv.DETECTION_CONFIDENCE.name].histogram.data_points[0]
    assert list(point.explicit_bounds) == list(semconv.DETECTION_CONFIDENCE.bounds or ())
    assert list(point.exemplars) == []  # exemplars off by default

    spans = [s for r in receiver.traces() for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in spans] == ["detect vehicles"]
    records = [x for r in receiver.logs() for rl in r.resource_logs for sl in rl.scope_logs for x in sl.log_records]
    assert len(records) == 1
    assert records[0].event_name == semconv.EVENT_PREDICTION
    assert records[0].trace_id == spans[0].trace_id
    assert records[0].span_id == spans[0].span_id
    body = json.loads(records[0].body.string_value)
    assert body["model_id"] == "vehicles"
    assert body["detections"] == DETECTIONS


def test_standard_otel_environment_variables_win(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=vision")
    telemetry = detwatch.configure_opentelemetry(service_name="from-code", environment="dev", set_global=False)
    telemetry.meter_provider.get_meter("t").create_counter("objdet.test").add(1)
    assert telemetry.force_flush()
    telemetry.shutdown()
    attrs = resource_attrs(receiver.metrics()[0].resource_metrics[0].resource)
    assert attrs["service.name"] == "from-env"
    assert attrs["deployment.environment.name"] == "prod"
    assert attrs["team"] == "vision"


def test_unreachable_collector_never_blocks_or_breaks_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Exports are attempted during the calls (short intervals) and each attempt may
    # wait up to the exporter timeout: if anything blocked the caller on export, a
    # call would take about that long.
    export_timeout_s = 2
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(export_timeout_s))
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    closed = f"http://127.0.0.1:{free_port()}"
    telemetry = detwatch.configure_opentelemetry(service_name="offline", endpoint=closed, set_global=False)

    @monitor_detections(
        model_id="m",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> list[dict[str, Any]]:
        time.sleep(0.002)
        return DETECTIONS

    image = np.zeros((480, 640, 3), dtype=np.uint8)
    durations = []
    deadline = time.monotonic() + 1.5  # spans several export attempts
    calls = 0
    while time.monotonic() < deadline and calls < 2000:
        started = time.perf_counter()
        assert predict(image) is DETECTIONS
        durations.append(time.perf_counter() - started)
        calls += 1
    assert calls >= 50
    assert max(durations) < export_timeout_s / 4
    assert detwatch_instrumentation.flush(5.0)  # the recorder is not stuck either
    started = time.monotonic()
    telemetry.shutdown()
    assert time.monotonic() - started < 30


def _count(requests: list[Any]) -> int:
    return len(requests)


def test_exporter_variables_turn_signals_off_and_send_one_elsewhere(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user guide's set-up with no Collector: prediction events straight to the
    # companion's /v1/logs, traces and metrics off (the companion answers 404 to them).
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", f"{receiver.url}/v1/logs")
    closed = f"http://127.0.0.1:{free_port()}"
    telemetry = detwatch.configure_opentelemetry(service_name="no-collector", endpoint=closed, set_global=False)

    @monitor_detections(
        model_id="m",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    for _ in range(5):
        predict(np.zeros((48, 64, 3), dtype=np.uint8))
    started = time.monotonic()
    assert telemetry.force_flush()
    assert time.monotonic() - started < 5
    telemetry.shutdown()
    events = sum(len(sl.log_records) for r in receiver.logs() for rl in r.resource_logs for sl in rl.scope_logs)
    assert events == 5
    assert not receiver.posts.get("/v1/traces") and not receiver.posts.get("/v1/metrics")
    # Off means off: the API's no-op providers, so the decorator does no work for them.
    assert type(telemetry.tracer_provider).__module__.startswith("opentelemetry.trace")
    assert type(telemetry.meter_provider).__module__.startswith("opentelemetry.metrics")


def test_console_exporters_print_what_they_export() -> None:
    code = (
        "import numpy as np, detwatch\n"
        "from detwatch_instrumentation import monitor_detections\n"
        "telemetry = detwatch.configure_opentelemetry(service_name='console')\n"
        "predict = monitor_detections(model_id='printed')(lambda image: [])\n"
        "predict(np.zeros((4, 4, 3), np.uint8))\n"
        "assert telemetry.force_flush()\n"
    )
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert '"name": "detect printed"' in out.stdout


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_METRICS_EXPORTER", "prometheus", "OTEL_METRICS_EXPORTER"),
        ("OTEL_TRACES_EXPORTER", "otlp,console", "OTEL_TRACES_EXPORTER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc", "opentelemetry-exporter-otlp-proto-grpc"),
    ],
)
def test_a_variable_detwatch_cannot_honour_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=named):
        detwatch.configure_opentelemetry(service_name="bad", set_global=False)


def test_an_unreachable_collector_costs_a_bounded_flush_and_one_warning_per_signal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setattr(detwatch.telemetry._EXPORT_FILTER, "_last", {})  # forget earlier tests' failures
    closed = f"http://127.0.0.1:{free_port()}"
    telemetry = detwatch.configure_opentelemetry(
        service_name="offline", endpoint=closed, set_global=False, recorder="thread"
    )

    @monitor_detections(
        model_id="m",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            predict(np.zeros((48, 64, 3), dtype=np.uint8))
        started = time.monotonic()
        assert not telemetry.force_flush(timeout_millis=1000)  # nothing could be sent
        assert time.monotonic() - started < 1.5
        assert not telemetry.force_flush(timeout_millis=1000)
        time.sleep(3.5)  # the exporters' retries run out meanwhile
    failures = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    per_signal: dict[str, int] = {}
    for record in failures:
        per_signal[record.name] = per_signal.get(record.name, 0) + 1
    assert failures and all(n == 1 for n in per_signal.values()), per_signal
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.2")
    telemetry.shutdown()
