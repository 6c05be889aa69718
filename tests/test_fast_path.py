"""The fast path (planned span, arrays copied raw into the ring) exports exactly what the general path does.

Every test runs the real recorder process and exports over real OTLP/HTTP to a
loopback receiver. The ids come from a sequential id generator on the application's
tracer provider, so that two runs make the same trace and span ids and every field of
every span, metric point and prediction event can be compared.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import detwatch
from _otlp_receiver import Receiver
from detwatch_instrumentation import _fast_path, _recorder_process, monitor_detections, stage
from detwatch_instrumentation._ring import Ring, create_ring_fd
from test_recorder_process import _attrs, metrics_of

IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)
NAMES = {0: "car", 1: "person", 2: "truck"}


class SequentialIds(IdGenerator):
    """Ids 1, 2, 3, ... (trace ids with the high half set, as random ones have): two runs draw the same ones."""

    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return (self.n << 64) | (0xABCD << 16) | self.n

    def is_trace_id_random(self) -> bool:
        return self.n % 2 == 0  # both answers, as a provider's generator may give either


def torchvision(n: int, boxes: str = "f4", scores: str = "f4", labels: str = "i8", seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(1, 200, (n, 2))
    return {
        "boxes": np.concatenate([xy, xy + wh], axis=1).astype(boxes),
        "scores": rng.uniform(0.05, 1.0, n).astype(scores),
        "labels": rng.integers(0, 4, n).astype(labels),  # 3 has no name: its id is the class
    }


def detector(telemetry: detwatch.Telemetry, detections: int, tracer_provider: Any = None) -> Callable[[Any], Any]:
    """A decorated model returning a torchvision dict (``tracer_provider``: other than the telemetry's)."""

    @monitor_detections(
        model_id="m",
        tracer_provider=tracer_provider or telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> Any:
        return torchvision(detections)

    return predict


class PILLike:
    """An input with PIL's ``.size`` (width, height) and no shape."""

    size = (800, 600)


def remote_parent(sampled: bool, state: TraceState | None = None) -> otel_context.Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(0xFEED, 0xBEEF, is_remote=True, trace_flags=flags, trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def scenario(telemetry: detwatch.Telemetry) -> int:
    """Calls of every kind the fast path takes or hands to the general path; returns how many it takes."""
    providers: dict[str, Any] = {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
        "logger_provider": telemetry.logger_provider,
    }
    app = telemetry.tracer_provider.get_tracer("app")
    fast = 0

    def decorated(**options: Any) -> Callable[..., Any]:
        @monitor_detections(model_id=options.pop("model_id", "m"), label_names=NAMES, **options, **providers)
        def predict(image: Any, output: Any, child: bool = False, attribute: bool = False) -> Any:
            with stage("inference"):
                if child:
                    with app.start_as_current_span("nms"):
                        pass
                if attribute:
                    trace.get_current_span().set_attribute("model.step", 3)
            if isinstance(output, Exception):
                raise output
            return output

        return predict

    predict = decorated()
    # Fast: plain arrays of the usual and less usual dtypes, at the root and under spans.
    for seed, dtypes in enumerate([("f4", "f4", "i8"), ("f8", "f8", "i4"), ("f4", "f8", "u1"), ("i4", "f4", "i2")]):
        predict(IMAGE, torchvision(7, *dtypes, seed=seed))
        fast += 1
    predict(IMAGE, torchvision(0))
    predict(IMAGE, torchvision(20), child=True)
    predict(PILLike(), torchvision(3))
    predict(np.zeros((100, 200, 3), np.uint8), torchvision(3, seed=21))  # another size, then the first again
    predict(IMAGE, torchvision(3, seed=22))
    fast += 5
    with app.start_as_current_span("request"):
        predict(IMAGE, torchvision(5, seed=9))
        predict(IMAGE, torchvision(5, seed=10), child=True)
        fast += 2
    with app.start_as_current_span("unsampled", context=remote_parent(False)):
        predict(IMAGE, torchvision(4, seed=11))  # not sampled: no span, an event with the ids
        fast += 1
    for sampled in (True, False):
        token = otel_context.attach(remote_parent(sampled))
        try:
            predict(IMAGE, torchvision(4, seed=12))
            fast += 1
        finally:
            otel_context.detach(token)
    # Invalid detections travel the fast way and are counted invalid the same way.
    bad = torchvision(6, seed=13)
    bad["scores"][0] = np.nan
    bad["boxes"][1] = [50, 50, 10, 10]
    bad["labels"][2] = -1
    predict(IMAGE, bad)
    huge = torchvision(3, seed=23)
    huge["boxes"][0] = [0, 0, 1e12, 1e12]  # past the largest coordinate the contract takes
    huge["masks"] = np.zeros((3, 4, 4), np.uint8)  # keys the reader does not use
    predict(IMAGE, huge)
    fast += 2
    sized = decorated(model_id="sized", image_size=(1920, 1080))
    sized(IMAGE, torchvision(3, seed=14))
    fast += 1
    # Fast, the output pickled after the header: other layouts, and attributes set on the span inside the call.
    predict(IMAGE, torchvision(3, seed=16), attribute=True)
    big_endian = torchvision(3, seed=18)
    big_endian["boxes"] = big_endian["boxes"].astype(">f4")
    predict(IMAGE, big_endian)
    predict(IMAGE, torchvision(2, "f2", seed=20))  # float16: no memoryview format
    predict(IMAGE, [{"class": "car", "confidence": np.float32(0.5), "box": [0, 0, 10, 10]}])
    predict(IMAGE, {"boxes": torchvision(2)["boxes"]})  # no scores or labels
    short = torchvision(4, seed=24)
    short["scores"] = short["scores"][:3]  # lengths that disagree: unreadable, as in the general path
    predict(IMAGE, short)
    predict(IMAGE, np.array([[1, 2, 30, 40, 0.9, 1]], np.float32))
    predict(IMAGE, object())  # unreadable: counted, no event
    fast += 8
    # General: what the fast frame does not carry.
    token = otel_context.attach(remote_parent(True, TraceState([("vendor", "x")])))
    try:
        predict(IMAGE, torchvision(3, seed=15))
    finally:
        otel_context.detach(token)
    predict("images/frame.jpg", torchvision(3, seed=17))
    strided = torchvision(3, seed=19)
    strided["boxes"] = np.asfortranarray(strided["boxes"])
    predict(IMAGE, strided)
    with pytest.raises(KeyError):
        predict(IMAGE, KeyError("model not loaded"))
    return fast


def spans_in(receiver: Receiver) -> list[tuple[Any, ...]]:
    return sorted(
        (
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            span.flags,
            span.name,
            span.kind,
            _attrs(span.attributes),
            span.status.code,
            span.status.message,
            tuple((e.name, _attrs(e.attributes)) for e in span.events),
            ss.scope.name,
            _attrs(rs.resource.attributes),
            span.end_time_unix_nano >= span.start_time_unix_nano > 0,
        )
        for request in receiver.traces()
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    )


def events_in(receiver: Receiver) -> list[tuple[Any, ...]]:
    out = []
    for request in receiver.logs():
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    body = json.loads(record.body.string_value)
                    assert body.pop("latency_ms") >= 0 and body.pop("time").endswith("Z")
                    out.append(
                        (
                            json.dumps(body, sort_keys=True),
                            record.trace_id.hex(),
                            record.span_id.hex(),
                            record.flags,
                            _attrs(record.attributes),
                            record.event_name,
                            record.severity_number,
                        )
                    )
    return sorted(out)


Scenario = Callable[[detwatch.Telemetry], int]


def run(
    fast: bool, sampler: str, monkeypatch: pytest.MonkeyPatch, calls: Scenario = scenario
) -> tuple[int, int, Any, Any, Any, int]:
    """(fast calls expected, fast frames sent, metrics, spans, events, frames sent as raw arrays)."""
    sent = raw = 0
    send_parts = _recorder_process.PROCESS.send_parts

    def counting(parts: tuple[Any, ...], monitor: Any) -> bool | None:
        nonlocal sent, raw
        result = send_parts(parts, monitor)
        sent += result is True
        raw += result is True and len(parts) == 4  # a header and three arrays
        return result

    with monkeypatch.context() as patch:
        patch.setenv("OTEL_TRACES_SAMPLER", sampler)
        patch.setattr(_recorder_process.PROCESS, "send_parts", counting)
        if not fast:
            patch.setattr(_fast_path.FastRoute, "for_provider", staticmethod(lambda provider: None))
        with Receiver() as receiver:
            telemetry = detwatch.configure_opentelemetry(service_name="fast", endpoint=receiver.url, set_global=False)
            telemetry.tracer_provider.id_generator = SequentialIds()  # type: ignore[attr-defined]
            expected = calls(telemetry)
            assert _recorder_process.recorder_pid() is not None
            assert telemetry.force_flush()
            telemetry.shutdown()
            return expected, sent, metrics_of(receiver), spans_in(receiver), events_in(receiver), raw


@pytest.mark.parametrize("sampler", ["parentbased_always_on", "always_on", "parentbased_traceidratio"])
def test_the_fast_path_exports_exactly_what_the_general_path_does(
    sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_calls, fast_sent, fast_metrics, fast_spans, fast_events, _ = run(True, sampler, monkeypatch)
    _, general_sent, general_metrics, general_spans, general_events, _ = run(False, sampler, monkeypatch)
    # The default samplers' decisions are made inline; another sampler keeps every call general.
    assert fast_sent == (fast_calls if sampler != "parentbased_traceidratio" else 0)
    assert general_sent == 0
    assert fast_metrics and fast_spans and fast_events
    assert fast_metrics == general_metrics
    assert fast_spans == general_spans
    assert fast_events == general_events
    if sampler == "parentbased_always_on":
        remote = [s[4] for s in fast_spans if s[0].endswith("feed")]
        assert remote == ["detect m", "detect m"]  # under the remote sampled parent (with and without trace state)
    detections = {name: v for (name, _), v in fast_metrics.items() if name == "objdet.detections"}
    assert detections


def test_tracing_off_still_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics and events without spans (a tracer provider that is the API's no-op one)."""
    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(service_name="fast", endpoint=receiver.url, set_global=False)
        sent: list[bool | None] = []
        send_parts = _recorder_process.PROCESS.send_parts

        def counting(parts: tuple[Any, ...], monitor: Any) -> bool | None:
            sent.append(send_parts(parts, monitor))
            return sent[-1]

        monkeypatch.setattr(_recorder_process.PROCESS, "send_parts", counting)

        predict = detector(telemetry, 5, trace.NoOpTracerProvider())

        for _ in range(3):
            predict(IMAGE)
        assert telemetry.force_flush()
        telemetry.shutdown()
        events = events_in(receiver)
        assert sent == [True] * 3 and len(events) == 3
        assert all(e[1] == "" for e in events)  # no span, no trace context
        assert not spans_in(receiver)


@pytest.fixture
def ring() -> Iterator[Ring]:
    fd = create_ring_fd(4096)
    ring = Ring(fd, 4096)
    yield ring
    ring.close()
    os.close(fd)


def test_ring_frames_of_parts_read_back_whole_across_the_wrap(ring: Ring) -> None:
    arrays = torchvision(9)
    header = b"H" * 13
    parts = (header, arrays["boxes"], arrays["scores"], arrays["labels"])
    joined = b"".join(bytes(memoryview(p)) if not isinstance(p, bytes) else p for p in parts)
    for _ in range(40):  # 40 frames of ~270 bytes through 4 KiB: wraps several times
        assert ring.write_parts(parts)
        (frame,) = ring.read()
        assert frame == joined
    # A mix with pickled frames, read in order.
    assert ring.write(b"plain") and ring.write_parts(parts)
    assert ring.read() == [b"plain", joined]


def test_ring_refuses_a_part_that_is_not_one_block_and_publishes_nothing(ring: Ring) -> None:
    strided = np.arange(40, dtype=np.float32)[::2]
    with pytest.raises((ValueError, BufferError)):
        ring.write_parts((b"head", strided))
    assert ring.used() == 0 and ring.read() == []
    assert not ring.write_parts((b"x" * 3000,))  # more than half the ring: refused, as write() refuses it
    assert ring.write_parts((b"ok",)) and ring.read() == [b"ok"]


def test_a_fast_frame_is_told_from_a_pickle() -> None:
    import pickle

    assert not _fast_path.is_fast(pickle.dumps(("call", 1), 2))
    assert not _fast_path.is_fast(pickle.dumps(("call", 1), 5))
    assert _fast_path.is_fast(_fast_path.MAGIC + b"rest")


def test_the_sdks_random_ids_are_drawn_inline_as_its_generator_draws_them() -> None:
    """With the SDK's own RandomIdGenerator the fast path draws from ``random`` itself: the same ids, in order."""
    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(service_name="fast", endpoint=receiver.url, set_global=False)
        assert type(telemetry.tracer_provider.id_generator) is RandomIdGenerator  # type: ignore[attr-defined]

        predict = detector(telemetry, 5)

        predict(IMAGE)  # starts the recorder process
        random.seed(20261206)
        predict(IMAGE)
        assert telemetry.force_flush()
        telemetry.shutdown()
        spans = spans_in(receiver)
    expected = RandomIdGenerator()
    random.seed(20261206)
    trace_id, span_id = f"{expected.generate_trace_id():032x}", f"{expected.generate_span_id():016x}"
    assert (trace_id, span_id, "") in {s[:3] for s in spans}


def test_inputs_of_different_sizes_on_two_threads_each_get_their_own_size() -> None:
    """The last input's size is reused for the next input of the same shape, never for another shape's."""
    with Receiver() as receiver:
        telemetry = detwatch.configure_opentelemetry(service_name="fast", endpoint=receiver.url, set_global=False)

        predict = detector(telemetry, 2)

        def calls(shape: tuple[int, ...]) -> None:
            image = np.zeros(shape, np.uint8)
            for _ in range(150):
                predict(image)

        threads = [threading.Thread(target=calls, args=(shape,)) for shape in ((480, 640, 3), (3, 1080, 1920))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert telemetry.force_flush()
        telemetry.shutdown()
        sizes = [json.loads(event[0])["image"]["width"] for event in events_in(receiver)]
    assert sorted(set(sizes)) == [640, 1920] and sizes.count(640) == sizes.count(1920) == 150


def tensor_calls(telemetry: detwatch.Telemetry) -> int:
    """Torchvision on a CPU: dicts of CPU tensors (raw arrays), and tensors the raw frame cannot take."""
    torch = pytest.importorskip("torch")

    @monitor_detections(
        model_id="m",
        label_names=NAMES,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any, output: Any) -> Any:
        return output

    def tensors(seed: int, **dtypes: Any) -> dict[str, Any]:
        return {k: torch.from_numpy(v).to(dtypes.get(k)) for k, v in torchvision(6, seed=seed).items()}

    with torch.inference_mode():
        predict(IMAGE, tensors(1))
        predict(IMAGE, tensors(2, boxes=torch.float64, labels=torch.int32))
    graph = tensors(3)
    graph["boxes"].requires_grad_(True)
    predict(IMAGE, graph)  # a tensor that requires grad: detached, as the general path does
    predict(IMAGE, tensors(4, scores=torch.bfloat16))  # no NumPy dtype: the pickled frame
    predict(IMAGE, tensors(5, boxes=torch.float16))
    return 3


def test_cpu_tensors_cross_as_raw_arrays_and_export_what_the_general_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs where PyTorch is installed (the suite's environment has no PyTorch; the GPU machine has)."""
    pytest.importorskip("torch")
    _, fast_sent, fast_metrics, fast_spans, fast_events, fast_raw = run(
        True, "parentbased_always_on", monkeypatch, tensor_calls
    )
    _, _, general_metrics, general_spans, general_events, general_raw = run(
        False, "parentbased_always_on", monkeypatch, tensor_calls
    )
    assert (fast_sent, fast_raw, general_raw) == (5, 3, 0)
    assert fast_metrics == general_metrics
    assert fast_spans == general_spans
    assert fast_events == general_events
