"""The prediction validator and the declared ``Prediction`` shape accept the same bodies.

Feedback, drift, A/B, alert, registry and review bodies are checked against their shape
by the server itself (:func:`detwatch.contract.shapes.conform.conform`, then the rules
a shape cannot say). Predictions are not: ingest decodes them with its own msgspec
structs, since checking a 20-detection event against the ``TypedDict`` shape costs
about 55 us against the decoder's 12 (measured side by side, one core), on the path
every event takes. So this test holds the two together, over every single-field change of a
valid event to values at and beyond its bounds, and random combinations of them:

- whatever the validator accepts, the shape accepts (the server never stores what its
  document refuses);
- whatever the shape accepts, the validator accepts too, except for the rules the
  shape's docstring says a schema cannot hold (box corner order, a date-time that is
  not RFC 3339 or does not exist, which the document says as a ``format``, a final
  newline that JSON Schema's ``$`` lets through), each named by its field.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from detwatch.contract.predictions import PredictionError, parse_prediction
from detwatch.contract.shapes import Prediction
from detwatch.contract.shapes.conform import conform

VALID: dict[str, Any] = {
    "prediction_id": "p-1",
    "time": "2025-06-01T12:00:00Z",
    "model_id": "cars",
    "model_version": "v2",
    "ab_variant": "a",
    "latency_ms": 12.5,
    "image": {"key": "a.jpg", "uri": "file:///images/a.jpg", "width": 640, "height": 480},
    "trace_id": "0" * 31 + "1",
    "span_id": "0" * 15 + "1",
    "attributes": {"camera": "gate-3"},
    "detections": [
        {"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]},
        {"class": "bus", "confidence": 0.0, "box": [0, 0, 1, 1]},
    ],
}

TEXT = ["x", "", " ", "a\x00b", "a\n", "\t", "é", "x" * 256, "x" * 257, 7, None, True, ["x"]]
NUMBER = [0, 0.0, 1, 1.0, -1, -0.0, 1e9, 1e9 + 1, 1e300, 0.5, "1", None, True, 2**31, 2**31 - 1]
BOX = [
    [0, 0, 1, 1],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
    [-1e7, -1e7, 1e7, 1e7],
    [0, 0, 1e7 + 1, 5],
    [0, 0, 1],
    [0, 0, 1, 1, 1],
    ["0", 0, 1, 1],
    None,
    "box",
]
TIMES = [
    "2025-06-01T12:00:00Z",
    "2025-02-30T12:00:00Z",
    "1969-12-31T23:59:59Z",
    "2261-12-31T00:00:00Z",
    "2262-01-01T00:00:00Z",
    "2025-06-01T12:00:00",
    "2025-06-01",
    "yesterday",
    "",
    None,
    5,
]
NANOS = [1, 0, -1, 2**63 - 1, 2**63, "1700000000000000000", "0", "9223372036854775808", "1e18", 1.5, None]
HEX32 = ["0" * 32, "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 32 + "\n", None]
HEX16 = ["0" * 16, "0" * 15, "F" * 16, "0" * 16 + "\n", None]

# (path, candidate values): a path is keys and list indexes from the event's root.
MUTATIONS: list[tuple[tuple[str | int, ...], list[Any]]] = [
    (("prediction_id",), TEXT),
    (("time",), TIMES),
    (("time_unix_nano",), NANOS),
    (("model_id",), TEXT),
    (("model_version",), TEXT),
    (("ab_variant",), ["a", "b", "", "c", None, 1]),
    (("latency_ms",), NUMBER),
    (("image",), [None, {}, "a.jpg", []]),
    (("image", "key"), TEXT),
    (("image", "uri"), TEXT),
    (("image", "width"), NUMBER),
    (("image", "height"), NUMBER),
    (("trace_id",), HEX32),
    (("span_id",), HEX16),
    (("attributes",), [None, {}, {"a": 1}, [], "x"]),
    (("detections",), [[], None, {}, [{}]]),
    (("detections", 0, "class"), TEXT),
    (("detections", 0, "confidence"), NUMBER),
    (("detections", 0, "box"), BOX),
    (("detections", 1, "box"), BOX),
]

# Rules a JSON Schema cannot say, which only the validator applies: (field, message) it may give alone.
VALIDATOR_ONLY = [
    (r"detections\[\d+\]\.box", r"x2 > x1|y2 > y1|x2|y2"),
    (r"time", r".*"),  # RFC 3339: the document's "format: date-time", which msgspec does not check
    (r"time_unix_nano", r".*"),
    (r"(prediction_id|model_id|model_version|image\.(key|uri)|detections\[\d+\]\.class)", r"visible|newline|control"),
    (r"(trace_id|span_id)", r"hex"),
]


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    node: Any = changed
    for step in path[:-1]:
        if isinstance(node, dict) and isinstance(step, str):
            child = node.get(step)
        else:
            child = node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node) else None
        if not isinstance(child, (dict, list)):
            return changed  # an earlier change removed the container
        node = child
    if isinstance(node, dict):
        node[path[-1]] = value
    return changed


def _bodies() -> Iterator[dict[str, Any]]:
    for path, values in MUTATIONS:
        for value in values:
            yield _set(VALID, path, value)
    draw = random.Random(20261205)
    for _ in range(600):
        body = copy.deepcopy(VALID)
        for path, values in draw.sample(MUTATIONS, 3):
            body = _set(body, path, draw.choice(values))
        yield body


def _validator(body: dict[str, Any]) -> PredictionError | None:
    try:
        parse_prediction(body)
    except PredictionError as exc:
        return exc
    return None


def _shape(body: dict[str, Any]) -> PredictionError | None:
    try:
        conform(body, Prediction)
    except PredictionError as exc:
        return exc
    if body.get("time") is None and body.get("time_unix_nano") is None:  # the shape's CROSS_FIELD rule
        return PredictionError("time", "time or time_unix_nano is required")
    return None


def test_the_validator_accepts_only_what_the_shape_accepts_and_refuses_only_what_a_schema_cannot_say() -> None:
    checked = accepted = 0
    for body in _bodies():
        by_validator, by_shape = _validator(body), _shape(body)
        checked += 1
        if by_validator is None:
            accepted += 1
            assert by_shape is None, f"accepted at ingest, refused by the document ({by_shape}): {body}"
        elif by_shape is None:
            assert any(
                re.fullmatch(field, by_validator.field) and re.search(message, by_validator.message)
                for field, message in VALIDATOR_ONLY
            ), f"refused at ingest only ({by_validator}), not a rule a schema cannot say: {body}"
    assert checked > 800 and 0.05 < accepted / checked < 0.95  # both outcomes well represented


@pytest.mark.parametrize("alias", [{"label": "car", "score": 0.9, "bbox": [0, 0, 1, 1]}])
def test_the_aliases_the_shape_documents_are_accepted(alias: dict[str, Any]) -> None:
    body = {**VALID, "detections": [alias]}
    assert parse_prediction(body).detections[0].class_name == "car"
