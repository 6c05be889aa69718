"""What ``@monitor_detections`` costs the inference it observes, against naive SDK code.

What is measured
----------------
The acceptance point of the hot-path issue (DESIGN.md, "The hot path"):

    "for an image with 20 detections, added wall time per call on the caller's thread
    and total CPU per image, for (a) the undecorated call, (b) a hand-written 'naive'
    instrumentation that records every detection through the SDK (span + 3
    histograms/counters per detection with a class attribute), (c) the decorator.
    Model the inference as a call that releases the GIL for a few milliseconds, as
    real detectors do. Target: (c) adds at most a quarter of what (b) adds on the
    caller's thread (aim for a tenth), and no more total CPU than (b)."

    "With an unreachable OTLP endpoint, decorated calls still return normally and
    their latency stays within the benchmark's bounds (nothing blocks on export)."

Variants:

- (a) the undecorated model: ``time.sleep(3 ms)`` (which releases the GIL, as a real
  detector's native inference does) on a 480x640x3 image, returning a fresh list of
  20 ``{"class", "confidence", "box"}`` dicts (a shallow copy of a list built in
  advance, so building it is not measured);
- (b) naive: the code a user would write by hand: a span around the call, then per
  detection ``confidence.record``, ``box_area.record`` and ``detections.add(1)`` with
  the model and class attributes, and one ``duration.record``, all on the caller's
  thread and inside the span;
- (c) the decorator as shipped (metrics, span, one ``objdet.prediction`` log record per
  image carrying the 20 detections), and (c') the same with ``emit_events=False``,
  which separates the cost of the log record that (b) does not emit;
- (d) the decorator with no SDK (the API's no-op proxies as global providers): it must
  cost next to nothing; it is also timed on a model that returns at once;
- (e) over the real OTLP/HTTP pipeline of ``detwatch.configure_opentelemetry`` pointed
  at an unreachable endpoint: (c), (c') and, as the reference, (b) to a closed loopback
  port (connection refused), and (c) to a loopback socket that accepts connections and
  never answers (every export hangs until its 1 s timeout). Metrics are exported every
  200 ms and span and log batches every 100 ms, so the exporters really try, and
  fail, while the calls run (the benchmark counts the attempts).

(b), (c), (c') use one SDK set-up, built anew for each: a ``TracerProvider`` with a
``BatchSpanProcessor``, a ``MeterProvider`` with a ``PeriodicExportingMetricReader``
(cumulative, 60 s interval: no export mid-measurement) and a ``LoggerProvider`` with a
``BatchLogRecordProcessor``, all to exporters that count what they get (checked
afterwards: every span, event and detection arrived) and discard it. Serialisation
for the wire is thus out of both (b) and (c); (e) includes it.

How
---
Each exemplar filter gets its own subprocesses, since the SDK reads
``OTEL_METRICS_EXEMPLAR_FILTER`` when the ``MeterProvider`` is created: ``always_off``
(detwatch's default in ``configure_opentelemetry``) and ``trace_based`` (the SDK's
default: measurements made inside a sampled span, as (b) makes them, are offered to
an exemplar reservoir; the decorator records on its own thread, outside the span).
In such a process (a), (d), (b), (c) and (c') each run N calls after warm-up, in
blocks of 25 calls interleaved in rotating order, so that the machine's drift (a
shared VM's speed varies by tens of percent from second to second) hits every
variant alike. Each (e) configuration runs alone in its own process, N calls in a row
(at least 300, so that every exporter is at work during the calls).

Which (b) the CPU target compares with: naive code is code on the SDK's defaults, so
the CPU target is judged under ``trace_based``, where (b) pays for exemplar sampling
as a naive user's code does. The decorator's recording runs outside any span, so its
CPU is the same under either filter. Under ``always_off`` (b) is hand-tuned code and
its ratio is printed as a reference: every SDK measurement costs ~8 µs of attribute
cleaning and hashing whoever makes it, and (c) makes 62 per image (three histograms
per detection, the contract's aspect ratio included, plus per-image duration and
count; counters are summed) against (b)'s 61, so that ratio cannot go below about 1
while the decorator records what the contract asks.

Each call is timed on the caller's thread with ``perf_counter_ns``; "added wall" is
a call's time minus the mean of the undecorated calls of the same process (for (e):
of all undecorated calls), reported as mean, p50 and p99. CPU per image is
``process_time_ns`` (every thread of the process, so the recording thread counts)
over each block plus ``detwatch_instrumentation.flush()`` at its end, divided by the
calls. Nothing is subtracted from CPU; row (a) shows the undecorated call's own. For
(e) the CPU also includes the providers' ``force_flush()`` at the end, i.e. encoding
everything and failing to send it.

A wall time measured around a 3 ms sleep has a noise floor of some tens of µs (timer
slack, wake-up on a cold cache): (d)'s cost is therefore also measured in a tight
loop.

The hot path (``--hot-only`` runs only this part): (a), (b), the decorator on its
recording thread and the decorator with the recorder process, on the sleep model and
on a GIL-holding eager forward pass (:func:`make_gil_model`), each in memory and
behind the README's ``configure_opentelemetry`` to a loopback receiver. Besides the
added wall and the CPU of all processes (the recorder process's included, read from
its CPU clock), it shows the calling thread's own CPU outside the model
(``time.thread_time`` minus the model's share, :class:`_ModelClock`): on a shared
machine the model's own time varies by more than the decorator costs, and this column
is the instrumentation's cost to the caller whatever the other cores do.

Why
---
Recording 20 detections through the SDK costs more than many detectors' inference.
The decorator moves that work to a background thread that runs while the next
inference has released the GIL, so the caller's thread should see only constant
work, and the total CPU should not grow in exchange. Exporters must never hold up
inference, even when the Collector is down or hangs.

The exit status is 1 if a target or a check fails (every call returned its result,
every image's telemetry arrived, exports were attempted, the decorator's guard
swallowed no failure).

Where it runs
-------------
It lives with the distribution it measures, but the (e) rows and the ``otlp`` set-up
measure the decorator behind the application's pipeline, the companion's
``detwatch.configure_opentelemetry``, because that is what a user runs: run it from the
repository with both distributions installed (``./run bench --only overhead``, or
``python instrumentation/benchmarks/bench_overhead.py``). The rest needs only the SDK.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol, cast

import numpy as np
from opentelemetry import _logs as otel_logs
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace

import detwatch_instrumentation
from _discard import Sdk, discarding_sdk
from _report import positive_int, table, verdict
from detwatch_instrumentation import monitor_detections, semconv

Detections = list[dict[str, Any]]
Model = Callable[[Any], Detections]

MODEL_ID = "m"
MODEL_VERSION = "v1"
CLASSES = ("car", "person", "truck", "bicycle", "dog")
WIDTH, HEIGHT = 640, 480
INFERENCE_S = 0.003
DEFAULT_CALLS = 300
DEFAULT_DETECTIONS = 20
DEFAULT_REPEAT = 2
DEFAULT_BLOCK = 25
WARMUP = 30
NOOP_CALLS = 100_000
FILTERS = ("always_off", "trace_based")
EXPORT_TIMEOUT_S = 1.0
WORKER_TIMEOUT_S = 120.0

TARGET_WALL = 0.25
AIM_WALL = 0.10
TARGET_CPU = 1.0
CPU_TARGET_FILTER = "trace_based"
"""The exemplar filter under which (c)'s CPU is held to (b)'s: the SDK's default, which naive code runs on."""

LABELS = {
    "a": "(a) undecorated",
    "d": "(d) decorator, no SDK",
    "b": "(b) naive SDK instrumentation",
    "c": "(c) decorator",
    "c-noevents": "(c') decorator, emit_events=False",
    "e-naive": "(b) naive, OTLP to a closed port",
    "e-refused": "(c) decorator, OTLP to a closed port",
    "e-refused-noevents": "(c') decorator, emit_events=False, closed port",
    "e-blackhole": "(c) decorator, OTLP to a silent socket",
}
UNREACHABLE = ("e-naive", "e-refused", "e-refused-noevents", "e-blackhole")
COMPARED = ("a", "d", "b", "c", "c-noevents")
MIN_UNREACHABLE_CALLS = 300


# ---------------------------------------------------------------- the model


def make_model(detections: int, seed: int = 7) -> Model:
    """A detector stand-in: releases the GIL for ``INFERENCE_S``, returns ``detections`` dicts."""
    rng = random.Random(seed)
    prebuilt: Detections = []
    for _ in range(detections):
        w = rng.uniform(16.0, 200.0)
        h = rng.uniform(16.0, 200.0)
        x1 = rng.uniform(0.0, WIDTH - w)
        y1 = rng.uniform(0.0, HEIGHT - h)
        prebuilt.append(
            {
                "class": rng.choice(CLASSES),
                "confidence": round(rng.uniform(0.25, 0.99), 4),
                "box": [x1, y1, x1 + w, y1 + h],
            }
        )

    def model(image: Any) -> Detections:
        time.sleep(INFERENCE_S)  # releases the GIL, like native inference
        return prebuilt.copy()

    return model


def _returns_at_once(image: Any) -> Detections:
    return []


# ---------------------------------------------------------------- discarding exporters


class _Providers(Protocol):
    @property
    def tracer_provider(self) -> otel_trace.TracerProvider: ...
    @property
    def meter_provider(self) -> otel_metrics.MeterProvider: ...
    @property
    def logger_provider(self) -> otel_logs.LoggerProvider: ...


# ---------------------------------------------------------------- the variants

Window = tuple[float, float]
"""``perf_counter`` at the first and after the last measured call."""


@dataclass
class _Subject:
    """One variant in a worker: the function to call and how to settle, close and check it."""

    predict: Model
    drain: Callable[[], None] = lambda: None
    """Wait until the background recording of the calls so far is done."""
    settle: Callable[[], None] = lambda: None
    """Drain, then export everything pending."""
    close: Callable[[], None] = lambda: None
    counts: Callable[[int], dict[str, list[int]]] = lambda images: {}
    """After closing: ``{what: [got, expected]}`` for ``images`` calls in all (warm-up included)."""
    exports: Callable[[Window], dict[str, list[int]]] = lambda window: {}
    """After closing: ``{signal: [tried, failed]}`` for exports under way during the calls."""


def naive(
    model: Model, tracer_provider: otel_trace.TracerProvider, meter_provider: otel_metrics.MeterProvider
) -> Model:
    """(b): what a user writes by hand, recording every detection through the SDK."""
    tracer = tracer_provider.get_tracer("naive")
    meter = meter_provider.get_meter("naive")

    def histogram(spec: semconv.InstrumentSpec) -> Any:
        bounds = list(spec.bounds) if spec.bounds is not None else None
        return meter.create_histogram(spec.name, unit=spec.unit, explicit_bucket_boundaries_advisory=bounds)

    duration = histogram(semconv.INFERENCE_DURATION)
    confidence = histogram(semconv.DETECTION_CONFIDENCE)
    box_area = histogram(semconv.DETECTION_BOX_AREA)
    detections = meter.create_counter(semconv.DETECTIONS.name, unit=semconv.DETECTIONS.unit)
    model_attrs = {semconv.ATTR_MODEL_ID: MODEL_ID, semconv.ATTR_MODEL_VERSION: MODEL_VERSION}

    def predict(image: Any) -> Detections:
        with tracer.start_as_current_span(f"detect {MODEL_ID}", attributes=model_attrs):
            start = time.perf_counter()
            output = model(image)
            duration.record(time.perf_counter() - start, model_attrs)
            height, width = image.shape[:2]
            image_area = float(width * height)
            for det in output:
                attrs = {**model_attrs, semconv.ATTR_DETECTION_CLASS: det["class"]}
                x1, y1, x2, y2 = det["box"]
                confidence.record(det["confidence"], attrs)
                box_area.record((x2 - x1) * (y2 - y1) / image_area, attrs)
                detections.add(1, attrs)
        return output

    return predict


def _sdk_counts(sdk: Sdk, images: int, detections: int, events: bool) -> dict[str, list[int]]:
    counts = {
        "spans": [sdk.tally.spans, images],
        "detections counted": [round(sdk.tally.detections), images * detections],
    }
    if events:
        counts["prediction events"] = [sdk.tally.logs, images]
    return counts


def _drain_recorder() -> None:
    detwatch_instrumentation.flush()


def _decorate(model: Model, providers: _Providers, *, events: bool = True) -> Model:
    return monitor_detections(
        model_id=MODEL_ID,
        model_version=MODEL_VERSION,
        emit_events=events,
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
        logger_provider=providers.logger_provider,
    )(model)


def build(variant: str, model: Model, detections: int) -> _Subject:
    if variant == "a":
        return _Subject(model)
    if variant == "d":
        return _Subject(monitor_detections(model_id=MODEL_ID, model_version=MODEL_VERSION)(model))
    if variant == "b":
        sdk = discarding_sdk()
        return _Subject(
            naive(model, sdk.tracer_provider, sdk.meter_provider),
            settle=sdk.force_flush,
            close=sdk.shutdown,
            counts=lambda images: _sdk_counts(sdk, images, detections, events=False),
        )
    if variant in ("c", "c-noevents"):
        sdk = discarding_sdk()
        events = variant == "c"

        def settle() -> None:
            detwatch_instrumentation.flush()
            sdk.force_flush()

        return _Subject(
            _decorate(model, sdk, events=events),
            drain=_drain_recorder,
            settle=settle,
            close=sdk.shutdown,
            counts=lambda images: _sdk_counts(sdk, images, detections, events=events),
        )
    if variant in UNREACHABLE:
        return _unreachable(variant, model)
    raise ValueError(f"unknown variant {variant!r}")


# ---------------------------------------------------------------- (e): an unreachable Collector


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


def _record_exports(attempts: list[tuple[str, float, float, bool]]) -> None:
    """Record every OTLP export call: signal, start and end time, success (this worker process only)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for signal, cls in (("traces", OTLPSpanExporter), ("metrics", OTLPMetricExporter), ("logs", OTLPLogExporter)):
        original = cls.export

        def export(
            self: Any,
            *args: Any,
            _original: Callable[..., Any] = original,
            _signal: str = signal,
            **kwargs: Any,
        ) -> Any:
            start = time.perf_counter()
            result = _original(self, *args, **kwargs)
            attempts.append((_signal, start, time.perf_counter(), getattr(result, "name", "") == "SUCCESS"))
            return result

        setattr(cls, "export", export)  # noqa: B010 - patching a class, in this worker only


def _unreachable(variant: str, model: Model) -> _Subject:
    from detwatch import configure_opentelemetry

    attempts: list[tuple[str, float, float, bool]] = []
    _record_exports(attempts)
    listener: socket.socket | None = None
    if variant == "e-blackhole":
        # The kernel completes connections (backlog) and nobody ever answers.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
    else:
        port = _closed_port()
    # The recording thread: its export attempts happen in this process, where they are
    # counted (the recorder process's are checked by tests/test_recorder_process.py).
    telemetry = configure_opentelemetry(endpoint=f"http://127.0.0.1:{port}", set_global=False, recorder="thread")
    if variant == "e-naive":
        predict = naive(model, telemetry.tracer_provider, telemetry.meter_provider)
    else:
        predict = _decorate(model, telemetry, events=variant != "e-refused-noevents")

    def exports(window: Window) -> dict[str, list[int]]:
        out = {signal: [0, 0] for signal in ("traces", "metrics", "logs")}
        if variant in ("e-naive", "e-refused-noevents"):
            del out["logs"]
        for signal, start, end, ok in attempts:
            if start <= window[1] and end >= window[0] and signal in out:  # under way during the calls
                out[signal][0] += 1
                out[signal][1] += 0 if ok else 1
        return out

    def close() -> None:
        telemetry.shutdown()
        if listener is not None:
            listener.close()

    def settle() -> None:
        # Record what the decorator queued, then try (and fail) to export all of it.
        telemetry.force_flush(int(EXPORT_TIMEOUT_S * 1000))

    return _Subject(predict, drain=_drain_recorder, settle=settle, close=close, exports=exports)


# ---------------------------------------------------------------- the workers


class _ModelClock:
    """The model's own time, measured inside every variant's call, so that it can be taken out.

    On a busy machine (a shared VM, another process on the core's sibling) a 15 ms
    forward pass varies by hundreds of microseconds from one block to the next, more
    than the decorator costs: "caller CPU" is therefore the calling thread's CPU
    outside the model (what the instrumentation itself makes the caller do), and the
    model's own wall time per variant is shown beside it ("model slower"), which is
    where contention with a recorder, or another thread taking the GIL, shows.
    """

    wall_ns = 0
    cpu_ns = 0

    @classmethod
    def wrap(cls, model: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def timed(image: Any) -> Any:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            try:
                return model(image)
            finally:
                cls.cpu_ns += time.thread_time_ns() - c0
                cls.wall_ns += time.perf_counter_ns() - w0

        return timed


@dataclass
class _Run:
    walls_ns: list[int] = field(default_factory=list)
    cpu_ns: int = 0
    thread_cpu_ns: int = 0
    """CPU of the calling thread alone, over the calls (what the caller pays, whoever else works)."""
    model_cpu_ns: int = 0
    model_wall_ns: int = 0
    """The model's own share of the above and of the walls (:class:`_ModelClock`)."""
    window: Window = (math.inf, -math.inf)
    errors: int = 0
    wrong: int = 0

    def measure(self, predict: Model, image: Any, calls: int, detections: int, finish: Callable[[], None]) -> None:
        """Time ``calls`` calls on this thread; count the process CPU up to the end of ``finish()``."""
        walls = self.walls_ns
        perf = time.perf_counter_ns
        cpu0 = time.process_time_ns()
        thread0 = time.thread_time_ns()
        model_cpu0, model_wall0 = _ModelClock.cpu_ns, _ModelClock.wall_ns
        start = time.perf_counter()
        for _ in range(calls):
            t0 = perf()
            try:
                out = predict(image)
            except Exception:  # noqa: BLE001 - counted: a decorated call must never raise
                walls.append(perf() - t0)
                self.errors += 1
                continue
            walls.append(perf() - t0)
            if len(out["boxes"] if isinstance(out, dict) else out) != detections:
                self.wrong += 1
        end = time.perf_counter()
        self.thread_cpu_ns += time.thread_time_ns() - thread0
        self.model_cpu_ns += _ModelClock.cpu_ns - model_cpu0
        self.model_wall_ns += _ModelClock.wall_ns - model_wall0
        finish()
        self.cpu_ns += time.process_time_ns() - cpu0
        self.window = (min(self.window[0], start), max(self.window[1], end))

    def as_json(self, subject: _Subject, images: int) -> dict[str, Any]:
        return {
            "walls_ns": self.walls_ns,
            "cpu_ns": self.cpu_ns,
            "thread_cpu_ns": self.thread_cpu_ns,
            "model_cpu_ns": self.model_cpu_ns,
            "model_wall_ns": self.model_wall_ns,
            "errors": self.errors,
            "wrong": self.wrong,
            "counts": subject.counts(images),
            "exports": subject.exports(self.window),
        }


class _FailureCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _count_guard_failures() -> _FailureCounter:
    # The decorator's guard logs the telemetry failures it swallows at debug level.
    failures = _FailureCounter()
    guard_logger = logging.getLogger("detwatch_instrumentation")
    guard_logger.addHandler(failures)
    guard_logger.setLevel(logging.DEBUG)
    guard_logger.propagate = False
    return failures


def _noop_overhead_ns(calls: int) -> tuple[float, float]:
    """(d) on a model that returns at once: ns per call, undecorated and decorated."""
    decorated = monitor_detections(model_id=MODEL_ID, model_version=MODEL_VERSION)(_returns_at_once)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    result = []
    for fn in (_returns_at_once, decorated):
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                fn(image)
            best = min(best, (time.perf_counter_ns() - t0) / calls)
        result.append(best)
    return result[0], result[1]


def compare_worker(calls: int, detections: int, block: int) -> dict[str, Any]:
    """(a), (d), (b), (c), (c') in one process, interleaved in blocks of ``block`` calls."""
    failures = _count_guard_failures()
    model = make_model(detections)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    subjects = {v: build(v, model, detections) for v in COMPARED}
    for subject in subjects.values():
        for _ in range(WARMUP):
            subject.predict(image)
        subject.settle()
    runs = {v: _Run() for v in COMPARED}
    for r in range(math.ceil(calls / block)):
        n = min(block, calls - r * block)
        k = r % len(COMPARED)  # rotate the order: no variant always follows the same one
        for v in COMPARED[k:] + COMPARED[:k]:
            runs[v].measure(subjects[v].predict, image, n, detections, subjects[v].drain)
    for subject in subjects.values():
        subject.settle()
    close_start = time.perf_counter()
    for subject in subjects.values():
        subject.close()
    return {
        "filter": os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER"),
        "variants": {v: runs[v].as_json(subjects[v], WARMUP + calls) for v in COMPARED},
        "telemetry_failures": failures.count,
        "close_s": time.perf_counter() - close_start,
        "noop_ns": _noop_overhead_ns(NOOP_CALLS),
    }


def unreachable_worker(variant: str, calls: int, detections: int) -> dict[str, Any]:
    """One (e) configuration: N calls in a row; the CPU includes exporting (and failing)."""
    failures = _count_guard_failures()
    model = make_model(detections)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    subject = build(variant, model, detections)
    for _ in range(WARMUP):
        subject.predict(image)
    subject.settle()
    run = _Run()
    calls = max(calls, MIN_UNREACHABLE_CALLS)  # long enough for every exporter to try
    run.measure(subject.predict, image, calls, detections, subject.settle)
    close_start = time.perf_counter()
    subject.close()
    return {
        "filter": os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER"),
        "variants": {variant: run.as_json(subject, WARMUP + calls)},
        "telemetry_failures": failures.count,
        "close_s": time.perf_counter() - close_start,
    }


# ---------------------------------------------------------------- the hot path: GIL-holding inference

GIL_INFERENCE_S = 0.015
HOT_MODELS = ("sleep", "gil")
HOT_SETUPS = ("memory", "otlp")
HOT_VARIANTS = ("a", "b", "c", "p")
HOT_LABELS = {
    "a": "undecorated",
    "b": "naive SDK code",
    "c": "decorator, recording thread",
    "p": "decorator, recorder process",
}
TARGET_HOT_CPU = 1.25
LABEL_NAMES = dict(enumerate(CLASSES))


def make_gil_model(detections: int, seed: int = 7) -> Callable[[Any], dict[str, Any]]:
    """An eager forward pass: ~15 ms of small NumPy operations that hold the GIL, returning arrays.

    Why this is realistic: torchvision's, Ultralytics' and MMDetection's eager forward
    passes are Python code that runs layer after layer, each a few microseconds of
    interpreter work holding the GIL to launch a kernel; the GPU works asynchronously,
    so the CPU thread is busy (with the GIL held) for most of the call. Thousands of
    small NumPy operations on 32x32 arrays are the same shape of work on a CPU: short
    native calls between Python bytecodes, never releasing the GIL for long. The output
    is torchvision's layout, ``{"boxes": [N, 4], "scores": [N], "labels": [N]}``, fresh
    arrays on every call as a model allocates them.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 32)).astype(np.float32) * 0.1
    wh = rng.uniform(16.0, 200.0, size=(detections, 2))
    xy = rng.uniform(0.0, 1.0, size=(detections, 2)) * (np.array([WIDTH, HEIGHT]) - wh)
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0.25, 0.99, size=detections).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), size=detections).astype(np.int64)

    def layers(n: int) -> None:
        h = x
        for _ in range(n):
            h = np.tanh(h @ w + 0.01)

    # Calibrated here: as many layers as take GIL_INFERENCE_S on this machine.
    n = 100
    while True:
        t0 = time.perf_counter()
        layers(n)
        took = time.perf_counter() - t0
        if took > 0.005:
            break
        n *= 2
    n_layers = max(1, round(n * GIL_INFERENCE_S / took))

    def model(image: Any) -> dict[str, Any]:
        layers(n_layers)
        return {"boxes": boxes.copy(), "scores": scores.copy(), "labels": labels.copy()}

    return model


def naive_arrays(
    model: Callable[[Any], dict[str, Any]],
    tracer_provider: otel_trace.TracerProvider,
    meter_provider: otel_metrics.MeterProvider,
) -> Callable[[Any], dict[str, Any]]:
    """(b) for torchvision's layout: what a user writes by hand, every detection through the SDK."""
    tracer = tracer_provider.get_tracer("naive")
    meter = meter_provider.get_meter("naive")

    def histogram(spec: semconv.InstrumentSpec) -> Any:
        bounds = list(spec.bounds) if spec.bounds is not None else None
        return meter.create_histogram(spec.name, unit=spec.unit, explicit_bucket_boundaries_advisory=bounds)

    duration = histogram(semconv.INFERENCE_DURATION)
    confidence = histogram(semconv.DETECTION_CONFIDENCE)
    box_area = histogram(semconv.DETECTION_BOX_AREA)
    detections = meter.create_counter(semconv.DETECTIONS.name, unit=semconv.DETECTIONS.unit)
    model_attrs = {semconv.ATTR_MODEL_ID: MODEL_ID, semconv.ATTR_MODEL_VERSION: MODEL_VERSION}

    def predict(image: Any) -> dict[str, Any]:
        with tracer.start_as_current_span(f"detect {MODEL_ID}", attributes=model_attrs):
            start = time.perf_counter()
            output = model(image)
            duration.record(time.perf_counter() - start, model_attrs)
            height, width = image.shape[:2]
            image_area = float(width * height)
            rows = zip(output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist(), strict=True)
            for (x1, y1, x2, y2), score, label in rows:
                attrs = {**model_attrs, semconv.ATTR_DETECTION_CLASS: LABEL_NAMES[label]}
                confidence.record(score, attrs)
                box_area.record((x2 - x1) * (y2 - y1) / image_area, attrs)
                detections.add(1, attrs)
        return output

    return predict


def _child_cpu_ns(pid: int | None) -> int:
    """CPU time of another process (all its threads), in ns; 0 when there is none."""
    if pid is None:
        return 0
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)  # Linux: clock_getcpuclockid(pid)
    except OSError:
        return 0


class _Receiver:
    """A loopback OTLP/HTTP receiver in its own process, answering 200 to everything (a Collector stand-in)."""

    CODE = (
        "import sys\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    protocol_version = 'HTTP/1.1'\n"
        "    def do_POST(self):\n"
        "        self.rfile.read(int(self.headers.get('Content-Length', 0)))\n"
        "        self.send_response(200); self.send_header('Content-Length', '0'); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "s = ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
        "print(s.server_port, flush=True)\n"
        "s.serve_forever()\n"
    )

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _hot_subjects(
    model_kind: str, setup: str, detections: int, tmp: str
) -> tuple[dict[str, _Subject], Callable[[], None]]:
    import _discard
    from detwatch_instrumentation import _recorder_process

    model: Any = _ModelClock.wrap(make_model(detections) if model_kind == "sleep" else make_gil_model(detections))
    naive_of: Callable[[Any, otel_trace.TracerProvider, otel_metrics.MeterProvider], Any] = (
        naive if model_kind == "sleep" else naive_arrays
    )
    names = None if model_kind == "sleep" else LABEL_NAMES
    closers: list[Callable[[], None]] = []

    def decorate(tp: Any, mp: Any, lp: Any) -> Model:
        return cast(
            Model,
            monitor_detections(
                model_id=MODEL_ID,
                model_version=MODEL_VERSION,
                label_names=names,
                tracer_provider=tp,
                meter_provider=mp,
                logger_provider=lp,
            )(model),
        )

    def drain_process() -> None:
        _recorder_process.PROCESS.flush(export=False)

    subjects: dict[str, _Subject] = {"a": _Subject(model)}
    if setup == "memory":
        b_sdk, c_sdk = _discard.discarding_sdk(), _discard.discarding_sdk()
        counts = os.path.join(tmp, "recorder-counts.json")
        p_sdk = _discard.discarding_sdk()
        _recorder_process.use_recorder_process(
            "_discard:recorder_process_providers",
            config={"counts_path": counts},
            meter_provider=p_sdk.meter_provider,
            logger_provider=p_sdk.logger_provider,
            tracer_provider=p_sdk.tracer_provider,
        )

        def tallies(sdk: _discard.Sdk, images: int, events: bool, recorder: bool) -> dict[str, list[int]]:
            got = (
                _discard.read_counts(counts)
                if recorder
                else {"spans": sdk.tally.spans, "logs": sdk.tally.logs, "detections": sdk.tally.detections}
            )
            out = {
                "spans": [round(got["spans"]) if recorder else sdk.tally.spans, images],
                "detections counted": [round(got["detections"]), images * detections],
            }
            if events:
                out["prediction events"] = [round(got["logs"]), images]
            return out

        def settle_with(sdk: _discard.Sdk) -> Callable[[], None]:
            def settle() -> None:
                detwatch_instrumentation.flush()
                sdk.force_flush()

            return settle

        subjects["b"] = _Subject(
            naive_of(model, b_sdk.tracer_provider, b_sdk.meter_provider),
            settle=b_sdk.force_flush,
            close=b_sdk.shutdown,
            counts=lambda images: tallies(b_sdk, images, False, False),
        )
        subjects["c"] = _Subject(
            decorate(c_sdk.tracer_provider, c_sdk.meter_provider, c_sdk.logger_provider),
            drain=_drain_recorder,
            settle=settle_with(c_sdk),
            close=c_sdk.shutdown,
            counts=lambda images: tallies(c_sdk, images, True, False),
        )

        def close_p() -> None:
            _recorder_process.PROCESS.release(p_sdk.meter_provider, p_sdk.logger_provider)
            p_sdk.shutdown()

        subjects["p"] = _Subject(
            decorate(p_sdk.tracer_provider, p_sdk.meter_provider, p_sdk.logger_provider),
            drain=drain_process,
            settle=settle_with(p_sdk),
            close=close_p,
            counts=lambda images: tallies(p_sdk, images, True, True),
        )
    else:
        from detwatch import configure_opentelemetry

        receiver = _Receiver()
        closers.append(receiver.close)
        endpoint = f"http://127.0.0.1:{receiver.port}"
        b_tel = configure_opentelemetry(endpoint=endpoint, set_global=False, recorder="thread")
        c_tel = configure_opentelemetry(endpoint=endpoint, set_global=False, recorder="thread")
        p_tel = configure_opentelemetry(endpoint=endpoint, set_global=False)

        def flush_all(tel: Any) -> Callable[[], None]:
            def settle() -> None:
                tel.force_flush()

            return settle

        subjects["b"] = _Subject(
            naive_of(model, b_tel.tracer_provider, b_tel.meter_provider),
            settle=flush_all(b_tel),
            close=b_tel.shutdown,
        )
        for key, tel in (("c", c_tel), ("p", p_tel)):
            subjects[key] = _Subject(
                decorate(tel.tracer_provider, tel.meter_provider, tel.logger_provider),
                drain=_drain_recorder if key == "c" else drain_process,
                settle=flush_all(tel),
                close=tel.shutdown,
            )

    def close_all() -> None:
        for closer in closers:
            closer()

    return subjects, close_all


def hot_worker(model_kind: str, setup: str, calls: int, detections: int, block: int) -> dict[str, Any]:
    """The hot-path comparison: (a), (b), thread and process decorators, interleaved in blocks."""
    import tempfile

    from detwatch_instrumentation import _recorder_process

    failures = _count_guard_failures()
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        subjects, close_all = _hot_subjects(model_kind, setup, detections, tmp)
        for subject in subjects.values():
            for _ in range(WARMUP):
                subject.predict(image)
            subject.settle()
        pid = _recorder_process.recorder_pid()
        runs = {v: _Run() for v in HOT_VARIANTS}
        child_cpu = dict.fromkeys(HOT_VARIANTS, 0)
        for r in range(math.ceil(calls / block)):
            n = min(block, calls - r * block)
            k = r % len(HOT_VARIANTS)
            for v in HOT_VARIANTS[k:] + HOT_VARIANTS[:k]:
                c0 = _child_cpu_ns(pid)
                runs[v].measure(subjects[v].predict, image, n, detections, subjects[v].drain)
                child_cpu[v] += _child_cpu_ns(pid) - c0
        for subject in subjects.values():
            subject.settle()
        results = {}
        for v in HOT_VARIANTS:
            run = runs[v].as_json(subjects[v], WARMUP + calls)
            run["child_cpu_ns"] = child_cpu[v]
            results[v] = run
        stats = _recorder_process.PROCESS.stats
        for subject in subjects.values():
            subject.close()
        close_all()
    return {
        "model": model_kind,
        "setup": setup,
        "variants": results,
        "telemetry_failures": failures.count,
        "recorder": {"pid": pid, "frames": stats.frames, "dropped": stats.dropped, "restarts": stats.restarts},
    }


# ---------------------------------------------------------------- the parent: spawn, tabulate


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


@dataclass
class Row:
    """One configuration's results over its runs (subprocesses), in µs."""

    variant: str
    exemplars: str
    walls: list[float] = field(default_factory=list)
    """Every measured call, all runs pooled."""
    own_added: list[float] = field(default_factory=list)
    """Each call minus the mean of the undecorated calls of its own process."""
    cpu_total: float = 0.0
    calls: int = 0
    returned: int = 0
    exports: dict[str, list[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.variant]

    @property
    def cpu(self) -> float:
        """Process CPU per image."""
        return self.cpu_total / self.calls

    def added(self, reference_mean: float | None = None) -> tuple[float, float, float]:
        """Mean, p50 and p99 of the added wall time: against the undecorated calls of the
        same process, or against ``reference_mean``."""
        added = self.own_added if reference_mean is None else [w - reference_mean for w in self.walls]
        return _mean(added), _percentile(added, 0.5), _percentile(added, 0.99)

    def add(self, run: dict[str, Any], baseline_mean: float | None) -> None:
        problems = self.problems
        if run["errors"]:
            problems.append(f"{run['errors']} calls raised")
        if run["wrong"]:
            problems.append(f"{run['wrong']} calls returned a wrong result")
        for what, (got, expected) in run["counts"].items():
            if got != expected:
                problems.append(f"{what}: {got}, expected {expected}")
        for signal, (tried, failed) in run["exports"].items():
            if tried == 0:
                problems.append(f"no {signal} export was attempted during the calls")
            elif failed != tried:
                problems.append(f"{tried - failed} {signal} exports succeeded: is something listening?")
            total = self.exports.setdefault(signal, [0, 0])
            total[0] += tried
            total[1] += failed
        walls = [w / 1000 for w in run["walls_ns"]]
        self.walls += walls
        if baseline_mean is not None:
            self.own_added += [w - baseline_mean for w in walls]
        self.cpu_total += run["cpu_ns"] / 1000
        self.calls += len(walls)
        self.returned += len(walls) - run["errors"] - run["wrong"]


@dataclass
class Results:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    noop_ns: tuple[float, float] = (math.nan, math.nan)
    close_s: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def row(self, variant: str, exemplars: str) -> Row:
        return self.rows.setdefault((variant, exemplars), Row(variant, exemplars))

    def add(self, result: dict[str, Any], exemplars: str) -> None:
        variants: dict[str, Any] = result["variants"]
        baseline = variants.get("a")
        base_mean = _mean([w / 1000 for w in baseline["walls_ns"]]) if baseline is not None else None
        for variant, run in variants.items():
            key = "-" if variant in ("a", "d") else exemplars
            self.row(variant, key).add(run, base_mean)
            self.close_s[variant] = max(self.close_s.get(variant, 0.0), result["close_s"])
        if result["telemetry_failures"]:
            which = ", ".join(LABELS[v] for v in variants)
            self.problems.append(f"{result['telemetry_failures']} telemetry failures swallowed by the guard ({which})")
        if "noop_ns" in result:
            plain, decorated = result["noop_ns"]
            if math.isnan(self.noop_ns[0]) or decorated - plain < self.noop_ns[1] - self.noop_ns[0]:
                self.noop_ns = (plain, decorated)


def _clean_env(exemplar_filter: str, unreachable: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_METRICS_EXEMPLAR_FILTER"] = exemplar_filter
    if unreachable:
        timeout_ms = str(int(EXPORT_TIMEOUT_S * 1000))
        env.update(
            {
                "OTEL_METRIC_EXPORT_INTERVAL": "200",
                "OTEL_METRIC_EXPORT_TIMEOUT": timeout_ms,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_BSP_EXPORT_TIMEOUT": timeout_ms,
                "OTEL_BLRP_SCHEDULE_DELAY": "100",
                "OTEL_BLRP_EXPORT_TIMEOUT": timeout_ms,
                "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_S),  # seconds in the Python exporters
            }
        )
    return env


def spawn(worker: str, exemplar_filter: str, args: argparse.Namespace) -> dict[str, Any]:
    label = "(a) (d) (b) (c) (c') interleaved" if worker == "compare" else LABELS[worker]
    print(f"  running {label}, exemplars {exemplar_filter} ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker]
    cmd += ["--calls", str(args.calls), "--detections", str(args.detections), "--block", str(args.block)]
    env = _clean_env(exemplar_filter, unreachable=worker in UNREACHABLE)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {worker} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return "\n".join(
        [
            f"machine: nproc {nproc} ({cpu}), load average {load}",
            f"python {platform.python_version()} ({platform.python_implementation()}),"
            f" GIL switch interval {sys.getswitchinterval() * 1000:.0f} ms",
            f"opentelemetry-api {metadata.version('opentelemetry-api')},"
            f" opentelemetry-sdk {metadata.version('opentelemetry-sdk')},"
            f" opentelemetry-exporter-otlp-proto-http {metadata.version('opentelemetry-exporter-otlp-proto-http')},"
            f" detwatch-instrumentation {detwatch_instrumentation.__version__}",
        ]
    )


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.inf


def report(results: Results, args: argparse.Namespace) -> bool:
    ok = True
    rows = results.rows
    a, d = rows[("a", "-")], rows[("d", "-")]
    a_mean = _mean(a.walls)

    print()
    print(
        f"Per image with {args.detections} detections; inference = a {INFERENCE_S * 1000:.0f} ms sleep (GIL released);"
        f" {args.calls} calls per variant and process, in blocks of {args.block} interleaved with the other variants,"
        f" {args.repeat} process(es) per exemplar filter; exporters discard"
    )
    print(
        f"(a) takes {a_mean:.0f} µs per call. 'added' = a call's wall time on the caller's thread minus the mean"
        " of the undecorated calls of the same process; CPU = all threads of the process, including the"
        " background recording."
    )
    ordered = [a, d] + [rows[(v, f)] for f in FILTERS for v in ("b", "c", "c-noevents")]
    lines = []
    for r in ordered:
        mean, p50, p99 = r.added()
        lines.append([r.label, r.exemplars, f"{mean:.1f}", f"{p50:.1f}", f"{p99:.1f}", f"{r.cpu:.1f}"])
    headers = ["variant", "exemplar filter", "added µs/call mean", "added p50", "added p99", "CPU µs/image"]
    for line in table(headers, lines):
        print(line)
    plain_ns, decorated_ns = results.noop_ns
    print(
        f"(d) on a model that returns at once: {decorated_ns - plain_ns:.0f} ns added per call"
        f" ({plain_ns:.0f} -> {decorated_ns:.0f} ns; best of 3 x {NOOP_CALLS} calls)"
    )

    print()
    print(
        f"Targets: (c) added / (b) added <= {TARGET_WALL} on the caller's thread (aim {AIM_WALL});"
        f" (c) CPU / (b) CPU <= {TARGET_CPU}"
    )
    lines = []
    for f in FILTERS:
        b = rows[("b", f)]
        b_mean, _, b_p99 = b.added()
        for v in ("c", "c-noevents"):
            c = rows[(v, f)]
            c_mean, _, c_p99 = c.added()
            wall, cpu = _ratio(c_mean, b_mean), _ratio(c.cpu, b.cpu)
            cpu_target = f == CPU_TARGET_FILTER
            if v == "c":
                ok = ok and wall <= TARGET_WALL and (cpu <= TARGET_CPU or not cpu_target)
            lines.append(
                [
                    f"{c.label.split(' ', 1)[0]} / (b), exemplars {f}",
                    f"{wall:.3f} {verdict(wall <= TARGET_WALL)}",
                    "met" if wall <= AIM_WALL else "missed",
                    f"{_ratio(c_p99, b_p99):.3f}",
                    f"{cpu:.3f} {verdict(cpu <= TARGET_CPU) if cpu_target else 'reference'}",
                ]
            )
    for line in table(["ratio", "added wall (mean)", f"aim {AIM_WALL}", "added p99", "CPU per image"], lines):
        print(line)
    print(
        "The targets apply to (c), the decorator as shipped (events on); (c') shows what the log record costs."
        f" The CPU target compares with naive code on the SDK's default configuration ({CPU_TARGET_FILTER});"
        " with exemplars turned off by hand (b) is no longer naive, and (c)'s 62 SDK measurements per image"
        " against (b)'s 61 set the floor: that row is a reference."
    )

    print()
    print(
        "Unreachable OTLP endpoint: configure_opentelemetry(endpoint=..., set_global=False), exemplars always_off;"
        f" metrics exported every 200 ms, spans and logs every 100 ms, export timeout {EXPORT_TIMEOUT_S:.0f} s;"
        f" {max(args.calls, MIN_UNREACHABLE_CALLS)} calls in a row in each of {args.repeat} process(es);"
        " CPU includes OTLP serialisation and the failed sends"
    )
    e_naive_mean = rows[("e-naive", "always_off")].added(a_mean)[0]
    bound_mean = TARGET_WALL * e_naive_mean
    bound_max = EXPORT_TIMEOUT_S * 1e6 / 4
    print(
        f"(a) undecorated: p50 / p99 / max {_percentile(a.walls, 0.5) / 1000:.3f} /"
        f" {_percentile(a.walls, 0.99) / 1000:.3f} / {max(a.walls) / 1000:.3f} ms; 'added' is against its mean."
    )
    print(
        f"Bounds for (c): added mean <= {TARGET_WALL} x that of (b) over the same endpoint = {bound_mean:.1f} µs;"
        f" no call over {bound_max / 1000:.0f} ms (a call that waited on an export would take the whole timeout)."
    )
    lines = []
    for v in UNREACHABLE:
        e = rows[(v, "always_off")]
        mean, _, p99 = e.added(a_mean)
        worst = max(e.walls)
        bounded = v in ("e-refused", "e-blackhole")
        e_ok = not e.problems and (not bounded or (mean <= bound_mean and worst < bound_max))
        ok = ok and e_ok
        lines.append(
            [
                e.label,
                " / ".join(f"{x / 1000:.3f}" for x in (_percentile(e.walls, 0.5), _percentile(e.walls, 0.99), worst)),
                f"{mean:.1f} / {p99:.1f}",
                f"{e.cpu:.1f}",
                f"{e.returned}/{e.calls}",
                " ".join(f"{s} {f}/{t}" for s, (t, f) in e.exports.items()),
                f"{results.close_s[v]:.1f} s",
                verdict(e_ok) if bounded else ("reference" if e_ok else "FAIL"),
            ]
        )
    headers = [
        "variant",
        "p50 / p99 / max ms",
        "added µs mean / p99",
        "CPU µs/image",
        "returned",
        "exports failed/tried",
        "shutdown",
        "",
    ]
    for line in table(headers, lines):
        print(line)

    print()
    problems = results.problems + [f"{r.label} ({r.exemplars}): {p}" for r in rows.values() for p in r.problems]
    for p in problems:
        print(f"CHECK FAILED: {p}")
    if not problems:
        print(
            "Checks: every call returned its result; every span, prediction event and detection arrived;"
            " exports to the unreachable endpoint were attempted (and failed) during the calls;"
            " the decorator's guard swallowed no failure."
        )
    ok = ok and not problems
    print(f"overall: {verdict(ok)}")
    return ok


def spawn_hot(model_kind: str, setup: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"  running the hot path: {model_kind} model, {setup} set-up ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "hot", "--model", model_kind, "--setup", setup]
    cmd += ["--calls", str(args.hot_calls), "--detections", str(args.detections), "--block", str(args.block)]
    env = _clean_env("always_off", unreachable=False)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=4 * WORKER_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"hot worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@dataclass
class HotRow:
    """One (model, set-up) over its runs: per variant, pooled walls and CPU, in µs."""

    walls: dict[str, list[float]] = field(default_factory=dict)
    added: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    thread_cpu: dict[str, float] = field(default_factory=dict)
    """The calling thread's CPU outside the model, µs in all."""
    model_wall: dict[str, float] = field(default_factory=dict)
    model_cpu: dict[str, float] = field(default_factory=dict)
    """The model's own CPU (the calling thread's, inside the model), µs in all."""
    child_cpu: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    recorder: dict[str, int] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        variants = result["variants"]
        base = _mean([w / 1000 for w in variants["a"]["walls_ns"]])
        for v, run in variants.items():
            walls = [w / 1000 for w in run["walls_ns"]]
            self.walls.setdefault(v, []).extend(walls)
            self.added.setdefault(v, []).extend(w - base for w in walls)
            self.cpu[v] = self.cpu.get(v, 0.0) + run["cpu_ns"] / 1000
            outside = (run["thread_cpu_ns"] - run["model_cpu_ns"]) / 1000
            self.thread_cpu[v] = self.thread_cpu.get(v, 0.0) + outside
            self.model_wall[v] = self.model_wall.get(v, 0.0) + run["model_wall_ns"] / 1000
            self.model_cpu[v] = self.model_cpu.get(v, 0.0) + run["model_cpu_ns"] / 1000
            self.child_cpu[v] = self.child_cpu.get(v, 0.0) + run["child_cpu_ns"] / 1000
            self.calls[v] = self.calls.get(v, 0) + len(walls)
            if run["errors"] or run["wrong"]:
                self.problems.append(f"{HOT_LABELS[v]}: {run['errors']} raised, {run['wrong']} wrong results")
            for what, (got, expected) in run["counts"].items():
                if got != expected:
                    self.problems.append(f"{HOT_LABELS[v]}: {what} {got}, expected {expected}")
        if result["telemetry_failures"]:
            self.problems.append(f"{result['telemetry_failures']} telemetry failures swallowed by the guard")
        for k, n in result["recorder"].items():
            if k != "pid":
                self.recorder[k] = self.recorder.get(k, 0) + int(n or 0)
        if result["recorder"]["dropped"]:
            self.problems.append(f"the recorder process dropped {result['recorder']['dropped']} calls")

    def caller_cpu_per_image(self, v: str) -> float:
        """CPU of the calling thread outside the model per image, in µs."""
        return self.thread_cpu[v] / self.calls[v]

    def model_wall_per_image(self, v: str) -> float:
        """The model's own wall time per image, in µs."""
        return self.model_wall[v] / self.calls[v]

    def model_cpu_per_image(self, v: str) -> float:
        """The model's own CPU per image, in µs."""
        return self.model_cpu[v] / self.calls[v]

    def cpu_per_image(self, v: str) -> tuple[float, float]:
        """(this process, recorder process) CPU per image, in µs."""
        return self.cpu[v] / self.calls[v], self.child_cpu[v] / self.calls[v]


def report_hot(rows: dict[tuple[str, str], HotRow], args: argparse.Namespace) -> bool:
    ok = True
    print()
    print(
        f"The hot path: per image with {args.detections} detections, {args.hot_calls} calls per variant and process"
        f" in interleaved blocks of {args.block}, {args.repeat} process(es) per row; exemplars always_off (naive code"
        " at its cheapest). Models: 'sleep' releases the GIL for"
        f" {INFERENCE_S * 1000:.0f} ms; 'gil' is an eager forward pass of {GIL_INFERENCE_S * 1000:.0f} ms of small"
        " NumPy operations holding the GIL, returning torchvision's dict of arrays. Set-ups: 'memory' = SDK"
        " providers with discarding exporters; 'otlp' = the README's configure_opentelemetry(endpoint=...) to a"
        " loopback receiver in another process."
    )
    print(
        "'added' = a call's wall time minus the mean undecorated call of the same process; CPU = added CPU per"
        " image over the undecorated call, this process (all threads) plus the recorder process; 'caller CPU' ="
        " CPU of the calling thread alone (time.thread_time) outside the model's own call, the part of the cost that"
        " inference waits for whatever the other cores do; 'model slower' = the model's own wall time per call"
        " minus the undecorated variant's (contention with the recorder, other threads taking the GIL, noise)."
        " 'outside model' = added wall time outside the model's own call (the caller's telemetry work and its"
        " waits for the GIL); 'telemetry CPU' = added CPU of both processes minus the model's own CPU change."
        " The targets are judged on these two and on caller CPU: on a shared machine a 15 ms GIL-holding model"
        " varies by a millisecond from block to block ('model slower'), which swamps the added wall and total"
        " CPU columns (shown as measured)."
    )
    lines = []
    for (model_kind, setup), row in rows.items():
        a_cpu = row.cpu_per_image("a")[0]
        b_cpu = row.cpu_per_image("b")[0] - a_cpu
        a_caller = row.caller_cpu_per_image("a")
        b_caller = row.caller_cpu_per_image("b") - a_caller

        def outside(v: str, row: HotRow = row) -> float:
            """Added wall outside the model's own call, per image."""
            return (
                _mean(row.walls[v])
                - row.model_wall_per_image(v)
                - (_mean(row.walls["a"]) - row.model_wall_per_image("a"))
            )

        def telemetry(v: str, row: HotRow = row) -> float:
            """Added CPU of both processes outside the model's own call, per image."""
            own, child = row.cpu_per_image(v)
            a_own = row.cpu_per_image("a")[0]
            return own - row.model_cpu_per_image(v) - (a_own - row.model_cpu_per_image("a")) + child

        b_outside, b_telemetry = outside("b"), telemetry("b")
        for v in ("b", "c", "p"):
            mean = _mean(row.added[v])
            p99 = _percentile(row.added[v], 0.99)
            own, child = row.cpu_per_image(v)
            cpu = own - a_cpu + child
            wall_ratio = _ratio(outside(v), b_outside)
            cpu_ratio = _ratio(telemetry(v), b_telemetry)
            caller = row.caller_cpu_per_image(v) - a_caller
            slower = row.model_wall_per_image(v) - row.model_wall_per_image("a")
            verdicts = ""
            if v == "p":
                wall_ok = wall_ratio <= TARGET_WALL
                caller_ok = _ratio(caller, b_caller) <= TARGET_WALL
                cpu_ok = model_kind != "gil" or cpu_ratio <= TARGET_HOT_CPU
                ok = ok and wall_ok and caller_ok and cpu_ok
                verdicts = f"wall {verdict(wall_ok)}, caller {verdict(caller_ok)}" + (
                    f", CPU {verdict(cpu_ok)}" if model_kind == "gil" else ""
                )
            lines.append(
                [
                    model_kind,
                    setup,
                    HOT_LABELS[v],
                    f"{mean:.1f}",
                    f"{p99:.1f}",
                    f"{outside(v):.1f}",
                    "" if v == "b" else f"{wall_ratio:.3f}",
                    f"{caller:.1f}",
                    "" if v == "b" else f"{_ratio(caller, b_caller):.3f}",
                    f"{slower:.1f}",
                    f"{own - a_cpu:.1f}",
                    f"{child:.1f}" if v == "p" else "",
                    f"{telemetry(v):.1f}",
                    "" if v == "b" else f"{cpu_ratio:.3f}",
                    f"{cpu:.1f}",
                    "" if v == "b" else f"{_ratio(cpu, b_cpu):.3f}",
                    verdicts,
                ]
            )
    headers = [
        "model",
        "set-up",
        "variant",
        "added µs mean",
        "added p99",
        "outside model µs",
        "/ naive",
        "caller CPU µs",
        "/ naive",
        "model slower µs",
        "CPU here µs",
        "CPU recorder µs",
        "telemetry CPU µs",
        "/ naive",
        "CPU total µs",
        "/ naive",
        "targets",
    ]
    for line in table(headers, lines):
        print(line)
    print(
        f"Targets (recorder process): added wall outside the model and caller CPU <= {TARGET_WALL} x naive's"
        f" (aim {AIM_WALL}) on both models; telemetry CPU <= {TARGET_HOT_CPU} x naive's on the GIL-holding model."
    )
    for (model_kind, setup), row in rows.items():
        stats = ", ".join(f"{k} {n}" for k, n in row.recorder.items())
        print(f"recorder process ({model_kind}, {setup}): {stats}")
        for problem in row.problems:
            print(f"CHECK FAILED ({model_kind}, {setup}): {problem}")
            ok = False
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_overhead", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--calls", type=positive_int, default=DEFAULT_CALLS, help="measured calls per variant and process"
    )
    parser.add_argument("--detections", type=positive_int, default=DEFAULT_DETECTIONS, help="detections per image")
    parser.add_argument("--block", type=positive_int, default=DEFAULT_BLOCK, help="calls per interleaved block")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT, help="processes per exemplar filter")
    parser.add_argument("--hot-calls", type=positive_int, default=DEFAULT_CALLS, help="calls per hot-path variant")
    parser.add_argument("--hot-only", action="store_true", help="run only the hot-path comparison")
    parser.add_argument("--worker", choices=["compare", "hot", *UNREACHABLE], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=HOT_MODELS, default="gil", help=argparse.SUPPRESS)
    parser.add_argument("--setup", choices=HOT_SETUPS, default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "hot":
        print(json.dumps(hot_worker(args.model, args.setup, args.calls, args.detections, args.block)))
        return 0
    if args.worker == "compare":
        print(json.dumps(compare_worker(args.calls, args.detections, args.block)))
        return 0
    if args.worker:
        print(json.dumps(unreachable_worker(args.worker, args.calls, args.detections)))
        return 0

    started = time.perf_counter()
    print("bench_overhead: what @monitor_detections adds to a detector's call, against naive SDK instrumentation")
    print(machine())
    hot_rows: dict[tuple[str, str], HotRow] = {}
    results = Results()
    for _ in range(args.repeat):  # round robin, as the blocks within a process
        for model_kind in HOT_MODELS:
            for setup in HOT_SETUPS:
                hot_rows.setdefault((model_kind, setup), HotRow()).add(spawn_hot(model_kind, setup, args))
        if args.hot_only:
            continue
        for exemplar_filter in FILTERS:
            results.add(spawn("compare", exemplar_filter, args), exemplar_filter)
        for variant in UNREACHABLE:
            results.add(spawn(variant, "always_off", args), "always_off")
    ok = report_hot(hot_rows, args)
    if not args.hot_only:
        ok = report(results, args) and ok
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
