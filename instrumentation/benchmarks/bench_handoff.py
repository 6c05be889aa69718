"""What the caller's thread pays to hand a call over, beside the least any Python hand-off can pay.

Why this exists
---------------
Right after a forward pass the caller's caches are cold, and every interpreter step
costs several times its tight-loop price. ``bench_overhead.py`` shows the decorator's
share of naive SDK code; this benchmark shows how much of what is left any pure-Python
hand-off would pay anyway, so that the next step (fewer Python steps, or a native
hand-off) is chosen on a measurement.

The model of inference, and why it is realistic
-----------------------------------------------
The model is a forward pass that leaves the caches as a real one leaves them, then
returns what a detector returns (torchvision's layout, three fresh arrays for 20
detections): ``sleep`` (3 ms with the GIL released, as a detector's native inference
does; the core idles or runs something else) or ``gil`` (an eager forward pass: ~15
ms of small NumPy operations holding the GIL, ``bench_overhead``'s model). As in a
real call, the hand-off's start runs before the forward pass and its end after it,
on cold caches. Measured: the calling thread's CPU (``time.thread_time_ns``, whatever
other threads and processes do) over the call, minus the model's own.

Variants, interleaved in blocks of 25 calls:

- ``undecorated``: the model alone (its copies are the baseline taken off the others);
- ``floor``: the least a hand-off that keeps the telemetry contract does on the
  caller, written as one function with no checks, no lock and no fallback: two time
  stamps before and two after, the call's span made current (context copy, attach,
  a context variable) and reset, a trace and a span id drawn, a ``struct`` header,
  a CRC over it and the three arrays, and four copies into shared memory;
- ``fast path``: the decorator as shipped (recorder process, planned span);
- ``general path``: the decorator with its fast path turned off (the hand-off before it);
- ``naive``: hand-written SDK code, a span and three SDK calls per detection.

Run: ``python instrumentation/benchmarks/bench_handoff.py [--calls N]`` (or
``./run bench --only handoff``).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
from opentelemetry import context as otel_context

from _discard import discarding_sdk
from _report import positive_int, table, verdict
from bench_overhead import INFERENCE_S, LABEL_NAMES, MODEL_ID, MODEL_VERSION, make_gil_model, naive_arrays
from detwatch_instrumentation import _fast_path, _recorder_process, monitor_detections
from detwatch_instrumentation._ring import Ring, create_ring_fd

DETECTIONS = 20
BLOCK = 25
WARMUP = 30
VARIANTS = ("undecorated", "floor", "fast path", "general path", "naive")
TARGET = 0.25
"""The hot-path target: the decorator adds at most this share of what naive code adds on the caller's thread."""

_HEADER = struct.Struct("<2sBBB3sIIqqqQQQQdd")
_U64 = (1 << 64) - 1


def detector_output(seed: int = 7) -> Callable[[Any], dict[str, Any]]:
    """A model that returns at once what a detector returns: fresh arrays in torchvision's layout."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 400, (DETECTIONS, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(16, 200, (DETECTIONS, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0.25, 0.99, DETECTIONS).astype(np.float32)
    labels = rng.integers(0, len(LABEL_NAMES), DETECTIONS).astype(np.int64)

    def model(image: Any) -> dict[str, Any]:
        return {"boxes": boxes.copy(), "scores": scores.copy(), "labels": labels.copy()}

    return model


def floor_handoff(model: Callable[[Any], dict[str, Any]]) -> tuple[Callable[[Any], dict[str, Any]], Ring]:
    """The least hand-off that keeps the contract, in one function (see the module documentation)."""
    fd = create_ring_fd(1 << 20)
    ring = Ring(fd, 1 << 20)
    ring.prefault()
    mem = ring.map
    active: ContextVar[object] = ContextVar("floor_active", default=None)
    getrandbits = random.getrandbits
    perf, wall = time.perf_counter_ns, time.time_ns
    offset = [0]

    def call(image: Any) -> dict[str, Any]:
        start, start_unix = perf(), wall()
        trace_id, span_id = getrandbits(128), getrandbits(64)
        values = dict(otel_context.get_current())
        values["current-span"] = span_id
        token = otel_context.attach(otel_context.Context(values))
        active_token = active.set(span_id)
        output = model(image)
        duration, end_unix = perf() - start, wall()
        active.reset(active_token)
        otel_context.detach(token)
        boxes, scores, labels = output["boxes"], output["scores"], output["labels"]
        header = _HEADER.pack(
            b"\x00D", 1, 1, 0, b"ffq", 1, len(boxes), duration, end_unix, start_unix,
            trace_id >> 64, trace_id & _U64, span_id, 0, 640.0, 480.0,
        )  # fmt: skip
        crc = zlib.crc32(labels, zlib.crc32(scores, zlib.crc32(boxes, zlib.crc32(header))))
        at = 64 + offset[0] % (1 << 19)
        parts: tuple[Any, ...] = (header, boxes, scores, labels)
        for part in parts:
            end = at + (len(part) if type(part) is bytes else part.nbytes)
            mem[at:end] = part
            at = end
        mem[64:68] = crc.to_bytes(4, "little")
        offset[0] += 1024
        return output

    return call, ring


def run(pause_kind: str, calls: int) -> dict[str, list[int]]:
    """Per variant, the caller's CPU (ns) of each call outside the model's own."""
    returns = detector_output()
    forward = make_gil_model(DETECTIONS) if pause_kind == "gil" else None
    thread_time = time.thread_time_ns
    inside = [0]

    def model(image: Any) -> dict[str, Any]:
        t0 = thread_time()
        if forward is None:
            time.sleep(INFERENCE_S)
        else:
            forward(image)
        output = returns(image)
        inside[0] += thread_time() - t0
        return output

    naive_sdk, sdk = discarding_sdk(), discarding_sdk()
    tmp = tempfile.mkdtemp()
    _recorder_process.use_recorder_process(
        "_discard:recorder_process_providers",
        config={"counts_path": f"{tmp}/counts.json"},
        meter_provider=sdk.meter_provider,
        logger_provider=sdk.logger_provider,
        tracer_provider=sdk.tracer_provider,
    )
    general_now = [False]
    for_provider = _fast_path.FastRoute.for_provider

    def route(provider: Any) -> _fast_path.FastRoute | None:
        return None if general_now[0] else for_provider(provider)

    _fast_path.FastRoute.for_provider = staticmethod(route)  # type: ignore[method-assign,assignment]

    def decorated(name: str) -> Callable[[Any], Any]:
        return monitor_detections(
            model_id=name,
            model_version=MODEL_VERSION,
            label_names=LABEL_NAMES,
            tracer_provider=sdk.tracer_provider,
            meter_provider=sdk.meter_provider,
            logger_provider=sdk.logger_provider,
        )(model)

    floor, ring = floor_handoff(model)
    general = decorated(f"{MODEL_ID}-general")

    def general_call(image: Any) -> Any:
        general_now[0] = True
        try:
            return general(image)
        finally:
            general_now[0] = False

    subjects: dict[str, Callable[[Any], Any]] = {
        "undecorated": model,
        "floor": floor,
        "fast path": decorated(MODEL_ID),
        "general path": general_call,
        "naive": naive_arrays(model, naive_sdk.tracer_provider, naive_sdk.meter_provider),
    }
    image = np.zeros((480, 640, 3), np.uint8)
    for subject in subjects.values():
        for _ in range(WARMUP):
            subject(image)
    cpu: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for block in range(-(-calls // BLOCK)):
        k = block % len(VARIANTS)
        for v in VARIANTS[k:] + VARIANTS[:k]:
            subject = subjects[v]
            for _ in range(min(BLOCK, calls - block * BLOCK)):
                inside[0] = 0
                t0 = thread_time()
                subject(image)
                cpu[v].append(thread_time() - t0 - inside[0])
        _recorder_process.PROCESS.flush(export=False)
    _fast_path.FastRoute.for_provider = staticmethod(for_provider)  # type: ignore[method-assign]
    _recorder_process.PROCESS.release(sdk.meter_provider, sdk.logger_provider)
    for s in (sdk, naive_sdk):
        s.shutdown()
    ring.close()
    return cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_handoff", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--calls", type=positive_int, default=300, help="timed calls per variant and pause")
    args, _ = parser.parse_known_args(argv)
    print("bench_handoff: the caller's CPU to hand one call over (20 detections), right after a forward pass")
    ok = True
    rows = []
    for pause_kind in ("sleep", "gil"):
        print(f"  running: {pause_kind} pause ...", flush=True)
        cpu = run(pause_kind, args.calls)
        base = float(np.mean(cpu["undecorated"]))
        naive_added = float(np.mean(cpu["naive"])) - base
        for v in VARIANTS:
            mean = float(np.mean(cpu[v]))
            added = mean - base
            ratio = added / naive_added if naive_added > 0 else float("inf")
            check = ""
            if v == "fast path":
                check = verdict(ratio <= TARGET)
                ok = ok and ratio <= TARGET
            rows.append(
                [
                    pause_kind,
                    v,
                    f"{mean / 1000:.1f}",
                    f"{float(np.median(cpu[v])) / 1000:.1f}",
                    "" if v == "undecorated" else f"{added / 1000:.1f}",
                    "" if v in ("undecorated", "naive") else f"{ratio:.3f}",
                    check,
                ]
            )
    print(
        f"Caller CPU per call outside the model (time.thread_time), µs, {args.calls} calls per variant in"
        f" interleaved blocks of {BLOCK};"
        " 'added' = over the undecorated call; 'floor' = the least Python hand-off (see the module documentation)."
    )
    headers = ["pause", "variant", "CPU mean", "CPU median", "added", "added / naive", f"<= {TARGET} x naive"]
    for line in table(headers, rows):
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
