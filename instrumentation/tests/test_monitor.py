"""The decorator's behaviour, observed through the real SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from typing import Any

import numpy as np
import pytest
from opentelemetry.trace import StatusCode

import detwatch_instrumentation as dwi
from _telemetry import Telemetry
from detwatch_instrumentation import monitor_detections, prediction_context, semconv
from detwatch_instrumentation._recorder import RECORDER

IMAGE = np.zeros((480, 640, 3), dtype=np.uint8)  # width 640, height 480

DETECTIONS = [
    {"class": "car", "confidence": 0.91, "box": [0.0, 0.0, 64.0, 48.0]},  # area share 0.01, aspect 4/3
    {"class": "car", "confidence": 0.42, "box": [10.0, 10.0, 42.0, 74.0]},  # 32x64: 0.006667, aspect 0.5
    {"class": "person", "confidence": 0.77, "box": [100.0, 100.0, 132.0, 132.0]},  # 32x32
]


def by_attrs(points: list[Any], **attrs: str) -> list[Any]:
    """Points whose attributes include ``attrs`` (dots spelled as in the registry)."""
    wanted = {k: v for k, v in attrs.items()}
    return [p for p in points if all(p.attributes.get(k) == v for k, v in wanted.items())]


def only(points: list[Any]) -> Any:
    assert len(points) == 1, points
    return points[0]


CLS = semconv.ATTR_DETECTION_CLASS


def test_sync_call_returns_the_same_object_and_records_the_contract(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="vehicles", model_version="v2", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    assert predict(IMAGE) is DETECTIONS
    metrics = telemetry.metrics()

    for spec in semconv.INSTRUMENTS:
        if spec.emitted_by != "instrumentation" or spec.name in (
            semconv.BATCH_SIZE.name,
            semconv.INVALID_OUTPUTS.name,
            semconv.TELEMETRY_DROPPED.name,
        ):
            continue
        assert spec.name in metrics, spec.name
        assert metrics[spec.name].unit == spec.unit
    assert semconv.BATCH_SIZE.name not in metrics  # not a batch call
    assert semconv.INVALID_OUTPUTS.name not in metrics

    model = {semconv.ATTR_MODEL_ID: "vehicles", semconv.ATTR_MODEL_VERSION: "v2"}
    conf = telemetry.points(semconv.DETECTION_CONFIDENCE.name)
    car = only([p for p in conf if p.attributes.get(CLS) == "car"])
    assert dict(car.attributes) == {**model, CLS: "car"}
    assert car.count == 2
    assert car.sum == pytest.approx(0.91 + 0.42)
    assert list(car.explicit_bounds) == list(semconv.DETECTION_CONFIDENCE.bounds or ())
    person = only([p for p in conf if p.attributes.get(CLS) == "person"])
    assert person.count == 1

    counts = {p.attributes[CLS]: p.value for p in telemetry.points(semconv.DETECTIONS.name)}
    assert counts == {"car": 2, "person": 1}

    per_image = only(telemetry.points(semconv.IMAGE_DETECTIONS.name))
    assert (per_image.count, per_image.sum) == (1, 3)
    assert dict(per_image.attributes) == model

    areas = telemetry.points(semconv.DETECTION_BOX_AREA.name)
    car_area = only([p for p in areas if p.attributes.get(CLS) == "car"])
    assert car_area.sum == pytest.approx(64 * 48 / (640 * 480) + 32 * 64 / (640 * 480))
    aspect = only(telemetry.points(semconv.DETECTION_BOX_ASPECT_RATIO.name))
    assert aspect.sum == pytest.approx(64 / 48 + 32 / 64 + 1.0)
    assert aspect.min == pytest.approx(0.5)

    duration = only(telemetry.points(semconv.INFERENCE_DURATION.name))
    assert duration.count == 1
    assert 0 <= duration.sum < 1.0
    assert list(duration.explicit_bounds) == list(semconv.INFERENCE_DURATION.bounds or ())
    images = only(telemetry.points(semconv.IMAGES.name))
    assert images.value == 1


def test_every_histogram_uses_the_registry_bounds(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(images: list[Any]) -> list[list[dict[str, Any]]]:
        return [DETECTIONS for _ in images]

    predict([IMAGE, IMAGE])
    metrics = telemetry.metrics()
    for spec in semconv.INSTRUMENTS:
        if spec.kind != "histogram" or spec.emitted_by != "instrumentation":
            continue
        point: Any = metrics[spec.name].data.data_points[0]
        assert tuple(point.explicit_bounds) == spec.bounds, spec.name


def test_signature_name_and_docstring_are_kept() -> None:
    def predict(image: np.ndarray, threshold: float = 0.5, *, device: str = "cpu") -> list[Any]:
        """Run the detector."""
        return []

    wrapped = monitor_detections(model_id="m")(predict)
    assert wrapped.__name__ == "predict"
    assert wrapped.__doc__ == "Run the detector."
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert wrapped.__wrapped__ is predict  # type: ignore[attr-defined]


def test_inference_exception_propagates_unchanged(telemetry: Telemetry) -> None:
    error = RuntimeError("CUDA out of memory")

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[Any]:
        raise error

    with pytest.raises(RuntimeError) as caught:
        predict(IMAGE)
    assert caught.value is error

    span = only(telemetry.spans())
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[semconv.ATTR_ERROR_TYPE] == "RuntimeError"
    assert any(e.name == "exception" for e in span.events)

    duration = only(telemetry.points(semconv.INFERENCE_DURATION.name))
    assert duration.attributes[semconv.ATTR_ERROR_TYPE] == "RuntimeError"
    images = only(telemetry.points(semconv.IMAGES.name))
    assert images.attributes[semconv.ATTR_ERROR_TYPE] == "RuntimeError"
    assert telemetry.points(semconv.DETECTIONS.name) == []
    assert telemetry.logs() == []


def test_async_function_stays_async_and_is_recorded(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    async def predict(image: Any) -> list[dict[str, Any]]:
        await asyncio.sleep(0.01)
        return DETECTIONS

    assert inspect.iscoroutinefunction(predict)
    assert asyncio.run(predict(IMAGE)) is DETECTIONS
    duration = only(telemetry.points(semconv.INFERENCE_DURATION.name))
    assert duration.sum >= 0.01  # the await is inside the measured call
    assert {p.attributes[CLS]: p.value for p in telemetry.points(semconv.DETECTIONS.name)} == {"car": 2, "person": 1}
    assert len(telemetry.logs()) == 1


def test_async_exception_propagates_unchanged(telemetry: Telemetry) -> None:
    error = ValueError("bad tensor")

    @monitor_detections(model_id="m", **telemetry.providers)
    async def predict(image: Any) -> list[Any]:
        raise error

    with pytest.raises(ValueError) as caught:
        asyncio.run(predict(IMAGE))
    assert caught.value is error
    assert only(telemetry.points(semconv.IMAGES.name)).attributes[semconv.ATTR_ERROR_TYPE] == "ValueError"


def test_method_reads_the_image_after_self(telemetry: Telemetry) -> None:
    class Detector:
        @monitor_detections(model_id="m", **telemetry.providers)
        def predict(self, image: Any) -> list[dict[str, Any]]:
            return DETECTIONS[:1]

    Detector().predict(np.zeros((100, 200, 3), dtype=np.uint8))
    area = only(telemetry.points(semconv.DETECTION_BOX_AREA.name))
    assert area.sum == pytest.approx(64 * 48 / (200 * 100))
    body = only(telemetry.bodies())
    assert body["image"] == {"width": 200, "height": 100}


def test_batch_call_records_per_image_and_batch_size(telemetry: Telemetry) -> None:
    outputs = [DETECTIONS, [], DETECTIONS[:1]]

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(images: list[Any]) -> list[list[dict[str, Any]]]:
        return outputs

    assert predict([IMAGE, IMAGE, IMAGE]) is outputs
    batch = only(telemetry.points(semconv.BATCH_SIZE.name))
    assert (batch.count, batch.sum) == (1, 3)
    assert only(telemetry.points(semconv.IMAGES.name)).value == 3
    per_image = only(telemetry.points(semconv.IMAGE_DETECTIONS.name))
    assert (per_image.count, per_image.sum) == (3, 4)
    # The empty image lands in the le=0 bucket: the empty-image rate.
    assert per_image.bucket_counts[0] == 1
    assert only(telemetry.points(semconv.INFERENCE_DURATION.name)).count == 1
    ids = sorted(str(body["prediction_id"]) for body in telemetry.bodies())
    assert [i.rsplit("-", 1)[1] for i in ids] == ["0", "1", "2"]


def test_batch_with_mismatched_output_length_is_counted_invalid(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(images: list[Any]) -> list[list[dict[str, Any]]]:
        return [DETECTIONS]

    assert predict([IMAGE, IMAGE]) == [DETECTIONS]
    invalid = only(telemetry.points(semconv.INVALID_OUTPUTS.name))
    assert invalid.attributes[semconv.ATTR_REASON] == "batch_length_mismatch"
    assert invalid.value == 2
    assert telemetry.points(semconv.DETECTIONS.name) == []


def test_prediction_event_carries_detections_and_links_to_the_span(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="vehicles", model_version="v2", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    with prediction_context(image_key="cam7/000123.jpg", image_uri="file:///data/cam7/000123.jpg"):
        predict(IMAGE)
    span = only(telemetry.spans())
    assert span.name == "detect vehicles"
    record = only(telemetry.logs()).log_record
    assert record.event_name == semconv.EVENT_PREDICTION
    assert record.trace_id == span.context.trace_id
    assert record.span_id == span.context.span_id
    body = only(telemetry.bodies())
    trace_hex, span_hex = format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")
    assert body["prediction_id"] == f"{trace_hex}-{span_hex}-0"
    assert (body["trace_id"], body["span_id"]) == (trace_hex, span_hex)
    assert body["model_id"] == "vehicles"
    assert body["model_version"] == "v2"
    assert body["image"] == {
        "key": "cam7/000123.jpg",
        "uri": "file:///data/cam7/000123.jpg",
        "width": 640,
        "height": 480,
    }
    assert body["detections"] == [
        {"class": d["class"], "confidence": d["confidence"], "box": d["box"]} for d in DETECTIONS
    ]
    assert isinstance(body["latency_ms"], float)
    assert str(body["time"]).endswith("Z")
    assert "ab_variant" not in body


def test_image_path_input_becomes_key_and_file_uri(telemetry: Telemetry, tmp_path: Any) -> None:
    path = str(tmp_path / "frame.jpg")

    @monitor_detections(model_id="m", image_size=(640, 480), **telemetry.providers)
    def predict(image_path: str) -> list[dict[str, Any]]:
        return DETECTIONS[:1]

    predict(path)
    body = only(telemetry.bodies())
    assert body["image"] == {"key": path, "uri": "file://" + path, "width": 640, "height": 480}
    area = only(telemetry.points(semconv.DETECTION_BOX_AREA.name))
    assert area.sum == pytest.approx(0.01)


def test_image_keys_and_context_attributes_never_reach_metric_attributes(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", metric_attribute_allowlist=["site"], **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    with prediction_context(image_key="cam7/0001.jpg", attributes={"site": "north", "operator": "jane"}):
        predict(IMAGE)
    for point in telemetry.all_points():
        assert "cam7/0001.jpg" not in set(point.attributes.values())
        assert "operator" not in point.attributes
        assert point.attributes.get("site") == "north"
    body = only(telemetry.bodies())
    assert body["attributes"] == {"site": "north", "operator": "jane"}
    span = only(telemetry.spans())
    assert span.attributes is not None
    assert span.attributes["operator"] == "jane"


def test_classes_beyond_max_classes_fold_into_other(telemetry: Telemetry) -> None:
    classes = ["car", "bus", "truck", "bike"]

    @monitor_detections(model_id="m", max_classes=2, **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return [{"class": c, "confidence": 0.5, "box": [0, 0, 10, 10]} for c in classes]

    predict(IMAGE)
    counts = {p.attributes[CLS]: p.value for p in telemetry.points(semconv.DETECTIONS.name)}
    assert counts == {"car": 1, "bus": 1, semconv.OTHER_CLASS: 2}
    # The event is not a metric: it keeps the real classes.
    body = only(telemetry.bodies())
    assert [d["class"] for d in body["detections"]] == classes


def test_class_allowlist_keeps_only_listed_classes(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", class_allowlist=["person"], **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    predict(IMAGE)
    counts = {p.attributes[CLS]: p.value for p in telemetry.points(semconv.DETECTIONS.name)}
    assert counts == {"person": 1, semconv.OTHER_CLASS: 2}


def test_invalid_detections_are_counted_and_valid_ones_still_recorded(telemetry: Telemetry) -> None:
    output = [
        *DETECTIONS,
        {"class": "car", "confidence": math.nan, "box": [0, 0, 1, 1]},
        {"class": "car", "confidence": 1.5, "box": [0, 0, 1, 1]},
        {"class": "car", "confidence": 0.5, "box": [5, 5, 5, 9]},
    ]

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return output

    assert predict(IMAGE) is output
    reasons = {p.attributes[semconv.ATTR_REASON]: p.value for p in telemetry.points(semconv.INVALID_OUTPUTS.name)}
    assert reasons == {"confidence_not_finite": 1, "confidence_out_of_range": 1, "box_degenerate": 1}
    assert only(telemetry.points(semconv.IMAGE_DETECTIONS.name)).sum == 3


def test_unreadable_output_is_counted_and_never_raised(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> str:
        return "not detections"

    assert predict(IMAGE) == "not detections"
    invalid = only(telemetry.points(semconv.INVALID_OUTPUTS.name))
    assert invalid.attributes[semconv.ATTR_REASON] == "unrecognized_format"
    assert only(telemetry.points(semconv.IMAGES.name)).value == 1
    assert telemetry.points(semconv.IMAGE_DETECTIONS.name) == []
    assert telemetry.logs() == []


def test_failing_adapter_is_counted_and_never_raised(telemetry: Telemetry) -> None:
    def adapter(output: Any) -> Any:
        raise KeyError("boxes")

    @monitor_detections(model_id="m", adapter=adapter, **telemetry.providers)
    def predict(image: Any) -> dict[str, Any]:
        return {"weird": 1}

    assert predict(IMAGE) == {"weird": 1}
    assert only(telemetry.points(semconv.INVALID_OUTPUTS.name)).attributes[semconv.ATTR_REASON] == "adapter_error"


def test_broken_telemetry_pipeline_does_not_reach_inference(telemetry: Telemetry) -> None:
    class BrokenTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer exploded")

    class BrokenTracerProvider:
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            return BrokenTracer()

    calls = []

    @monitor_detections(
        model_id="m",
        tracer_provider=BrokenTracerProvider(),  # type: ignore[arg-type]
        meter_provider=telemetry.meter_provider,
        logger_provider=telemetry.logger_provider,
    )
    def predict(image: Any) -> list[Any]:
        calls.append(image)
        return DETECTIONS

    assert predict(IMAGE) is DETECTIONS
    assert len(calls) == 1  # the wrapped function ran exactly once


def test_no_sdk_means_no_recording_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # The global providers are the API's proxies in this test process.
    submitted: list[Any] = []

    def submit(item: Any) -> bool:
        submitted.append(item)
        return True

    monkeypatch.setattr(RECORDER, "submit", submit)

    @monitor_detections(model_id="m")
    def predict(image: Any) -> list[Any]:
        return DETECTIONS

    assert predict(IMAGE) is DETECTIONS
    assert submitted == []


def test_ab_variant_from_context_tags_metrics_span_and_event(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    with prediction_context(ab_variant="b"):
        predict(IMAGE)
    for point in telemetry.all_points():
        assert point.attributes[semconv.ATTR_AB_VARIANT] == "b"
    span = only(telemetry.spans())
    assert span.attributes is not None
    assert span.attributes[semconv.ATTR_AB_VARIANT] == "b"
    body = only(telemetry.bodies())
    assert body["ab_variant"] == "b"


def test_stage_records_duration_with_stage_attribute(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[Any]:
        with dwi.stage("preprocess"):
            pass
        with dwi.stage("inference"):
            pass
        return []

    predict(IMAGE)
    points = telemetry.points(semconv.INFERENCE_DURATION.name)
    stages = sorted(str(p.attributes.get(semconv.ATTR_STAGE, "")) for p in points)
    assert stages == ["", "inference", "preprocess"]


def test_full_queue_drops_telemetry_and_counts_it(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RECORDER, "max_pending", 0)

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[Any]:
        return DETECTIONS

    assert predict(IMAGE) is DETECTIONS
    assert predict(IMAGE) is DETECTIONS
    assert only(telemetry.points(semconv.TELEMETRY_DROPPED.name)).value == 2
    assert telemetry.points(semconv.DETECTIONS.name) == []
    assert len(telemetry.spans()) == 2  # spans are ended on the caller's thread, not dropped


def test_spans_created_by_the_model_nest_under_the_detect_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("model")

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[Any]:
        with tracer.start_as_current_span("backbone"):
            return []

    predict(IMAGE)
    spans = {s.name: s for s in telemetry.spans()}
    assert spans["backbone"].parent is not None
    assert spans["backbone"].parent.span_id == spans["detect m"].context.span_id


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"model_id": ""}, "model_id"),
        ({"model_id": "m", "box_format": "yxyx"}, "box_format"),
        ({"model_id": "m", "max_classes": 0}, "max_classes"),
        ({"model_id": "m", "batch": "sometimes"}, "batch"),
        ({"model_id": "m", "image_size": (0, 480)}, "image_size"),
        ({"model_id": "m", "image_arg": "frame"}, "image_arg"),
        ({"model_id": "m", "metric_attributes": {"objdet.model.id": "x"}}, "metric_attributes"),
        ({"model_id": "m", "metric_attribute_allowlist": ["objdet.image.key"]}, "metric_attribute_allowlist"),
        ({"model_id": "m", "adapter": 3}, "adapter"),
        ({"model_id": "m", "label_names": 7}, "label_names"),
    ],
)
def test_bad_decorator_arguments_fail_at_decoration_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    def predict(image: Any) -> list[Any]:
        return []

    with pytest.raises((ValueError, TypeError), match=argument):
        monitor_detections(**kwargs)(predict)


def test_explicit_batch_of_an_array_counts_each_leading_index(telemetry: Telemetry) -> None:
    frames = np.zeros((4, 120, 160, 3), dtype=np.uint8)

    @monitor_detections(model_id="m", batch=True, **telemetry.providers)
    def predict(images: np.ndarray) -> list[list[dict[str, Any]]]:
        return [DETECTIONS[:1] for _ in range(len(images))]

    predict(frames)
    assert only(telemetry.points(semconv.IMAGES.name)).value == 4
    assert only(telemetry.points(semconv.BATCH_SIZE.name)).sum == 4
    area = only(telemetry.points(semconv.DETECTION_BOX_AREA.name))
    assert area.sum == pytest.approx(4 * 64 * 48 / (160 * 120))


def test_single_image_list_input_with_batch_false_is_one_image(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", batch=False, image_size=(640, 480), **telemetry.providers)
    def predict(pixels: list[list[int]]) -> list[dict[str, Any]]:
        return DETECTIONS

    predict([[0, 0], [0, 0]])
    assert only(telemetry.points(semconv.IMAGES.name)).value == 1
    assert only(telemetry.points(semconv.IMAGE_DETECTIONS.name)).sum == 3


def test_concurrent_callers_lose_and_duplicate_nothing(telemetry: Telemetry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(predict, [IMAGE] * 400))
    assert all(r is DETECTIONS for r in results)
    assert only(telemetry.points(semconv.IMAGES.name)).value == 400
    counts = {p.attributes[CLS]: p.value for p in telemetry.points(semconv.DETECTIONS.name)}
    assert counts == {"car": 800, "person": 400}
    assert len({b["prediction_id"] for b in telemetry.bodies()}) == 400


def test_counters_reach_the_sdk_shortly_without_a_flush(telemetry: Telemetry) -> None:
    import time

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    predict(IMAGE)
    deadline = time.monotonic() + 5.0
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and semconv.DETECTIONS.name not in found:
        time.sleep(0.05)
        data = telemetry.reader.get_metrics_data()
        if data is not None:
            found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert semconv.DETECTIONS.name in found  # summed increments are added within COUNTER_FLUSH_S
    assert semconv.IMAGES.name in found


def test_a_batch_returned_as_a_generator_is_left_to_the_caller(telemetry: Telemetry) -> None:
    """The recording thread ran list() on the caller's generator: the caller got nothing (or a ValueError)."""

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(images: list[Any]) -> Any:
        return (DETECTIONS for _ in images)

    outputs = predict([IMAGE, IMAGE, IMAGE])
    assert RECORDER.flush()  # the recording thread has seen the call
    assert list(outputs) == [DETECTIONS] * 3
    invalid = only(telemetry.points(semconv.INVALID_OUTPUTS.name))
    assert invalid.attributes[semconv.ATTR_REASON] == "unrecognized_format" and invalid.value == 3
    assert telemetry.points(semconv.DETECTIONS.name) == []


def test_a_context_attribute_json_cannot_hold_is_written_as_text(telemetry: Telemetry) -> None:
    """An object in prediction_context's attributes made the encoder fail and the whole event was lost."""

    class Camera:
        def __str__(self) -> str:
            return "camera 7"

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    attributes: Any = {"camera": Camera(), "site": "north", "gains": [1, float("inf")], "n": 3}
    with prediction_context(attributes=attributes):
        predict(IMAGE)
    (body,) = telemetry.bodies()
    assert body["attributes"] == {"camera": "camera 7", "site": "north", "gains": [1, "inf"], "n": 3}


@pytest.mark.parametrize("size", [(math.inf, 480), (640, math.nan), (2.0**40, 480)])
def test_an_image_size_that_is_not_finite_is_refused_when_decorating(size: tuple[float, float]) -> None:
    """(inf, 480) was accepted, then int(inf) failed in every call's event."""
    with pytest.raises(ValueError, match=r"^image_size:"):
        monitor_detections(model_id="m", image_size=size)


def test_waiting_calls_keep_at_most_the_byte_budget_of_inputs_alive(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With recording stalled, 10,000 queued 640x480 frames held 9 GB: now the inputs' bytes are bounded too."""
    frame = np.zeros((480, 640, 3), dtype=np.uint8)  # 921,600 bytes
    monkeypatch.setattr(RECORDER, "max_pending_bytes", 2 * frame.nbytes)
    stalled, inside = threading.Event(), threading.Event()

    class Stall:
        def record(self) -> None:
            inside.set()
            stalled.wait(30)

    @monitor_detections(model_id="m", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    assert RECORDER.submit(Stall())
    assert inside.wait(10)
    try:
        for _ in range(5):
            predict(frame)  # the first two fit the budget; the other three are dropped and counted
    finally:
        stalled.set()
    dropped = only(telemetry.points(semconv.TELEMETRY_DROPPED.name))
    assert dropped.value == 3
    assert sum(p.value for p in telemetry.points(semconv.IMAGES.name)) == 2
    assert RECORDER._held_bytes == 0  # every recorded call released its input
    assert RECORDER.submit(Stall(), nbytes=10 * frame.nbytes)  # alone, any size is taken
    stalled.set()


def test_a_model_object_with_an_async_call_is_timed_over_its_await(telemetry: Telemetry) -> None:
    """An object with ``async def __call__`` got the sync wrapper: ~6 µs durations, failures never recorded."""

    class Model:
        async def __call__(self, image: Any, fail: bool = False) -> list[dict[str, Any]]:
            await asyncio.sleep(0.02)
            if fail:
                raise RuntimeError("model failed")
            return DETECTIONS

    predict = monitor_detections(model_id="m", **telemetry.providers)(Model())
    assert inspect.iscoroutinefunction(predict)
    assert asyncio.run(predict(IMAGE)) == DETECTIONS
    with pytest.raises(RuntimeError, match="model failed"):
        asyncio.run(predict(IMAGE, fail=True))
    points = telemetry.points(semconv.INFERENCE_DURATION.name)
    (ok,) = [p for p in points if semconv.ATTR_ERROR_TYPE not in p.attributes]
    assert ok.count == 1 and ok.sum >= 0.02
    failed = [p for p in points if p.attributes.get(semconv.ATTR_ERROR_TYPE) == "RuntimeError"]
    assert len(failed) == 1 and failed[0].count == 1


def test_a_generator_function_is_refused_when_decorating() -> None:
    def stream(images: Any) -> Any:
        yield from images

    with pytest.raises(TypeError, match="generator function"):
        monitor_detections(model_id="m")(stream)


def test_a_string_class_allowlist_is_refused_naming_the_argument() -> None:
    """class_allowlist="car" became the set {"c", "a", "r"}: every class folded into "other"."""
    with pytest.raises(TypeError, match=r"^class_allowlist:"):
        monitor_detections(model_id="m", class_allowlist="car")


def test_allow_listed_attribute_values_past_the_limit_fold_into_other(telemetry: Telemetry) -> None:
    """Only classes were capped: 2,000 camera ids in an allow-listed attribute made 2,000 series per instrument."""
    from detwatch_instrumentation._monitor import MAX_ATTRIBUTE_VALUES

    @monitor_detections(model_id="m", metric_attribute_allowlist=["camera"], **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    for i in range(MAX_ATTRIBUTE_VALUES + 50):
        attributes: Any = {"camera": f"cam-{i}", "zones": [1, 2]}  # a list: typed out, but Python lets it in
        with prediction_context(attributes=attributes):
            predict(IMAGE)
    cameras = {p.attributes["camera"] for p in telemetry.points(semconv.IMAGES.name)}
    assert len(cameras) == MAX_ATTRIBUTE_VALUES + 1 and semconv.OTHER_CLASS in cameras
    assert "cam-0" in cameras and f"cam-{MAX_ATTRIBUTE_VALUES}" not in cameras  # first seen keep their value
    assert sum(p.value for p in telemetry.points(semconv.IMAGES.name)) == MAX_ATTRIBUTE_VALUES + 50


def test_a_list_valued_allow_listed_attribute_is_recorded(telemetry: Telemetry) -> None:
    """A list value made the attribute set unhashable: the call's telemetry was lost."""

    @monitor_detections(model_id="m", metric_attribute_allowlist=["zones"], **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    zones: Any = {"zones": [1, 2]}  # typed out of AttributeValue, but Python lets it in
    with prediction_context(attributes=zones):
        predict(IMAGE)
    (point,) = telemetry.points(semconv.IMAGES.name)
    assert tuple(point.attributes["zones"]) == (1, 2) and point.value == 1
