"""Prediction events: the public JSON shape, validated with errors that name the field."""

from __future__ import annotations

import calendar
import copy
from typing import Any

import pytest

from detwatch.predictions import PredictionError, parse_prediction

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


@pytest.mark.parametrize(
    ("change", "field"),
    [
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
        ({"image": {"width": 0}}, "image.width"),
        ({"image": "cam7"}, "image"),
        ({"trace_id": "XYZ"}, "trace_id"),
        ({"span_id": "123"}, "span_id"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    event = {**copy.deepcopy(EXAMPLE), **change}
    event = {k: v for k, v in event.items() if v is not None}
    with pytest.raises(PredictionError) as caught:
        parse_prediction(event)
    assert caught.value.field == field


def test_non_objects_are_refused() -> None:
    with pytest.raises(PredictionError, match="prediction"):
        parse_prediction(["not", "an", "object"])
