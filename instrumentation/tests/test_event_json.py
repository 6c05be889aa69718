"""The prediction event's body is the same JSON value whichever encoder is installed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from _telemetry import Telemetry
from detwatch_instrumentation import _json, monitor_detections, prediction_context

BODY: dict[str, Any] = {
    "prediction_id": "a-b-0",
    "model_id": "véhicules",  # non-ASCII stays UTF-8 text, not \\u escapes
    "latency_ms": 3.141592653589793,
    "attributes": {"camera": "gate 7", "retries": 2, "ok": True, "ids": (1, 2, 3)},
    "detections": [
        {"class": "car", "confidence": 0.1 + 0.2, "box": (367.39703171300147, 31.59987747664371, 442.98, 75.3)},
        {"class": 'say "hi"\\', "confidence": 1e-7, "box": (0.0, 0.0, 1.0, 1.0)},
    ],
}


def _as_stdlib_json(value: Any) -> Any:
    # json.loads of the standard library's own encoding: tuples become lists.
    return json.loads(json.dumps(value))


def test_orjson_is_the_encoder_when_installed() -> None:
    # The test environment installs detwatch, which depends on orjson.
    assert _json.HAVE_ORJSON
    assert _json.dumps is not _json.stdlib_dumps


@pytest.mark.parametrize("encode", [_json.dumps, _json.stdlib_dumps], ids=["default", "stdlib"])
def test_body_encodes_to_the_same_value_with_shortest_round_trip_floats(encode: Any) -> None:
    text = encode(BODY)
    assert isinstance(text, str)
    assert "véhicules" in text
    decoded = json.loads(text)
    assert decoded == _as_stdlib_json(BODY)
    # Floats survive exactly (shortest repr round-trips), not rounded to a precision.
    assert decoded["detections"][0]["confidence"] == 0.1 + 0.2
    assert decoded["detections"][0]["box"][0] == 367.39703171300147


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    body = {"attributes": {"big": 2**70}}
    assert json.loads(_json.dumps(body)) == body


def test_events_decode_identically_with_the_standard_library_encoder(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detwatch_instrumentation import _monitor

    detections = [
        {"class": c["class"], "confidence": c["confidence"], "box": list(c["box"])} for c in BODY["detections"]
    ]

    @monitor_detections(model_id="m", image_size=(640, 480), **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return detections

    with prediction_context(image_key="k1"):
        predict(None)
    monkeypatch.setattr(_monitor, "dumps", _json.stdlib_dumps)
    with prediction_context(image_key="k1"):
        predict(None)
    first, second = telemetry.bodies()
    assert first["detections"] == second["detections"] == detections
    assert first["image"] == second["image"]
