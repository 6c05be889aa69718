"""The ``/v1`` contract is declared once: the document's schemas and the answers are the shapes.

Three checks: every schema the OpenAPI document holds is generated from a shape of
:mod:`detwatch.contract.shapes` (no hand-written schema left), every JSON body a route
takes or answers names one of them (except the bodies of other formats: OTLP, the
COCO export), and what the routes answer converts to its declared shape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.abtest.config import HIGHER_IS_BETTER, METRICS
from detwatch.api.openapi import openapi_document
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.contract import shapes
from detwatch.contract.feedback import MAX_TEXT
from detwatch.contract.shapes import REF_PREFIX, schema_components
from detwatch.contract.shapes.abtests import DIRECTED_METRICS
from detwatch.contract.shapes.review import MAX_CLAIM

FOREIGN_BODIES = {
    ("/v1/logs", "post", "request"),  # OTLP's ExportLogsServiceRequest (its own specification)
    ("/v1/logs", "post", "200"),
    ("/v1/datasets/{dataset_id}/versions/{version_id}/export", "get", "200"),  # COCO JSON or a YOLO zip
    ("/v1/training-jobs/{job_id}/dataset/export", "get", "200"),
}
"""JSON bodies that are other formats' documents, not ours."""


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for child in node.values():
            yield from _refs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _refs(child)


def _json_bodies(document: dict[str, Any]) -> Iterator[tuple[tuple[str, str, str], dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            request = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if request is not None:
                yield (path, method, "request"), request["schema"]
            for status, answer in operation["responses"].items():
                content = answer.get("content", {}).get("application/json")
                if content is not None:
                    yield (path, method, status), content["schema"]


def _names_shapes(schema: dict[str, Any]) -> bool:
    """A ``$ref`` to a shape, or a choice between such references."""
    if set(schema) == {"$ref"}:
        return True
    return set(schema) == {"anyOf"} and all(set(s) == {"$ref"} for s in schema["anyOf"])


def test_every_schema_of_the_document_is_generated_from_a_shape() -> None:
    document = openapi_document()
    generated = schema_components()
    assert document["components"]["schemas"].keys() == generated.keys()
    for ref in _refs(document):
        assert ref.startswith(REF_PREFIX) and ref.removeprefix(REF_PREFIX) in generated, ref
    shape_names = {shape.__name__ for shape in shapes.SHAPES}
    assert shape_names <= generated.keys()


def test_every_json_body_of_a_route_names_a_shape() -> None:
    bodies = dict(_json_bodies(openapi_document()))
    for where, schema in bodies.items():
        if where in FOREIGN_BODIES:
            assert "$ref" not in str(schema), where
            continue
        assert _names_shapes(schema), f"{where}: an inline schema {schema}"
    assert bodies.keys() >= FOREIGN_BODIES


def test_a_rule_across_fields_is_in_the_generated_schema() -> None:
    schemas = schema_components()
    assert schemas["Error"]["additionalProperties"] is False
    assert [branch["required"] for branch in schemas["Prediction"]["anyOf"]] == [["time"], ["time_unix_nano"]]
    assert schemas["DriftRequest"]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["Prediction"]  # unknown fields of an event are ignored


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Settings(data_dir=tmp_path))


def _as(shape: Any, body: Any) -> None:
    """``body`` is a value of ``shape``: required keys there, types and bounds kept."""
    msgspec.convert(body, shape)


def test_the_answers_of_the_registry_and_feedback_are_their_shapes(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    model = client.post("/v1/models", json={"model_id": "vehicles", "version": "v1"})
    _as(shapes.Model, model.get_json())
    _as(shapes.ModelList, client.get("/v1/models").get_json())
    now = time.time_ns()
    event = {"model_id": "vehicles", "time_unix_nano": now, "prediction_id": "p-1",
             "detections": [{"class": "car", "confidence": 0.9, "box": [1, 1, 5, 5]}]}  # fmt: skip
    _as(shapes.PredictionResult, client.post("/v1/predictions", json={"predictions": [event, {}]}).get_json())
    feedback = client.post("/v1/feedback", json={"type": "wrong_label", "prediction_id": "p-1", "corrected_class": "x"})
    assert feedback.status_code == 201
    _as(shapes.FeedbackRecord, feedback.get_json())
    batch = client.post("/v1/feedback", json={"feedback": [{"type": "correct", "prediction_id": "p-1"}, {}]})
    _as(shapes.FeedbackBatchResult, batch.get_json())
    dataset = client.post("/v1/datasets", json={"name": "cars"}).get_json()
    _as(shapes.Dataset, dataset)
    version = client.post(f"/v1/datasets/{dataset['id']}/versions", json={"name": "v2"}).get_json()
    _as(shapes.DatasetVersion, version)
    _as(shapes.Status, client.get("/v1/status").get_json())
    error = client.post("/v1/models", json={"model_id": " "})
    assert error.status_code == 400
    _as(shapes.Error, error.get_json())


def test_the_answers_of_ab_tests_and_drift_are_their_shapes(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    for model_id in ("a", "b"):
        client.post("/v1/models", json={"model_id": model_id})
    test = client.post("/v1/ab-tests", json={"name": "t", "model_a_id": "a", "model_b_id": "b"})
    assert test.status_code == 201, test.get_json()
    _as(shapes.ABTest, test.get_json())
    _as(shapes.ABTestList, client.get("/v1/ab-tests").get_json())
    _as(shapes.ABTestResults, client.get(f"/v1/ab-tests/{test.get_json()['id']}/results").get_json())
    report = client.post("/v1/models/a/drift", json={"reference_period": "previous 7d", "current_period": "last 7d"})
    assert report.status_code == 200, report.get_json()
    _as(shapes.DriftReport, report.get_json())


def test_a_body_outside_its_request_shape_is_a_400_naming_the_field(app: Flask) -> None:
    client: FlaskClient = app.test_client()
    dataset = client.post("/v1/datasets", json={"name": "cars"}).get_json()
    claims = f"/v1/datasets/{dataset['id']}/claims"
    too_many = client.post(claims, json={"reviewer": "ann", "limit": MAX_CLAIM + 1})
    assert too_many.status_code == 400
    assert too_many.get_json()["error"]["code"] == "invalid_field"
    assert too_many.get_json()["error"]["field"] == "limit"
    assert client.post(claims, json={"reviewer": "ann", "limit": True}).status_code == 400  # a bool is no integer
    assert client.post(claims, json={"reviewer": "ann", "limit": 5.0}).status_code == 200  # JSON Schema's integer
    metadata = client.post("/v1/models", json={"model_id": "m", "metadata": ["not", "an", "object"]})
    assert metadata.status_code == 400 and metadata.get_json()["error"]["field"] == "metadata"
    long = client.post("/v1/datasets", json={"name": "d", "description": "x" * (MAX_TEXT + 1)})
    assert long.status_code == 400 and long.get_json()["error"]["field"] == "description"


def test_the_metrics_that_may_decide_an_ab_test_are_those_with_a_better_direction() -> None:
    directed = tuple(m for m in METRICS if HIGHER_IS_BETTER[m] is not None)
    assert directed == DIRECTED_METRICS
