"""The OpenAPI 3.1 document of the companion, served at ``/openapi.json``.

Paths are a table of operations next to the routes they describe; every request and
answer schema is generated from the shapes of :mod:`detwatch.contract.shapes`, the
single declaration of the ``/v1`` wire format. The document is checked against the
routes by fuzzing every route from it (schemathesis, ``tests/test_fuzz_api.py``): a
request the document allows is accepted, one it forbids is a 4xx with the JSON error,
and no request makes the service fail. The validation code is the truth; the schemas
say what JSON Schema can of it (``null`` for an optional field means absent;
cross-field rules such as a box's x2 > x1 are in the descriptions).
"""

from __future__ import annotations

import copy
from typing import Any, Final

from detwatch.api import _openapi_item_images, _openapi_label_studio, _openapi_review
from detwatch.api._openapi_alerts import alert_paths
from detwatch.api._openapi_paths import (
    BODY_ERRORS,
    JSON,
    NOT_FOUND,
    READ_ERRORS,
    answer,
    body,
    operation,
    path_id,
    ref,
)
from detwatch.api._openapi_quality import quality_paths
from detwatch.api._openapi_quality_comparison import quality_comparison_paths
from detwatch.contract.predictions import MAX_JSON_DEPTH
from detwatch.contract.shapes import (
    ABTest,
    ABTestCreate,
    ABTestList,
    ABTestResults,
    Dataset,
    DatasetCreate,
    DatasetVersion,
    DatasetVersionCreate,
    DriftReport,
    DriftRequest,
    Error,
    Feedback,
    FeedbackBatch,
    FeedbackBatchResult,
    FeedbackRecord,
    Model,
    ModelList,
    ModelRegistration,
    PredictionBatch,
    PredictionResult,
    Status,
    schema_components,
)
from detwatch.contract.textfields import NO_NUL_PATTERN
from detwatch.version import __version__

__all__ = ["openapi_document"]

_CODING: Final = r"^[ \t]*(?:[Gg][Zz][Ii][Pp]|[Ii][Dd][Ee][Nn][Tt][Ii][Tt][Yy])?[ \t]*$"
"""Content-Encoding as the service reads it: gzip, identity or nothing, in any case."""

_ERROR_SHAPES: Final = ("Error", "ErrorDetail")
"""Error texts are the service's own and may quote a NUL the client sent: no NUL rule on them."""


def openapi_document() -> dict[str, Any]:
    """The document (a new dict each call)."""
    schemas = schema_components()
    document = {
        "openapi": "3.1.0",
        "info": _info(),
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": copy.deepcopy(_paths()),
    }
    _no_nul_in_text(document["paths"])
    _no_nul_in_text({k: v for k, v in schemas.items() if k not in _ERROR_SHAPES})
    return document


def _info() -> dict[str, Any]:
    return {
        "title": "detwatch companion",
        "version": __version__,
        "description": "Feedback, prediction ingest and registry for object-detection monitoring. "
        "JSON bodies are I-JSON (RFC 7493: UTF-8, no lone surrogates), nested at most "
        f"{MAX_JSON_DEPTH} deep. Every error is the JSON object Error.",
    }


def _paths() -> dict[str, Any]:
    return {
        **_ingest_paths(),
        **_feedback_paths(),
        **_registry_paths(),
        **_ab_test_paths(),
        **_openapi_review.paths(),
        **_openapi_item_images.paths(),
        **_openapi_label_studio.paths(),
        **alert_paths(),
        **quality_paths(),
        **quality_comparison_paths(),
        "/v1/status": {"get": operation("Counts and version", {"200": answer("status", Status), **READ_ERRORS})},
    }


def _no_nul_in_text(node: Any) -> None:
    """Give every string schema without a pattern the NUL rule (:data:`~detwatch.contract.textfields.NO_NUL_PATTERN`).

    Free-form objects (``metadata``, ``options``, ``attributes``) have no string
    schemas inside, and may hold a NUL: they are stored as JSON text.
    """
    if isinstance(node, dict):
        kind = node.get("type")
        text = kind == "string" or (isinstance(kind, list) and "string" in kind)
        if text and not {"pattern", "enum"} & node.keys() and node.get("format") != "binary":
            node["pattern"] = NO_NUL_PATTERN
        for child in node.values():
            _no_nul_in_text(child)
    elif isinstance(node, list):
        for child in node:
            _no_nul_in_text(child)


def _ingest_paths() -> dict[str, Any]:
    otlp_json = {
        "type": "object",
        "description": "ExportLogsServiceRequest in OTLP/JSON (hex traceId and spanId); unknown fields are ignored",
    }
    otlp_protobuf = {"type": "string", "format": "binary", "description": "ExportLogsServiceRequest, protobuf"}
    encoding = {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "description": "gzip or identity (none), case-insensitive",
        "schema": {"type": "string", "pattern": _CODING},
    }
    logs_answer = {
        "description": "ExportLogsServiceResponse in the request's encoding; partial_success names rejected records",
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            JSON: {"schema": {"type": "object"}},
        },
    }
    logs = operation(
        "OTLP/HTTP logs: objdet.prediction events (protobuf or JSON, gzip)",
        {"200": logs_answer, **BODY_ERRORS},
        parameters=[encoding],
    )
    # OTLP is protobuf's wire format, not one of ours: its schema is the OTLP specification's.
    logs["requestBody"] = {
        "required": True,
        "content": {"application/x-protobuf": {"schema": otlp_protobuf}, JSON: {"schema": otlp_json}},
    }
    predictions = operation(
        "Plain JSON batch of prediction events",
        {"200": answer("stored; rejected items named", PredictionResult), **BODY_ERRORS},
        request=PredictionBatch,
    )
    return {"/v1/logs": {"post": logs}, "/v1/predictions": {"post": predictions}}


def _feedback_paths() -> dict[str, Any]:
    post = operation(
        "Feedback webhook (bearer token or Standard Webhooks signature)",
        {
            "201": answer("stored", FeedbackRecord),
            "200": answer(
                "a repeated idempotency key (the stored record), or a batch result",
                schema={"anyOf": [ref(FeedbackRecord), ref(FeedbackBatchResult)]},
            ),
            "422": answer(
                "the idempotency key was already used for a different feedback item (in a batch, that item is "
                "rejected instead)",
                Error,
            ),
            **BODY_ERRORS,
        },
        description="One feedback object, or a batch: an object whose feedback is a list. A retried post counts "
        "once: a signed post by its webhook-id, any other by its Idempotency-Key (else webhook-id), at most 256 "
        "characters; a key reused for a different item is a 422.",
    )
    post["requestBody"] = body(schema={"anyOf": [ref(Feedback), ref(FeedbackBatch)]})
    return {"/v1/feedback": {"post": post}}


def _registry_paths() -> dict[str, Any]:
    model = path_id("model_id", max_length=None)
    dataset = path_id("dataset_id", max_length=None)
    return {
        "/v1/models": {
            "get": operation("List models", {"200": answer("models", ModelList), **READ_ERRORS}),
            "post": operation(
                "Register a model (version optional)",
                {"201": answer("the model", Model), **BODY_ERRORS},
                request=ModelRegistration,
            ),
        },
        "/v1/models/{model_id}": {
            "get": operation(
                "One model", {"200": answer("the model", Model), **NOT_FOUND, **READ_ERRORS}, parameters=[model]
            )
        },
        "/v1/models/{model_id}/drift": {
            "post": operation(
                "Drift report: current period against a reference period",
                {"200": answer("the report", DriftReport), **NOT_FOUND, **BODY_ERRORS},
                request=DriftRequest,
                parameters=[model],
            )
        },
        "/v1/datasets": {
            "post": operation(
                "Create a dataset (with its first, empty version)",
                {"201": answer("the dataset", Dataset), **BODY_ERRORS},
                request=DatasetCreate,
            )
        },
        "/v1/datasets/{dataset_id}": {
            "get": operation(
                "One dataset", {"200": answer("the dataset", Dataset), **NOT_FOUND, **READ_ERRORS}, parameters=[dataset]
            )
        },
        "/v1/datasets/{dataset_id}/versions": {
            "post": operation(
                "Create a dataset version",
                {"201": answer("the version", DatasetVersion), "404": answer("unknown dataset", Error), **BODY_ERRORS},
                request=DatasetVersionCreate,
                parameters=[dataset],
            )
        },
    }


def _ab_test_paths() -> dict[str, Any]:
    test = [path_id("ab_test_id", max_length=None)]
    one = {"200": answer("the test", ABTest), **NOT_FOUND, **READ_ERRORS}
    return {
        "/v1/ab-tests": {
            "get": operation("List A/B tests, newest first", {"200": answer("the tests", ABTestList), **READ_ERRORS}),
            "post": operation(
                "Create an A/B test between two registered models",
                {"201": answer("the test", ABTest), **BODY_ERRORS},
                request=ABTestCreate,
            ),
        },
        "/v1/ab-tests/{ab_test_id}": {
            "get": operation("One A/B test (what a router polls for its split)", one, parameters=test)
        },
        "/v1/ab-tests/{ab_test_id}/stop": {
            "post": operation("End the test now; routers then send everything to A", one, parameters=test)
        },
        "/v1/ab-tests/{ab_test_id}/results": {
            "get": operation(
                "Per-arm results, comparisons and the peeking-safe verdict",
                {"200": answer("the results", ABTestResults), **NOT_FOUND, **READ_ERRORS},
                parameters=test,
            )
        },
    }
