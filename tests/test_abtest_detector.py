"""A real A/B test: the demo's OpenCV detector against a degraded copy of itself.

Arm A runs the Haar face detector on face tiles as they are; arm B runs the same
detector on the tiles out of focus (Gaussian blur, sigma 3 px: a worse lens, or a
preprocessing change that softens the input), which lowers the confidence of the
faces it finds from about 0.86 to about 0.67. Traffic goes
through the real router, the real decorator, the SDK's OTLP log exporter and the
companion under gunicorn; the verdict must name A, at any-time validity.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from scipy import stats

import detwatch
import detwatch_instrumentation
from _service import Companion
from detwatch.demo.sample_detector import HaarFaceDetector, blur, face_mosaic
from detwatch_instrumentation import ABRouter, monitor_detections

CELL = 86  # face_mosaic's default tile (80 px) plus its 3 px gap on each side
CALLS_PER_TILE = 3


@pytest.fixture(scope="module")
def companion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    with Companion(tmp_path_factory.mktemp("ab-detector")) as service:
        yield service


def test_a_degraded_challenger_is_detected_as_worse(companion: Companion) -> None:
    client = detwatch.Client(base_url=companion.url)
    client.register_model(model_id="faces", version="v1")
    client.register_model(model_id="faces", version="v2-soft")
    ab_test = client.create_ab_test(
        name="soft focus",
        model_a_id="faces",
        model_b_id="faces",
        config={
            "traffic_split": 0.5,
            "metrics": ["confidence", "latency"],
            "duration_days": 7,
            "min_samples": 50,
            # The smallest change worth acting on for this comparison: it scales the
            # sequential test (the default, 0.02, suits production volumes).
            "min_effect": {"confidence": 0.1},
            "model_a_version": "v1",
            "model_b_version": "v2-soft",
        },
    )

    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{companion.url}/v1/logs"))
    )
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    telemetry: dict[str, Any] = {"tracer_provider": tracer_provider, "logger_provider": logger_provider}
    detector = HaarFaceDetector()
    seen: dict[str, list[float]] = {"a": [], "b": []}

    @monitor_detections(model_id="faces", model_version="v1", **telemetry)
    def production(image: np.ndarray) -> list[dict[str, object]]:
        out = detector(image)
        seen["a"] += [float(cast(float, d["confidence"])) for d in out]
        return out

    @monitor_detections(model_id="faces", model_version="v2-soft", **telemetry)
    def challenger(image: np.ndarray) -> list[dict[str, object]]:
        out = detector(blur(image, 3.0))
        seen["b"] += [float(cast(float, d["confidence"])) for d in out]
        return out

    router = ABRouter(production, challenger, traffic_split=0.5, salt=ab_test["salt"])
    mosaic = face_mosaic("faces")
    tiles = [mosaic[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] for r in range(10) for c in range(10)]
    for repeat in range(CALLS_PER_TILE):
        for index, tile in enumerate(tiles):
            router(tile, key=f"gate/{repeat}/{index:03d}.png")
    assert detwatch_instrumentation.flush(10)
    assert logger_provider.force_flush(10_000)
    logger_provider.shutdown()

    results = client.get_ab_test_results(ab_test["id"])
    assert results["model_a"]["avg_confidence"] == pytest.approx(np.mean(seen["a"]))
    assert results["model_b"]["avg_confidence"] == pytest.approx(np.mean(seen["b"]))
    assert results["model_a"]["images"] + results["model_b"]["images"] == CALLS_PER_TILE * len(tiles)
    # What the fixed-horizon test says on the raw confidences, and the sequential verdict.
    assert stats.ttest_ind(seen["b"], seen["a"], equal_var=False).pvalue < 0.001
    assert results["verdict"] == "a_better", results["verdict_reason"]
    assert results["p_value"] is not None and results["p_value"] < 0.05
    assert results["comparisons"]["confidence"]["confidence_sequence"][1] < 0
    assert results["sample_ratio"]["mismatch"] is False
