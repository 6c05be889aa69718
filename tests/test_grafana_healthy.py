"""Every dashboard panel shows a number for a healthy model: no errors, no unreadable outputs.

The error-rate panels divided a failure count whose series does not exist until the
first failure, and the unreadable-outputs panel summed one, so a healthy system showed
"No data" exactly where the answer is 0. A real VictoriaMetrics is filled over
OTLP/HTTP by the real decorator (two A/B arms, every call returning a readable output)
and, for the companion's instruments, by the SDK with the registry's names (a system
in use: some feedback, flagged images, a drift run). Then every query of every
committed dashboard runs with Grafana's variables filled in, as
``test_grafana_queries.py`` runs them on a stream with failures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from _components import VictoriaMetrics
from _stream import cumulative_provider, export
from detwatch_instrumentation import ABRouter, monitor_detections, semconv
from test_grafana_queries import IMAGE_SIZE, MODEL, TARGETS, VERSION, with_variables

# The panels whose answer for a healthy model is 0 (per model, version or arm), and the
# label the zero carries as "none" where the panel splits by one.
ZERO_PANELS = {
    ("overview", "Errors", "A"): None,
    ("overview", "Errors", "B"): "error_type",
    ("overview", "Unreadable outputs", "A"): "objdet_reason",
    ("ab", "Error rate by arm", "A"): None,
}
# The panels that mark what is wrong, empty while nothing is: the untrusted quality estimates.
EMPTY_PANELS = {("quality", "Estimated precision (label-free)", "D")}


def fill_healthy(store: VictoriaMetrics) -> Any:
    provider = cumulative_provider(store.otlp_metrics_url, "detwatch-healthy")
    image = np.zeros((*IMAGE_SIZE, 3), dtype=np.uint8)

    def model(arm: str) -> Callable[..., Any]:
        @monitor_detections(model_id=MODEL, model_version=VERSION[arm], meter_provider=provider)
        def predict(frame: Any, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return output

        return predict

    router = ABRouter(model("a"), model("b"), traffic_split=0.5, salt="healthy")
    meter = provider.get_meter("detwatch-companion-standin")
    feedback = meter.create_counter(semconv.FEEDBACK.name, unit=semconv.FEEDBACK.unit)
    flagged = meter.create_counter(semconv.REVIEW_FLAGGED.name, unit=semconv.REVIEW_FLAGGED.unit)
    drift = meter.create_gauge(semconv.DRIFT_SCORE.name, unit=semconv.DRIFT_SCORE.unit)
    quality = {
        spec: meter.create_gauge(spec.name, unit=spec.unit)
        for spec in (semconv.QUALITY_PRECISION, semconv.QUALITY_PRECISION_LOW, semconv.QUALITY_PRECISION_HIGH,
                     semconv.QUALITY_TRUSTED)
    }  # fmt: skip

    def call(i: int) -> None:
        classes = [] if i % 7 == 2 else ["car", "person"] if i < 20 else ["car" if i % 3 else "person"]
        output = [
            {"class": cls, "confidence": 0.3 + (i % 13) / 20, "box": [5.0, 5.0, 40.0 + i, 60.0]} for cls in classes
        ]
        router(image, output, key=f"img-{i}")

    def companion() -> None:
        for arm in VERSION:
            version = VERSION[arm]
            attrs = {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_MODEL_VERSION: version, semconv.ATTR_AB_VARIANT: arm}
            feedback.add(1, {**attrs, semconv.ATTR_FEEDBACK_TYPE: "correct"})
        flagged.add(1, {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_SAMPLING_STRATEGY: "random_sample"})
        drift.set(0.1, {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_DRIFT_KIND: "class",
                        semconv.ATTR_DRIFT_METHOD: "jensen_shannon"})  # fmt: skip
        for spec, gauge in quality.items():
            value = 1.0 if spec is semconv.QUALITY_TRUSTED else 0.9
            gauge.set(value, {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_DETECTION_CLASS: semconv.ALL_CLASSES})

    # Two exports with traffic between them: the rate panels need two samples (see _stream).
    for i in range(20):
        call(i)
    companion()
    export(provider)
    for i in range(20, 200):
        call(i)
    companion()
    export(provider)
    return provider


@pytest.fixture(scope="module")
def healthy() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as store:
        provider = fill_healthy(store)
        store.flush()
        try:
            yield store
        finally:
            provider.shutdown()


def test_the_zero_panels_are_the_dashboards_error_and_unreadable_panels() -> None:
    assert set(ZERO_PANELS) | EMPTY_PANELS <= {(board, title, ref) for board, title, ref, _ in TARGETS}


@pytest.mark.parametrize(("board", "title", "ref_id", "expr"), TARGETS, ids=[f"{b}:{t}:{r}" for b, t, r, _ in TARGETS])
def test_every_panel_of_a_healthy_model_shows_a_number(
    healthy: VictoriaMetrics, board: str, title: str, ref_id: str, expr: str
) -> None:
    result = healthy.query(with_variables(expr))
    if (board, title, ref_id) in EMPTY_PANELS:
        assert result == [], (title, result)
        return
    assert result, f"{board}/{title}/{ref_id}: no data for a model with traffic: {expr}"
    values = [float(series["value"][1]) for series in result]
    assert all(math.isfinite(v) for v in values), (title, result)
    if (board, title, ref_id) in ZERO_PANELS:
        assert values == [0.0] * len(values), (title, result)
        label = ZERO_PANELS[(board, title, ref_id)]
        if label is not None:
            assert {series["metric"].get(label) for series in result} == {"none"}, result
