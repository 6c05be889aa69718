"""Prediction events: the public JSON shape, validated with errors that name the field."""

from __future__ import annotations

import calendar
import copy
import json
from typing import Any

import pytest

from detwatch.contract import predictions
from detwatch.contract.predictions import Prediction, PredictionError, parse_prediction, parse_prediction_json

EXAMPLE: dict[str, Any] = {
    "prediction_id": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
    "time": "2024-02-01T12:00:00.123Z",
    "model_id": "vehicles",
    "model_version": "v2",
    "ab_variant": "b",
    "latency_ms": 12.4,
    "image": {"key": "cam7/000123.jpg", "uri": "file:///data/cam7/000123.jpg", "width": 640, "height": 480},
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "detections": [{"class": "car", "confidence": 0.91, "box": [12.0, 40.5, 220.0, 180.0]}],
}


def test_the_design_example_parses_and_round_trips() -> None:
    prediction = parse_prediction(EXAMPLE)
    expected_ns = calendar.timegm((2024, 2, 1, 12, 0, 0)) * 1_000_000_000 + 123_000_000
    assert prediction.time_unix_nano == expected_ns
    assert prediction.image.width == 640
    assert prediction.detections[0].box == (12.0, 40.5, 220.0, 180.0)
    assert prediction.to_json() == EXAMPLE
    assert parse_prediction(prediction.to_json()) == prediction


def test_only_model_time_and_detections_are_required() -> None:
    prediction = parse_prediction({"model_id": "m", "time": "2024-02-01T12:00:00+01:00", "detections": []})
    assert prediction.time_unix_nano == calendar.timegm((2024, 2, 1, 11, 0, 0)) * 1_000_000_000
    assert prediction.model_version == ""
    assert len(prediction.prediction_id) == 32


def test_missing_prediction_id_comes_from_trace_span_and_batch_index() -> None:
    event = {k: v for k, v in EXAMPLE.items() if k != "prediction_id"}
    assert parse_prediction(event, index=3).prediction_id == "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-3"


def test_content_derived_ids_recognise_a_resent_event_and_separate_different_ones() -> None:
    event = {"model_id": "m", "time": "2024-02-01T12:00:00Z", "image": {"key": "a.jpg"}, "detections": []}
    other = {**event, "image": {"key": "b.jpg"}}
    assert parse_prediction(event).prediction_id == parse_prediction(copy.deepcopy(event)).prediction_id
    assert parse_prediction(event).prediction_id != parse_prediction(other).prediction_id


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"model_id": None}, "model_id"),
    ({"model_id": ""}, "model_id"),
    ({"time": None}, "time"),
    ({"time": "2024-02-01 noon"}, "time"),
    ({"time": "2024-02-01T12:00:00"}, "time"),  # no time zone
    ({"detections": None}, "detections"),
    ({"detections": [{"class": "car", "confidence": 1.5, "box": [0, 0, 1, 1]}]}, "detections[0].confidence"),
    ({"detections": [{"class": "car", "confidence": "high", "box": [0, 0, 1, 1]}]}, "detections[0].confidence"),
    ({"detections": [{"class": "", "confidence": 0.5, "box": [0, 0, 1, 1]}]}, "detections[0].class"),
    ({"detections": [{"class": "car", "confidence": 0.5, "box": [0, 0, 1]}]}, "detections[0].box"),
    ({"detections": [{"class": "car", "confidence": 0.5, "box": [5, 0, 1, 1]}]}, "detections[0].box"),
    ({"ab_variant": "c"}, "ab_variant"),
    ({"latency_ms": -1}, "latency_ms"),
    ({"latency_ms": 1e300}, "latency_ms"),  # its square would overflow the per-hour sums
    ({"detections": [{"class": "car", "confidence": 0.5, "box": [0.0, 0.0, 1e300, 1.0]}]}, "detections[0].box"),
    ({"detections": [{"class": "car", "confidence": 0.5, "box": [-1e300, 0, 1, 1]}]}, "detections[0].box"),
    ({"image": {"width": 0}}, "image.width"),
    ({"image": "cam7"}, "image"),
    ({"trace_id": "XYZ"}, "trace_id"),
    ({"span_id": "123"}, "span_id"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    event = {**copy.deepcopy(EXAMPLE), **change}
    event = {k: v for k, v in event.items() if v is not None}
    with pytest.raises(PredictionError) as caught:
        parse_prediction(event)
    assert caught.value.field == field


def test_non_objects_are_refused() -> None:
    with pytest.raises(PredictionError, match="prediction"):
        parse_prediction(["not", "an", "object"])


# Variants the fast path must treat exactly as the checked path does: accepted the same, or refused
# naming the same field (it hands anything unusual to the checked path).
VARIANTS: list[dict[str, Any]] = [
    {},
    {"prediction_id": None},
    {"prediction_id": None, "trace_id": None, "span_id": None},
    {"model_version": None, "ab_variant": None, "latency_ms": None, "image": None, "attributes": None},
    {"latency_ms": 3, "image": {"width": 640.0, "height": 480}},  # integral floats and ints
    {"detections": [{"label": "car", "score": 0.5, "bbox": [1, 2, 3, 4]}]},  # aliases
    {"detections": [{"class": "car", "label": "bus", "confidence": 1, "box": [0, 0, 1, 1]}]},
    {"detections": [{"class": "car", "confidence": True, "box": [0, 0, 1, 1]}]},
    {"detections": [{"class": "car", "confidence": 0.5, "box": [0, 0, 1e7, 1e7]}]},
    {"time": None, "time_unix_nano": 1_706_745_600_000_000_000},
    {"time": None, "time_unix_nano": "1706745600000000000"},  # OTLP/JSON writes 64-bit integers as strings
    {"time": "2024-02-01T12:00:00.123z"},
    {"time": "2024-02-01T12:00:00.123+01:00", "time_unix_nano": -5},
    {"attributes": {"camera": "cam7", "n": 2**70, "nested": [[{"a": None}]]}},
    {"attributes": {"deep": json.loads("[" * 70 + "]" * 70)}},
    {"attributes": {"bad": "\udc00"}},
    {"trace_id": "0af7651916cd43dd8448eb211c80319C"},
    {"ab_variant": ""},
    {"image": {"key": ""}},
    {"image": {"width": True}},
    {"model_id": "x" * 257},
    {"image": {"uri": "u" * 1000}},
    *[change for change, _ in INVALID],
]


def _outcome(parse: Any) -> Prediction | str:
    try:
        result: Prediction = parse()
    except PredictionError as exc:
        return exc.field
    return result


@pytest.mark.parametrize("change", VARIANTS)
def test_the_fast_path_agrees_with_the_checked_path(change: dict[str, Any]) -> None:
    event = {k: v for k, v in {**copy.deepcopy(EXAMPLE), **change}.items() if k not in change or v is not None}
    event |= {k: None for k, v in change.items() if v is None and k in ("prediction_id", "trace_id", "span_id")}
    text = json.dumps(event)

    def checked() -> Prediction:  # the checked path alone: load_json, then parse_prediction
        try:
            obj = predictions.load_json(text)
        except ValueError as exc:
            raise PredictionError("body", str(exc)) from None
        return parse_prediction(obj, index=2)

    assert _outcome(lambda: parse_prediction_json(text, index=2)) == _outcome(checked)


def test_the_decorators_event_takes_the_fast_path() -> None:
    assert predictions._fast(json.dumps(EXAMPLE), 0, None, None, 0) == parse_prediction(EXAMPLE)


@pytest.mark.parametrize("present", [True, False])
def test_a_records_ids_and_time_fill_only_absent_fields(present: bool) -> None:
    trace, span, stamp = "1" * 32, "2" * 16, 1_706_745_600_000_000_000
    body = {"model_id": "m", "detections": []}
    if present:
        body |= {"time": "2024-02-01T12:00:00Z", "trace_id": "3" * 32, "span_id": "4" * 16}
    parsed = parse_prediction_json(json.dumps(body), trace_id=trace, span_id=span, time_unix_nano=stamp)
    expected = (body["trace_id"], body["span_id"]) if present else (trace, span)
    assert (parsed.trace_id, parsed.span_id) == expected
    assert parsed.time_unix_nano == (1_706_788_800_000_000_000 if present else stamp)


def test_a_records_time_beyond_64_signed_bits_is_refused_as_the_body_time() -> None:
    with pytest.raises(PredictionError) as caught:
        parse_prediction_json('{"model_id": "m", "detections": []}', time_unix_nano=2**64 - 1)
    assert caught.value.field == "time_unix_nano"


def test_a_body_that_is_not_a_json_object_is_named() -> None:
    for text in ("not json", "[1, 2]", '"\\udc00"'):
        with pytest.raises(PredictionError) as caught:
            parse_prediction_json(text)
        assert caught.value.field == "body"
