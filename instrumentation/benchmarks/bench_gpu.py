"""What ``@monitor_detections`` adds around real torchvision detectors on a GPU, against naive SDK code.

Why this model of inference is realistic: it *is* the inference people run.
torchvision's ``fasterrcnn_resnet50_fpn`` and ``ssdlite320_mobilenet_v3_large`` (random
weights: nothing can be downloaded where the GPU is; score threshold 0 and at most 20
detections, so every image yields 20) run their eager forward pass as Python code that
holds the GIL while it launches kernels, and return CUDA tensors. Each call is followed
by ``torch.cuda.synchronize()``, as an application that uses the result waits for it.

Variants, interleaved in blocks of 25 calls in one process per (detector, set-up):
(a) undecorated; (b) naive: a span and, per detection, ``confidence`` and ``box_area``
records and a ``detections`` count, reading the tensors with ``.tolist()`` as a user
would; (c) the decorator recording on a thread of this process; (p) the decorator with
its recorder process. Set-ups: ``memory`` (SDK providers with exporters that count and
discard) and ``otlp`` (the README's ``detwatch.configure_opentelemetry(endpoint=...)`` to
a loopback receiver in another process). Exemplars off (naive code at its cheapest).

Reported per variant: added wall time per call on the caller's thread (mean and p99,
against the mean undecorated call), and added CPU per image: this process's (all
threads) over the undecorated call's, plus the recorder process's.

Run where torch and torchvision are, from the ``instrumentation/benchmarks`` folder, with
the OpenTelemetry wheels and both ``src`` folders on ``PYTHONPATH``:
``python3 bench_gpu.py [--blocks N] [--models ...] [--setups ...]``. ``--device cpu`` runs
the same detectors on the CPU, returning CPU tensors (a check of the script where no GPU
is lent, and the figures of a CPU deployment).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

os.environ["OTEL_METRICS_EXEMPLAR_FILTER"] = "always_off"

import numpy as np

import _discard
from _report import table, verdict
from bench_overhead import AIM_WALL, TARGET_HOT_CPU, TARGET_WALL, _child_cpu_ns, _ModelClock, _Receiver
from detwatch_instrumentation import _recorder_process, flush, monitor_detections, semconv

BLOCK = 25
WARMUP = 20
DETECTIONS = 20
LABEL_NAMES = {i: f"class{i}" for i in range(91)}
MODELS = ("fasterrcnn_resnet50_fpn", "ssdlite320_mobilenet_v3_large")
SETUPS = ("memory", "otlp")
VARIANTS = ("a", "b", "c", "p")
LABELS = {"a": "undecorated", "b": "naive SDK code", "c": "decorator, thread", "p": "decorator, recorder process"}


def build_model(name: str) -> Any:
    torchvision: Any = importlib.import_module("torchvision")

    if name == "fasterrcnn_resnet50_fpn":
        return torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=DETECTIONS
        )
    return torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, score_thresh=0.0, detections_per_img=DETECTIONS
    )


def naive(raw: Callable[[Any], Any], tracer_provider: Any, meter_provider: Any) -> Callable[[Any], Any]:
    tracer = tracer_provider.get_tracer("naive")
    meter = meter_provider.get_meter("naive")
    duration = meter.create_histogram(semconv.INFERENCE_DURATION.name, unit="s")
    confidence = meter.create_histogram(semconv.DETECTION_CONFIDENCE.name)
    box_area = meter.create_histogram(semconv.DETECTION_BOX_AREA.name)
    detections = meter.create_counter(semconv.DETECTIONS.name)
    model_attrs = {semconv.ATTR_MODEL_ID: "m", semconv.ATTR_MODEL_VERSION: "random"}

    def predict(img: Any) -> Any:
        with tracer.start_as_current_span("detect m", attributes=model_attrs):
            t0 = time.perf_counter()
            out = raw(img)
            duration.record(time.perf_counter() - t0, model_attrs)
            h, w = img.shape[1], img.shape[2]
            rows = zip(out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist(), strict=True)
            for (x1, y1, x2, y2), score, label in rows:
                attrs = {**model_attrs, semconv.ATTR_DETECTION_CLASS: LABEL_NAMES[label]}
                confidence.record(score, attrs)
                box_area.record((x2 - x1) * (y2 - y1) / (w * h), attrs)
                detections.add(1, attrs)
        return out

    return predict


def run_one(model_name: str, setup: str, blocks: int, dev: str = "cuda") -> dict[str, Any]:
    torch: Any = importlib.import_module("torch")
    data: Any = importlib.import_module("skimage.data")

    def synchronize() -> None:
        if dev == "cuda":
            torch.cuda.synchronize()

    images = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    images = [torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1).float().div(255).to(dev) for i in images]
    torch.manual_seed(0)
    if dev == "cpu":
        # One intra-op thread: the forward pass's CPU is the calling thread's, which the clock takes out,
        # and the second core is left to the recorder and the exporters, as a GPU machine's spare cores are.
        torch.set_num_threads(1)
    model = build_model(model_name).eval().to(dev)

    def forward(img: Any) -> Any:
        return model([img])[0]

    raw: Callable[[Any], Any] = _ModelClock.wrap(torch.inference_mode()(forward))

    def decorate(tel: Any) -> Callable[[Any], Any]:
        return monitor_detections(
            model_id="m",
            model_version="random",
            label_names=LABEL_NAMES,
            tracer_provider=tel.tracer_provider,
            meter_provider=tel.meter_provider,
            logger_provider=tel.logger_provider,
        )(raw)

    closers: list[Callable[[], None]] = []
    b_tel: Any
    c_tel: Any
    p_tel: Any
    counts_path = f"/tmp/bench-gpu-{os.getpid()}.json"
    if setup == "memory":
        b_tel, c_tel, p_tel = _discard.discarding_sdk(), _discard.discarding_sdk(), _discard.discarding_sdk()
        _recorder_process.use_recorder_process(
            "_discard:recorder_process_providers",
            config={"counts_path": counts_path},
            meter_provider=p_tel.meter_provider,
            logger_provider=p_tel.logger_provider,
            tracer_provider=p_tel.tracer_provider,
        )
    else:
        from detwatch import configure_opentelemetry

        receiver = _Receiver()
        closers.append(receiver.close)
        endpoint = f"http://127.0.0.1:{receiver.port}"
        b_tel = configure_opentelemetry(endpoint=endpoint, set_global=False, recorder="thread")
        c_tel = configure_opentelemetry(endpoint=endpoint, set_global=False, recorder="thread")
        p_tel = configure_opentelemetry(endpoint=endpoint, set_global=False)
    variants: dict[str, Callable[[Any], Any]] = {
        "a": raw,
        "b": naive(raw, b_tel.tracer_provider, b_tel.meter_provider),
        "c": decorate(c_tel),
        "p": decorate(p_tel),
    }
    drains: dict[str, Callable[[], Any]] = {
        "a": lambda: None,
        "b": lambda: None,
        "c": flush,
        "p": lambda: _recorder_process.PROCESS.flush(export=False),
    }
    for _ in range(WARMUP):  # cudnn autotuning, the allocator, the recorder process's start
        for v in VARIANTS:
            variants[v](images[0])
            synchronize()
    for v in VARIANTS:
        drains[v]()
    pid = _recorder_process.recorder_pid()
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    outside: dict[str, list[float]] = {v: [] for v in VARIANTS}
    """Each call's wall time outside the forward pass (the synchronisation included), µs."""
    model_cpu = dict.fromkeys(VARIANTS, 0.0)
    cpu = dict.fromkeys(VARIANTS, 0.0)
    child = dict.fromkeys(VARIANTS, 0.0)
    caller = dict.fromkeys(VARIANTS, 0.0)
    """The calling thread's CPU outside the forward pass and the synchronisation, µs in all."""
    errors = 0
    order = list(VARIANTS)
    for b in range(blocks):
        order = order[1:] + order[:1]
        for v in order:
            f = variants[v]
            c0, k0 = time.process_time_ns(), _child_cpu_ns(pid)
            for i in range(BLOCK):
                img = images[(b * BLOCK + i) % len(images)]
                t0 = time.perf_counter_ns()
                th0, m0, mw0 = time.thread_time_ns(), _ModelClock.cpu_ns, _ModelClock.wall_ns
                out = f(img)
                caller[v] += (time.thread_time_ns() - th0 - (_ModelClock.cpu_ns - m0)) / 1000
                synchronize()
                wall = (time.perf_counter_ns() - t0) / 1000
                walls[v].append(wall)
                outside[v].append(wall - (_ModelClock.wall_ns - mw0) / 1000)
                model_cpu[v] += (_ModelClock.cpu_ns - m0) / 1000
                if int(out["boxes"].shape[0]) != DETECTIONS:
                    errors += 1
            drains[v]()
            cpu[v] += (time.process_time_ns() - c0) / 1000
            child[v] += (_child_cpu_ns(pid) - k0) / 1000
    stats = _recorder_process.PROCESS.stats
    result = {
        "model": model_name,
        "setup": setup,
        "walls": walls,
        "outside": outside,
        "model_cpu": model_cpu,
        "cpu": cpu,
        "child": child,
        "caller": caller,
        "errors": errors,
        "recorder": {"frames": stats.frames, "dropped": stats.dropped, "restarts": stats.restarts},
    }
    for tel in (b_tel, c_tel, p_tel):
        if hasattr(tel, "tally"):
            flush()
            tel.force_flush()
    if setup == "memory":
        calls = WARMUP + blocks * BLOCK
        got = _discard.read_counts(counts_path)
        result["counts"] = {
            "thread: events": [c_tel.tally.logs, calls],
            "thread: detections": [round(c_tel.tally.detections), calls * DETECTIONS],
            "process: events": [round(got["logs"]), calls],
            "process: detections": [round(got["detections"]), calls * DETECTIONS],
            "process: spans": [round(got["spans"]), calls],
        }
    _recorder_process.PROCESS.release(p_tel.meter_provider, p_tel.logger_provider)
    for tel in (b_tel, c_tel, p_tel):
        tel.shutdown()
    for closer in closers:
        closer()
    if dev == "cuda":
        torch.cuda.empty_cache()
    return result


def report(results: Sequence[dict[str, Any]]) -> bool:
    ok = True
    lines = []
    for r in results:
        walls, cpu, child = r["walls"], r["cpu"], r["child"]
        n = {v: len(walls[v]) for v in VARIANTS}
        base = statistics.fmean(walls["a"])
        a_cpu = cpu["a"] / n["a"]
        added = {v: [w - base for w in walls[v]] for v in VARIANTS}
        out_base = statistics.fmean(r["outside"]["a"])
        outside = {v: statistics.fmean(r["outside"][v]) - out_base for v in VARIANTS}
        telemetry = {
            v: (cpu[v] - r["model_cpu"][v]) / n[v] - (cpu["a"] - r["model_cpu"]["a"]) / n["a"] + child[v] / n[v]
            for v in VARIANTS
        }
        b_add = outside["b"]
        b_cpu = telemetry["b"]
        a_caller = r["caller"]["a"] / n["a"]
        b_caller = r["caller"]["b"] / n["b"] - a_caller
        for v in ("a", "b", "c", "p"):
            mean = statistics.fmean(added[v])
            p99 = float(np.percentile(added[v], 99))
            own = cpu[v] / n[v] - a_cpu
            kid = child[v] / n[v]
            wall_ratio = outside[v] / b_add if b_add > 0 else float("nan")
            cpu_ratio = telemetry[v] / b_cpu if b_cpu > 0 else float("nan")
            own_caller = r["caller"][v] / n[v] - a_caller
            caller_ratio = own_caller / b_caller if b_caller > 0 else float("nan")
            target = ""
            if v == "p":
                wall_ok = wall_ratio <= TARGET_WALL
                caller_ok = caller_ratio <= TARGET_WALL
                cpu_ok = cpu_ratio <= TARGET_HOT_CPU
                ok = ok and wall_ok and caller_ok and cpu_ok
                target = f"wall {verdict(wall_ok)}, caller {verdict(caller_ok)}, CPU {verdict(cpu_ok)}"
            lines.append(
                [
                    r["model"].split("_")[0],
                    r["setup"],
                    LABELS[v],
                    f"{statistics.fmean(walls[v]) / 1000:.2f}",
                    "" if v == "a" else f"{mean:.1f}",
                    "" if v == "a" else f"{p99:.1f}",
                    "" if v == "a" else f"{outside[v]:.1f}",
                    f"{wall_ratio:.3f}" if v in ("c", "p") else "",
                    "" if v == "a" else f"{own_caller:.1f}",
                    f"{caller_ratio:.3f}" if v in ("c", "p") else "",
                    "" if v == "a" else f"{own:.1f}",
                    f"{kid:.1f}" if v == "p" else "",
                    "" if v == "a" else f"{telemetry[v]:.1f}",
                    f"{cpu_ratio:.3f}" if v in ("c", "p") else "",
                    target,
                ]
            )
        if r["errors"]:
            ok = False
            print(f"CHECK FAILED ({r['model']}, {r['setup']}): {r['errors']} calls without {DETECTIONS} detections")
        for what, (got, want) in r.get("counts", {}).items():
            if got != want:
                ok = False
                print(f"CHECK FAILED ({r['model']}, {r['setup']}): {what} {got}, expected {want}")
        if r["recorder"]["dropped"] or r["recorder"]["restarts"]:
            ok = False
            print(f"CHECK FAILED ({r['model']}, {r['setup']}): recorder process {r['recorder']}")
    headers = [
        "detector",
        "set-up",
        "variant",
        "wall ms",
        "added µs mean",
        "added p99",
        "outside model µs",
        "/ naive",
        "caller CPU µs",
        "/ naive",
        "CPU here µs",
        "CPU recorder µs",
        "telemetry CPU µs",
        "/ naive",
        "targets",
    ]
    for line in table(headers, lines):
        print(line)
    print(
        f"Targets (recorder process): added wall outside the forward pass <= {TARGET_WALL} x naive's (aim"
        f" {AIM_WALL}), added CPU of all processes outside the forward pass <= {TARGET_HOT_CPU} x naive's."
        " 'outside model' is a call's wall time minus the forward pass's own (the synchronisation stays in), over"
        " the undecorated call's; 'telemetry CPU' is both processes' added CPU minus the forward pass's own: a"
        " detector's time varies by milliseconds between calls, which swamps 'added'. 'CPU here' is this"
        " process's CPU per image over the"
        " undecorated call's (a synchronising caller spins, so it carries the wall noise too); 'caller CPU' is the"
        " calling thread's CPU outside the forward pass and the synchronisation (the instrumentation's own share)."
    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_gpu", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--blocks", type=int, default=12, help="interleaved blocks of 25 calls per variant")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cpu: the same detectors on the CPU (a check of the script, and CPU tensors' figures)",
    )
    args = parser.parse_args(argv)
    try:
        torch: Any = importlib.import_module("torch")
        torchvision: Any = importlib.import_module("torchvision")
    except ImportError:
        print("bench_gpu: torch and torchvision are not installed here; run it where a GPU is")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it where there is one (or pass --device cpu)")
        return 0
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU tensors"
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {device_name},"
        f" {os.cpu_count()} CPUs, python {sys.version.split()[0]}",
        flush=True,
    )
    results = []
    failed = False
    for model_name in args.models:
        for setup in args.setups:
            started = time.perf_counter()
            try:
                results.append(run_one(model_name, setup, args.blocks, args.device))
            except Exception:  # noqa: BLE001 - report the others; this one's traceback is printed
                traceback.print_exc()
                failed = True
            print(f"  {model_name}, {setup}: {time.perf_counter() - started:.0f} s", flush=True)
    ok = report(results) and not failed
    print(f"overall: {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
