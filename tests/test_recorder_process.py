"""Recording in a separate process: the same telemetry as in-process, and a lifecycle that never hurts inference.

Every test runs the real recorder process and exports over real OTLP/HTTP to a
loopback receiver that decodes the protobuf posts, as a Collector would.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np
import pytest
import supervision as sv
from opentelemetry import trace

import detwatch
import detwatch_instrumentation
from _otlp_receiver import Receiver
from detwatch_instrumentation import (
    Detection,
    _fast_path,
    _monitor,
    _recorder_process,
    _span_plan,
    monitor_detections,
    prediction_context,
    semconv,
    stage,
)

IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)
NAMES = {0: "car", 1: "person", 2: "truck"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class UltralyticsLike:
    """The attributes of an Ultralytics ``Results`` the decorator reads (duck-typed, as it reads the real one)."""

    class Boxes:
        def __init__(self, data: np.ndarray) -> None:
            self.data = data
            self.xyxy = data[:, :4]
            self.conf = data[:, 4]
            self.cls = data[:, 5]

    def __init__(self, data: np.ndarray) -> None:
        self.boxes = self.Boxes(data)
        self.names = {0: "bus", 1: "bike"}
        self.orig_shape = (480, 640)


def outputs() -> list[tuple[str, dict[str, Any], Any]]:
    """(name, decorator options, output) for every output format, valid and invalid detections mixed."""
    rng = np.random.default_rng(3)
    boxes = np.array([[10, 20, 110, 220], [5, 5, 50, 60], [300, 100, 400, 300], [1, 1, 1, 9]], np.float32)
    scores = np.array([0.91, 0.42, 0.77, 0.5], np.float32)
    labels = np.array([0, 1, 2, 1], np.int64)
    matrix = np.concatenate([boxes, scores[:, None], labels[:, None].astype(np.float32)], axis=1)
    return [
        (
            "dicts",
            {},
            [
                {"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]},
                {"label": "dog", "score": np.float32(0.3), "bbox": [5, 5, 25, 45]},
                {"class": "cat", "confidence": float("nan"), "box": [1, 1, 2, 2]},
                {"class": "", "confidence": 0.4, "box": [1, 1, 2, 2]},
            ],
        ),
        ("torchvision", {"label_names": NAMES}, {"boxes": boxes, "scores": scores, "labels": labels}),
        ("matrix", {"label_names": NAMES}, matrix),
        ("empty matrix", {}, np.zeros((0, 6), np.float32)),
        ("detections", {}, [Detection("car", 0.8, (1.0, 1.0, 9.0, 9.0)), Detection("bus", 0.6, (2.0, 2.0, 8.0, 6.0))]),
        (
            "supervision",
            {},
            sv.Detections(
                xyxy=boxes.astype(np.float64),
                confidence=scores,
                class_id=labels,
                data={"class_name": np.array(["car", "person", "truck", "person"])},
            ),
        ),
        ("ultralytics", {}, UltralyticsLike(matrix)),
        ("normalised xywh", {"box_format": "xywh", "normalized_boxes": True}, rng.uniform(0.05, 0.4, (5, 6))),
        (
            "adapter",
            {"adapter": lambda out: out["items"]},
            {"items": [{"class": "car", "confidence": 0.7, "box": [0, 0, 5, 5]}]},
        ),
        ("adapter raises", {"adapter": lambda out: out["missing"]}, {}),
        ("unreadable", {}, object()),
        (
            "many classes",
            {"max_classes": 2},
            [{"class": f"c{i}", "confidence": 0.5, "box": [0, 0, 3, 3]} for i in range(4)],
        ),
    ]


def run_calls(telemetry: detwatch.Telemetry) -> int:
    """The same calls for either recorder; returns how many images they covered."""
    providers: dict[str, Any] = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
        "logger_provider": telemetry.logger_provider,
    }
    images = 0
    for name, options, output in outputs():

        @monitor_detections(model_id=name.replace(" ", "-"), model_version="v1", **options, **providers)
        def predict(image: Any, _output: Any = output) -> Any:
            with stage("inference"):
                pass
            return _output

        assert predict(IMAGE) is output
        with prediction_context(image_key="cam1/0001.jpg", ab_variant="b", attributes={"camera": "cam1", "n": 3}):
            predict(IMAGE)
        predict("images/frame.jpg")
        images += 3

    @monitor_detections(model_id="batch", metric_attribute_allowlist=["camera"], **providers)
    def predict_batch(images: list[Any]) -> list[Any]:
        return [[{"class": "car", "confidence": 0.5 + i / 10, "box": [0, 0, 10 + i, 10]}] for i in range(len(images))]

    with prediction_context(image_uri=["s3://b/1.jpg", "s3://b/2.jpg"], attributes={"camera": "cam2"}):
        predict_batch([IMAGE, np.zeros((100, 200, 3), np.uint8)])
    images += 2

    @monitor_detections(model_id="fails", **providers)
    def broken(image: Any) -> Any:
        raise KeyError("model not loaded")

    with pytest.raises(KeyError):
        broken(IMAGE)
    return images + 1


def _value(point: Any) -> Any:
    if point.HasField("as_double"):
        return point.as_double
    return point.as_int


def _attrs(kvs: Any) -> tuple[tuple[str, Any], ...]:
    out = []
    for kv in kvs:
        v = kv.value
        out.append((kv.key, getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None))
    return tuple(sorted(out))


def metrics_of(receiver: Receiver) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    """The last cumulative value of every objdet series: histograms as (count, sum, buckets, min, max)."""
    series: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    for request in receiver.metrics():
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if not m.name.startswith("objdet."):
                        continue
                    if m.HasField("histogram"):
                        for p in m.histogram.data_points:
                            timing = m.name == semconv.INFERENCE_DURATION.name
                            value = (p.count,) if timing else (p.count, p.sum, tuple(p.bucket_counts), p.min, p.max)
                            series[(m.name, _attrs(p.attributes))] = (
                                m.unit,
                                tuple(m.histogram.data_points[0].explicit_bounds),
                                value,
                            )
                    else:
                        for q in m.sum.data_points:
                            series[(m.name, _attrs(q.attributes))] = (m.unit, _value(q))
    return series


def events_of(receiver: Receiver) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """Prediction event bodies (times and ids taken out) and the (trace, span) ids they carry."""
    bodies, links = [], set()
    for request in receiver.logs():
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    body = json.loads(record.body.string_value)
                    assert body["time"].endswith("Z") and body["latency_ms"] >= 0
                    if "trace_id" in body:
                        assert record.trace_id.hex() == body["trace_id"] and record.span_id.hex() == body["span_id"]
                        assert body["prediction_id"].startswith(f"{body['trace_id']}-{body['span_id']}-")
                        links.add((body.pop("trace_id"), body.pop("span_id")))
                    for key in ("time", "latency_ms", "prediction_id"):
                        body.pop(key)
                    body["record_attributes"] = _attrs(record.attributes)
                    body["event_name"] = record.event_name
                    bodies.append(body)
    return sorted(bodies, key=lambda b: json.dumps(b, sort_keys=True, default=str)), links


def spans_of(receiver: Receiver) -> tuple[list[tuple[Any, ...]], set[tuple[str, str]]]:
    spans, ids = [], set()
    for request in receiver.traces():
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append((span.name, _attrs(span.attributes), span.status.code))
                    ids.add((span.trace_id.hex(), span.span_id.hex()))
    return sorted(spans, key=str), ids


def record_with(recorder: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(
            service_name="same",
            endpoint=receiver.url,
            set_global=False,
            recorder=recorder,  # type: ignore[arg-type]
        )
        images = run_calls(telemetry)
        used_process = _recorder_process.recorder_pid() is not None
        assert telemetry.force_flush()
        telemetry.shutdown()
        events, links = events_of(receiver)
        spans, span_ids = spans_of(receiver)
        assert links <= span_ids  # every event points at its call's span
        return used_process, images, metrics_of(receiver), events, spans


def test_the_recorder_process_exports_exactly_what_the_recording_thread_does(monkeypatch: pytest.MonkeyPatch) -> None:
    used_thread, images, thread_metrics, thread_events, thread_spans = record_with("thread", monkeypatch)
    used_process, _, process_metrics, process_events, process_spans = record_with("process", monkeypatch)
    assert not used_thread and used_process
    assert thread_metrics and len(thread_events) >= images - 10  # unreadable outputs have no event
    assert process_metrics == thread_metrics
    assert process_events == thread_events
    assert process_spans == thread_spans
    reasons = {
        dict(attrs).get(semconv.ATTR_REASON) for name, attrs in thread_metrics if name == semconv.INVALID_OUTPUTS.name
    }
    assert {"adapter_error", "unrecognized_format", "confidence_not_finite", "class_missing"} <= reasons


def span_tree(receiver: Receiver) -> list[tuple[Any, ...]]:
    """Every span with what a trace view shows of it: parent (by name), kind, attributes, status, events, scope."""
    spans = [
        (span, rs.resource, ss.scope)
        for request in receiver.traces()
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    names = {span.span_id: span.name for span, _, _ in spans}
    tree = []
    for span, resource, scope in spans:
        events = tuple(
            (
                e.name,
                tuple(sorted(kv.key for kv in e.attributes)),
                span.start_time_unix_nano <= e.time_unix_nano <= span.end_time_unix_nano,
            )
            for e in span.events
        )
        tree.append(
            (
                span.name,
                names.get(span.parent_span_id, "(root)" if not span.parent_span_id else "(missing)"),
                span.kind,
                _attrs(span.attributes),
                span.status.code,
                span.status.message,
                events,
                scope.name,
                scope.version,
                dict(_attrs(resource.attributes)).get("service.name"),
                span.end_time_unix_nano >= span.start_time_unix_nano > 0,
                span.flags,
            )
        )
    return sorted(tree, key=str)


def traced_calls(recorder: str) -> tuple[list[tuple[Any, ...]], set[tuple[str, str]], set[tuple[str, str]]]:
    """A root call, a call under the application's span whose model sets an attribute and starts a span, a failure."""
    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(
            service_name="traced",
            endpoint=receiver.url,
            set_global=False,
            recorder=recorder,  # type: ignore[arg-type]
        )
        tracer = telemetry.tracer_provider.get_tracer("app")
        output = [{"class": "car", "confidence": 0.5, "box": [0, 0, 10, 10]}]

        @monitor_detections(
            model_id="m",
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            logger_provider=telemetry.logger_provider,
        )
        def predict(image: Any, fail: bool = False) -> Any:
            current = trace.get_current_span()
            current.set_attribute("model.step", 3)
            current.set_attributes({"model.tags": ["a", "b"], "model.bad": object()})  # type: ignore[dict-item]
            with tracer.start_as_current_span("nms"):
                pass
            if fail:
                raise ValueError("bad input")
            return output

        predict(IMAGE)
        with tracer.start_as_current_span("request"):
            predict(IMAGE)
        with pytest.raises(ValueError):
            predict(IMAGE, fail=True)
        assert telemetry.force_flush()
        telemetry.shutdown()
        _, links = events_of(receiver)
        ids = {
            (span.trace_id.hex(), span.span_id.hex())
            for request in receiver.traces()
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
            if span.name == "detect m"
        }
        return span_tree(receiver), links, ids


def test_spans_planned_here_and_built_by_the_recorder_process_are_the_sdks_spans() -> None:
    fast_begin = _fast_path.FastRoute.begin
    with (
        mock.patch.object(_monitor, "plan_span", wraps=_span_plan.plan_span) as planned,
        mock.patch.object(_fast_path.FastRoute, "begin", autospec=True, side_effect=fast_begin) as fast_planned,
    ):
        thread_tree, thread_links, thread_ids = traced_calls("thread")
        assert planned.call_count + fast_planned.call_count == 0  # real spans
        process_tree, process_links, process_ids = traced_calls("process")
        # planned here (by the general path or the fast one), built by the recorder process
        assert planned.call_count + fast_planned.call_count == 3
    assert process_tree == thread_tree
    names = [(name, parent) for name, parent, *_ in process_tree]
    assert sorted(names) == sorted(
        [("detect m", "(root)"), ("detect m", "request"), ("detect m", "(root)"), ("request", "(root)")]
        + [("nms", "detect m")] * 3
    )
    failed = [t for t in process_tree if t[0] == "detect m" and t[4] == 2]  # STATUS_CODE_ERROR
    assert len(failed) == 1 and failed[0][5] == "ValueError: bad input"
    assert failed[0][6][0][0] == "exception"
    attrs = dict(failed[0][3])
    assert attrs["model.step"] == 3 and attrs[semconv.ATTR_ERROR_TYPE] == "ValueError"  # model.bad: as the SDK keeps it
    # Each prediction event points at its call's span, built in the other process.
    # (the failed call has no event)
    assert process_links <= process_ids and len(process_links) == 2 and len(process_ids) == 3
    assert thread_links <= thread_ids and len(thread_links) == 2


def test_a_planned_span_whose_call_is_recorded_here_after_all_is_built_here(
    receiver: Receiver, process_telemetry: detwatch.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    predict = decorated(process_telemetry)
    predict(IMAGE)
    # The recorder process refuses the next call (as when it could not be started again).
    monkeypatch.setattr(_recorder_process.PROCESS, "send_call", lambda monitor, call: False)
    predict(IMAGE)
    monkeypatch.undo()
    assert process_telemetry.force_flush()
    process_telemetry.shutdown()
    events, links = events_of(receiver)
    spans, ids = spans_of(receiver)
    assert len(spans) == 2 and len(events) == 2
    assert links == ids


@pytest.fixture
def process_telemetry(receiver: Receiver) -> Iterator[detwatch.Telemetry]:
    telemetry = detwatch.configure_opentelemetry(service_name="lifecycle", endpoint=receiver.url, set_global=False)
    yield telemetry
    telemetry.shutdown()


def decorated(telemetry: detwatch.Telemetry, detections: int = 3, model_id: str = "m") -> Callable[[Any], Any]:
    output = [{"class": "car", "confidence": 0.5, "box": [0, 0, 10, 10]}] * detections

    @monitor_detections(
        model_id=model_id,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> Any:
        return output

    return predict


def counter_total(receiver: Receiver, name: str) -> float:
    return float(sum(v[1] for (n, _), v in metrics_of(receiver).items() if n == name))


def event_count(receiver: Receiver) -> int:
    return sum(len(sl.log_records) for r in receiver.logs() for rl in r.resource_logs for sl in rl.scope_logs)


def test_a_killed_recorder_process_is_started_again_and_recording_goes_on(
    receiver: Receiver, process_telemetry: detwatch.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recorder_process, "CHECK_INTERVAL_S", 0.0)
    predict = decorated(process_telemetry)
    predict(IMAGE)
    assert detwatch_instrumentation.flush()
    first = _recorder_process.recorder_pid()
    assert first is not None
    restarts = _recorder_process.PROCESS.stats.restarts
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _recorder_process.recorder_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(10):
        predict(IMAGE)  # never raises, never waits
    assert detwatch_instrumentation.flush()
    second = _recorder_process.recorder_pid()
    assert second is not None and second != first
    assert _recorder_process.PROCESS.stats.restarts == restarts + 1
    process_telemetry.shutdown()
    # The first call was exported by the first process; the calls after the kill by the second.
    assert event_count(receiver) >= 11


def test_a_recorder_process_that_keeps_dying_leaves_recording_in_process(
    receiver: Receiver, process_telemetry: detwatch.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_recorder_process, "CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr(_recorder_process, "MAX_RESTARTS", 0)
    predict = decorated(process_telemetry, detections=2)
    predict(IMAGE)
    assert detwatch_instrumentation.flush()
    pid = _recorder_process.recorder_pid()
    assert pid is not None
    fallbacks = _recorder_process.PROCESS.stats.fallbacks
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _recorder_process.recorder_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(5):
        predict(IMAGE)
    assert _recorder_process.PROCESS.stats.fallbacks == fallbacks + 1
    assert not _recorder_process.PROCESS.serves(process_telemetry.meter_provider, process_telemetry.logger_provider)
    assert process_telemetry.force_flush()
    # The calls after the failure were recorded by this process's own providers (the thread).
    assert event_count(receiver) >= 5
    assert counter_total(receiver, semconv.DETECTIONS.name) >= 10


def test_a_full_ring_drops_and_counts_without_blocking_the_caller(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_recorder_process.RING_BYTES_ENV, "8192")
    telemetry = detwatch.configure_opentelemetry(service_name="full", endpoint=receiver.url, set_global=False)
    predict = decorated(telemetry, detections=20)
    predict(IMAGE)
    assert detwatch_instrumentation.flush()
    pid = _recorder_process.recorder_pid()
    assert pid is not None
    before = _recorder_process.PROCESS.stats.dropped
    os.kill(pid, signal.SIGSTOP)  # the recorder cannot read: the ring fills
    try:
        durations = []
        for _ in range(200):
            started = time.perf_counter()
            predict(IMAGE)
            durations.append(time.perf_counter() - started)
    finally:
        os.kill(pid, signal.SIGCONT)
    dropped = _recorder_process.PROCESS.stats.dropped - before
    assert 100 < dropped < 200
    assert max(durations) < 0.25  # nothing waited for the stopped reader
    assert telemetry.force_flush()
    telemetry.shutdown()
    assert counter_total(receiver, semconv.TELEMETRY_DROPPED.name) == dropped
    assert event_count(receiver) == 201 - dropped


def test_an_unreachable_collector_costs_the_call_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    # A socket that accepts connections and never answers: every export waits its whole timeout.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        telemetry = detwatch.configure_opentelemetry(service_name="offline", endpoint=endpoint, set_global=False)
        predict = decorated(telemetry, detections=20)
        dropped = _recorder_process.PROCESS.stats.dropped
        durations = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            started = time.perf_counter()
            predict(IMAGE)
            durations.append(time.perf_counter() - started)
            time.sleep(0.002)
        assert _recorder_process.recorder_pid() is not None
        assert _recorder_process.PROCESS.stats.dropped == dropped
        assert len(durations) > 100 and max(durations) < 0.5
        _recorder_process.PROCESS.release(telemetry.meter_provider, telemetry.logger_provider, timeout=0.5)
        cast(Any, telemetry.tracer_provider).shutdown()


SCRIPT_PRELUDE = """
import os, sys, time
import numpy as np
from opentelemetry import trace

import detwatch
import detwatch_instrumentation
from detwatch_instrumentation import monitor_detections, _recorder_process
telemetry = detwatch.configure_opentelemetry(service_name="script", endpoint=sys.argv[1])

@monitor_detections(model_id="m")
def predict(image):
    return [{"class": "car", "confidence": 0.5, "box": [0, 0, 10, 10]}] * 4

image = np.zeros((48, 64, 3), np.uint8)
"""


def run_script(body: str, receiver: Receiver) -> subprocess.CompletedProcess[str]:
    code = SCRIPT_PRELUDE + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-c", code, receiver.url], capture_output=True, text=True, timeout=60, env=env, check=True
    )


def test_exit_drains_everything_the_recorder_process_was_given(receiver: Receiver) -> None:
    out = run_script(
        """
        for _ in range(500):
            predict(image)
        print(_recorder_process.recorder_pid() is not None)
        """,
        receiver,
    )
    assert out.stdout.split() == ["True"]
    assert event_count(receiver) == 500
    assert len(spans_of(receiver)[0]) == 500  # planned here, built and exported by the recorder before it exited
    assert counter_total(receiver, semconv.DETECTIONS.name) == 2000
    assert counter_total(receiver, semconv.IMAGES.name) == 500


def test_a_fork_after_first_use_records_in_both_processes(receiver: Receiver) -> None:
    out = run_script(
        """
        predict(image)
        parent_recorder = _recorder_process.recorder_pid()
        pid = os.fork()
        if pid == 0:
            for _ in range(30):
                predict(image)
            child_recorder = _recorder_process.recorder_pid()
            ok = detwatch_instrumentation.flush(10.0)
            print("child", ok, child_recorder not in (None, parent_recorder), flush=True)
            telemetry.shutdown()
            os._exit(0)
        for _ in range(20):
            predict(image)
        os.waitpid(pid, 0)
        print("parent", _recorder_process.recorder_pid() == parent_recorder, flush=True)
        """,
        receiver,
    )
    assert sorted(out.stdout.split()) == sorted(["child", "True", "True", "parent", "True"])
    assert event_count(receiver) == 51
    # Each process's recorder built its own calls' planned spans, each linked to its events.
    _, links = events_of(receiver)
    spans, ids = spans_of(receiver)
    assert len(spans) == 51 and links == ids
    # Both processes export the same series (same resource): each its own cumulative total.
    totals = {
        q.as_int
        for request in receiver.metrics()
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == semconv.DETECTIONS.name
        for q in m.sum.data_points
    }
    assert {21 * 4, 30 * 4} <= totals


def test_a_killed_inference_process_still_has_its_telemetry_recorded(receiver: Receiver, tmp_path: Path) -> None:
    flag = tmp_path / "written"
    code = SCRIPT_PRELUDE + textwrap.dedent(
        f"""
        for _ in range(100):
            predict(image)
        open({str(flag)!r}, "w").close()
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, receiver.url], env=env)
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert flag.exists()
    finally:
        proc.kill()
        proc.wait()
    # The recorder sees its input close, records what the ring holds, exports and exits.
    deadline = time.monotonic() + 15
    while event_count(receiver) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert event_count(receiver) == 100
    while len(spans_of(receiver)[0]) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spans_of(receiver)[0]) == 100  # the planned spans too
    assert not math.isnan(counter_total(receiver, semconv.DETECTIONS.name))
