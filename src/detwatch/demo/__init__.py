"""The demo: a real detector, decorated, on real images; prints what was emitted.

A Haar-cascade face detector (OpenCV's bundled model) runs on scikit-image's bundled
images: a mosaic of 100 faces, the same scene darkened, blurred and downscaled (the
degradations production cameras suffer), a mosaic without faces, and a few photos.
Two detector settings are compared through the A/B router. Everything runs locally:
the OpenTelemetry SDK records into memory, and the demo prints the per-image
results, the metrics of the telemetry contract, the Prometheus series a store would
show, and one prediction event. With ``--otlp URL`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``)
it also exports to a Collector. Then the improvement loop runs on an embedded
companion (:mod:`detwatch.demo.loop`): flagged items, feedback, a labelled
dataset version, a training job for a local trainer, the new model version.

Run it with ``./run demo`` (or ``python -m detwatch.demo``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import detwatch_instrumentation
from detwatch.demo import sample_detector as sd
from detwatch_instrumentation import ABRouter, monitor_detections, prediction_context, semconv

Image = NDArray[np.uint8]


def scenes() -> list[tuple[str, Image]]:
    """The demo's inputs, named: faces under degradations, then negatives and photos."""
    faces = sd.face_mosaic("faces")
    out = [
        ("faces/original", faces),
        ("faces/darkened-0.25", sd.darken(faces, 0.25)),
        ("faces/blurred-4", sd.blur(faces, 4.0)),
        ("faces/downscaled-0.5", sd.downscale(faces, 0.5)),
        ("nonfaces/original", sd.face_mosaic("nonfaces")),
    ]
    out += [(f"photos/{name}", image) for name, image in sd.sample_scenes().items()]
    return out


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            + "\n"
        )
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _describe_point(point: Any) -> str:
    if hasattr(point, "bucket_counts"):
        mean = point.sum / point.count if point.count else 0.0
        return f"count={point.count} mean={mean:.4g}"
    return f"value={point.value}"


def run(out: TextIO = sys.stdout, otlp_endpoint: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run the demo and print its report to ``out``; returns the collected figures."""
    resource = Resource.create({"service.name": "detwatch-demo", "service.version": "0.1.0"})
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    readers: list[MetricReader] = [reader]
    if otlp_endpoint:
        base = otlp_endpoint.rstrip("/")
        cumulative: dict[type, AggregationTemporality] = {
            Counter: AggregationTemporality.CUMULATIVE,
            Histogram: AggregationTemporality.CUMULATIVE,
        }
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{base}/v1/metrics", preferred_temporality=cumulative)
            )
        )
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    if otlp_endpoint:
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))

    def monitored(version: str, detector: sd.HaarFaceDetector) -> Callable[[Image], list[dict[str, object]]]:
        return monitor_detections(
            model_id="faces",
            model_version=version,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
        )(detector.__call__)

    v1 = monitored("haar-n3", sd.HaarFaceDetector(min_neighbors=3))
    v2 = monitored("haar-n5", sd.HaarFaceDetector(min_neighbors=5))
    router = ABRouter(v1, v2, traffic_split=0.5, salt="demo")

    inputs = scenes()[:limit] if limit else scenes()
    out.write(f"detwatch demo: OpenCV Haar face detector on {len(inputs)} bundled images, A/B split 50/50\n\n")
    rows = [["image", "arm", "size", "faces", "mean conf", "latency ms"]]
    per_image: dict[str, dict[str, Any]] = {}
    for key, image in inputs:
        started = time.perf_counter()
        with prediction_context(image_uri=f"skimage://{key}"):
            detections = router(image, key=key)
        latency = (time.perf_counter() - started) * 1000
        confs = [float(d["confidence"]) for d in detections]  # type: ignore[arg-type]
        mean = statistics.fmean(confs) if confs else float("nan")
        arm = router.route(key)
        per_image[key] = {"arm": arm, "faces": len(detections), "mean_confidence": mean}
        h, w = image.shape[:2]
        rows.append([key, arm, f"{w}x{h}", str(len(detections)), f"{mean:.3f}", f"{latency:.0f}"])
    _table(rows, out)

    detwatch_instrumentation.flush(30.0)
    data = reader.get_metrics_data()
    out.write("\nMetrics (OpenTelemetry name, unit -> Prometheus series; per attribute set)\n")
    metrics: dict[str, list[Any]] = {}
    if data is not None:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    metrics[metric.name] = list(metric.data.data_points)
    for spec in semconv.INSTRUMENTS:
        points = metrics.get(spec.name)
        if not points:
            continue
        series = semconv.prometheus_series(spec, "bucket" if spec.kind == "histogram" else "")
        out.write(f"  {spec.name} [{spec.unit}] -> {series}\n")
        for point in sorted(points, key=lambda p: sorted(p.attributes.items())):
            shown = {
                k.removeprefix("objdet."): v for k, v in point.attributes.items() if k not in (semconv.ATTR_MODEL_ID,)
            }
            out.write(f"      {json.dumps(shown, sort_keys=True)}  {_describe_point(point)}\n")

    finished = spans.get_finished_spans()
    events = logs.get_finished_logs()
    out.write(f"\nSpans: {len(finished)} x '{finished[0].name if finished else '-'}'")
    out.write(f"   Prediction events ({semconv.EVENT_PREDICTION}): {len(events)}\n")
    if events:
        body: dict[str, Any] = json.loads(str(events[0].log_record.body))
        event_detections: list[Any] = list(body.pop("detections", []))
        out.write("One prediction event body:\n")
        text = json.dumps(body, indent=2)
        lines = [json.dumps(d) for d in event_detections[:3]]
        if len(event_detections) > 3:
            lines.append(f'"... {len(event_detections) - 3} more"')
        out.write(text[:-2] + ',\n  "detections": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n")
    if otlp_endpoint:
        exported = tracer_provider.force_flush() and meter_provider.force_flush() and logger_provider.force_flush()
        out.write(f"\nOTLP/HTTP export to {otlp_endpoint}: {'done' if exported else 'FAILED (see log)'}\n")
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()
    return {"images": per_image, "spans": len(finished), "events": len(events), "metrics": sorted(metrics)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="detwatch-demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--otlp", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"), help="also export to this Collector"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--no-loop", action="store_true", help="skip the improvement loop (data engine to retraining)")
    args = parser.parse_args(argv)
    run(otlp_endpoint=args.otlp, limit=args.limit)
    if not args.no_loop:
        from detwatch.demo.loop import run_loop

        run_loop()
    return 0
