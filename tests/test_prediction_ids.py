"""The caller can name a call's prediction, read the ids its calls produced, and hears about unreadable outputs."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest

import detwatch
import detwatch_instrumentation
from _telemetry import Telemetry
from detwatch_instrumentation import _monitor, monitor_detections, prediction_context

IMAGE = np.zeros((48, 64, 3), np.uint8)
DETECTIONS = [{"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}]


def event_ids(telemetry: Telemetry) -> list[str]:
    assert detwatch_instrumentation.flush(10.0)
    return [json.loads(str(r.log_record.body))["prediction_id"] for r in telemetry.logs_exporter.get_finished_logs()]


def test_the_context_lists_the_ids_the_events_carry(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> Any:
        return DETECTIONS

    with prediction_context() as ctx:
        predict(IMAGE)
        predict(IMAGE)
    assert len(ctx.prediction_ids) == 2 and len(set(ctx.prediction_ids)) == 2
    assert event_ids(telemetry) == list(ctx.prediction_ids)
    span_ids = {(s.context.trace_id, s.context.span_id) for s in telemetry.spans_exporter.get_finished_spans()}
    for pid in ctx.prediction_ids:  # derived from the call's span, as the companion derives it
        trace_id, span_id, index = pid.split("-")
        assert (int(trace_id, 16), int(span_id, 16)) in span_ids and index == "0"


def test_a_given_prediction_id_names_the_first_call_and_each_image_of_a_batch(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> Any:
        return DETECTIONS

    @monitor_detections(model_id="b", batch=True, **telemetry.providers)
    def predict_batch(images: list[Any]) -> Any:
        return [DETECTIONS for _ in images]

    with prediction_context(prediction_id="request-123") as ctx:
        predict(IMAGE)
        predict(IMAGE)  # a second call must not reuse the id (the companion would drop it as a duplicate)
    with prediction_context(prediction_id=["req-9/a", "req-9/b"]) as batch_ctx:
        predict_batch([IMAGE, IMAGE])
    assert ctx.prediction_ids[0] == "request-123"
    assert ctx.prediction_ids[1] != "request-123"
    assert list(batch_ctx.prediction_ids) == ["req-9/a", "req-9/b"]
    assert sorted(event_ids(telemetry)) == sorted([*ctx.prediction_ids, "req-9/a", "req-9/b"])


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\x00b", "line\nbreak", ["ok", 3]])
def test_an_invalid_prediction_id_is_refused_naming_the_argument(bad: Any) -> None:
    with pytest.raises(ValueError, match="prediction_id"), prediction_context(prediction_id=bad):
        pass


def test_a_long_lived_context_keeps_a_bounded_list_of_ids(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> Any:
        return DETECTIONS

    with prediction_context(attributes={"camera": "c1"}) as ctx:
        for _ in range(1100):
            predict(IMAGE)
    assert len(ctx.prediction_ids) == 1000
    assert event_ids(telemetry)[-1000:] == list(ctx.prediction_ids)


def test_ids_reach_the_events_of_the_recorder_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from _otlp_receiver import Receiver

    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(service_name="ids", endpoint=receiver.url, set_global=False)

        @monitor_detections(
            model_id="m",
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            logger_provider=telemetry.logger_provider,
        )
        def predict(image: Any) -> Any:
            return DETECTIONS

        with prediction_context(prediction_id="request-7") as ctx:
            predict(IMAGE)
            predict(IMAGE)
        assert telemetry.force_flush()
        telemetry.shutdown()
        bodies = [
            json.loads(record.body.string_value)
            for request in receiver.logs()
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]
    assert sorted(b["prediction_id"] for b in bodies) == sorted(ctx.prediction_ids)
    assert "request-7" in ctx.prediction_ids


def test_an_unreadable_output_is_warned_about_once_per_reason(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    @monitor_detections(model_id="ocr", **telemetry.providers)
    def detect_text(image: Any) -> Any:
        # RapidOCR's raw result: (boxes as polygons, texts, scores)
        return ([[[0, 0], [10, 0], [10, 5], [0, 5]]], ["hello"], [0.9])

    with caplog.at_level(logging.WARNING, logger="detwatch_instrumentation"):
        for _ in range(5):
            detect_text(IMAGE)
        assert detwatch_instrumentation.flush(10.0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "detwatch_instrumentation"]
    assert len(warnings) == 1
    assert "'ocr'" in warnings[0] and "tuple" in warnings[0] and "adapter=" in warnings[0]

    caplog.clear()
    monkeypatch.setattr(_monitor, "WARN_INTERVAL_S", 0.0)  # the interval has passed: one more, with the count
    with caplog.at_level(logging.WARNING, logger="detwatch_instrumentation"):
        detect_text(IMAGE)
        assert detwatch_instrumentation.flush(10.0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "detwatch_instrumentation"]
    assert len(warnings) == 1
    assert "(4 more since the last warning)" in warnings[0]


def test_the_readmes_polygon_adapter_reads_a_text_detectors_output(telemetry: Telemetry) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in readme.split("```python")[1:] if "def polygons_to_boxes" in b).split("```")[0]
    namespace: dict[str, Any] = {"monitor_detections": monitor_detections, "engine": lambda image: None}
    exec(block.split("@monitor_detections")[0], namespace)  # the adapter itself

    @monitor_detections(model_id="ocr", adapter=namespace["polygons_to_boxes"], **telemetry.providers)
    def detect_text(image: Any) -> Any:
        return ([[[3, 4], [40, 2], [42, 20], [5, 22]]], ["hello"], [0.87])

    detect_text(IMAGE)
    assert detwatch_instrumentation.flush(10.0)
    (record,) = telemetry.logs_exporter.get_finished_logs()
    (detection,) = json.loads(str(record.log_record.body))["detections"]
    assert detection == {"class": "text", "confidence": 0.87, "box": [3.0, 2.0, 42.0, 22.0]}
