"""The ``/v1`` API through Flask's test client, on a fresh database of each backend per test."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from _telemetry import Telemetry
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.storage import open_storage
from detwatch_instrumentation import monitor_detections

EVENT: dict[str, Any] = {
    "time": "2024-02-01T12:00:00.123Z",
    "model_id": "vehicles",
    "model_version": "v2",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "detections": [{"class": "car", "confidence": 0.91, "box": [12.0, 40.5, 220.0, 180.0]}],
}


def error_of(response: Any) -> dict[str, Any]:
    assert response.is_json, response.data
    body = response.get_json()
    assert set(body) == {"error"}
    return dict(body["error"])


def test_plain_json_batch_stores_valid_events_and_names_rejected_fields(client: FlaskClient) -> None:
    bad = {
        **EVENT,
        "span_id": "1111111111111111",
        "detections": [{"class": "car", "confidence": 2, "box": [0, 0, 1, 1]}],
    }
    response = client.post("/v1/predictions", json={"predictions": [EVENT, bad]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "field": "detections[0].confidence", "error": "detections[0].confidence: must be between 0 and 1"}
    ]
    again = client.post("/v1/predictions", json={"predictions": [EVENT]}).get_json()
    assert again["duplicates"] == 1
    counts = client.get("/v1/status").get_json()["counts"]
    assert counts["predictions"] == 1


def test_otlp_protobuf_gzip_from_the_decorator_is_stored(client: FlaskClient, telemetry: Telemetry) -> None:
    @monitor_detections(model_id="faces", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return [{"class": "face", "confidence": 0.8, "box": [0, 0, 10, 10]}]

    for _ in range(3):
        predict(np.zeros((10, 10), dtype=np.uint8))
    payload = gzip.compress(encode_logs(telemetry.logs()).SerializeToString())
    response = client.post(
        "/v1/logs", data=payload, headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.content_type == "application/x-protobuf"
    assert not ExportLogsServiceResponse.FromString(response.data).HasField("partial_success")
    assert client.get("/v1/status").get_json()["counts"]["predictions"] == 3
    assert client.get("/v1/models/faces").get_json()["id"] == "faces"


def test_bad_otlp_is_a_400_with_the_json_error(client: FlaskClient) -> None:
    response = client.post("/v1/logs", data=b"\xff\x00", headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    assert error_of(response)["field"] == "body"


def test_feedback_before_its_prediction_is_joined_when_it_arrives(client: FlaskClient) -> None:
    response = client.post(
        "/v1/feedback",
        json={
            "type": "wrong_label",
            "trace_id": EVENT["trace_id"],
            "span_id": EVENT["span_id"],
            "corrected_class": "truck",
        },
    )
    assert response.status_code == 201
    assert response.get_json()["prediction_id"] is None
    client.post("/v1/predictions", json={"predictions": [EVENT]})
    counts = client.get("/v1/status").get_json()["counts"]
    assert counts["feedback"] == 1


def test_feedback_with_the_same_idempotency_key_counts_once(client: FlaskClient) -> None:
    client.post("/v1/predictions", json={"predictions": [EVENT]})
    body = {"type": "correct", "trace_id": EVENT["trace_id"], "span_id": EVENT["span_id"]}
    first = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": "k-1"})
    second = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json()["duplicate"] is True
    assert first.get_json()["id"] == second.get_json()["id"]
    assert client.get("/v1/status").get_json()["counts"]["feedback"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nonsense", "prediction_id": "p"}, "type"),
        ({"type": "correct"}, "prediction_id"),
        ({"type": "wrong_label", "prediction_id": "p"}, "corrected_class"),
        ({"type": "wrong_box", "prediction_id": "p", "corrected_box": [5, 5, 1, 1]}, "corrected_box"),
        ({"type": "missed_object", "prediction_id": "p", "corrected_class": "car"}, "corrected_box"),
        ({"type": "correct", "trace_id": "XYZ", "span_id": "b7ad6b7169203331"}, "trace_id"),
        ({"type": "correct", "prediction_id": "p", "detection_index": -1}, "detection_index"),
    ],
)
def test_invalid_feedback_is_a_400_naming_the_field(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 400
    assert error_of(response)["field"] == field


def test_batch_feedback_keeps_the_valid_items(client: FlaskClient) -> None:
    response = client.post(
        "/v1/feedback",
        json={"feedback": [{"type": "correct", "prediction_id": "p1"}, {"type": "wrong_label", "prediction_id": "p2"}]},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["accepted"]) == 1
    assert body["rejected"][0]["field"] == "corrected_class"


def test_registry_gives_models_and_datasets_with_ids(client: FlaskClient) -> None:
    model = client.post("/v1/models", json={"model_id": "vehicles", "version": "v1"}).get_json()
    assert model["id"] == "vehicles"
    assert "v1" in client.get("/v1/models/vehicles").get_json()["versions"]
    dataset = client.post("/v1/datasets", json={"name": "vehicles"}).get_json()
    assert dataset["version"]["id"] == dataset["versions"][0]["id"]
    version = client.post(
        f"/v1/datasets/{dataset['id']}/versions",
        json={"name": "v2 - with feedback", "parent_version_id": dataset["version"]["id"]},
    ).get_json()
    assert version["parent_version_id"] == dataset["version"]["id"]
    assert len(client.get(f"/v1/datasets/{dataset['id']}").get_json()["versions"]) == 2


def test_unknown_things_are_json_404s(client: FlaskClient) -> None:
    assert error_of(client.get("/v1/models/nope"))["code"] == "model_not_found"
    assert error_of(client.get("/v1/datasets/nope"))["code"] == "dataset_not_found"
    assert error_of(client.get("/v1/no-such-route"))["code"] == "not_found"
    response = client.delete("/v1/models")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"data": b"not json", "content_type": "application/json"}, 400, "body"),
        ({"data": b"{}", "content_type": "text/plain"}, 415, "Content-Type"),
        ({"json": {"predictions": "all of them"}}, 400, "predictions"),
        ({"json": [1, 2, 3]}, 400, "predictions"),
    ],
)
def test_malformed_bodies_are_4xx_with_json(
    client: FlaskClient, kwargs: dict[str, Any], status: int, field: str
) -> None:
    response = client.post("/v1/predictions", **kwargs)
    assert response.status_code == status
    assert error_of(response)["field"] == field


def test_token_is_required_when_configured(tmp_path: Path) -> None:
    client = create_app(Settings(data_dir=tmp_path, api_token="s3cret")).test_client()
    response = client.get("/v1/status")
    assert response.status_code == 401
    assert error_of(response)["field"] == "Authorization"
    assert client.get("/v1/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_openapi_document_describes_exactly_the_routes(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    assert documented == served
    json.dumps(document)  # serialisable


def test_signed_webhooks_are_accepted_without_a_token_and_count_once(tmp_path: Path) -> None:
    from detwatch.contract.webhooks import signed_headers

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    app = create_app(Settings(data_dir=tmp_path, api_token="s3cret", webhook_secrets=(secret,)))
    client = app.test_client()
    body = json.dumps({"type": "correct", "prediction_id": "p-1"}).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body, webhook_id="msg_1")}
    first = client.post("/v1/feedback", data=body, headers=headers)
    again = client.post("/v1/feedback", data=body, headers=headers)  # a sender's retry
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["duplicate"] is True
    tampered = client.post("/v1/feedback", data=body.replace(b"p-1", b"p-2"), headers=headers)
    assert tampered.status_code == 401
    assert error_of(tampered)["field"] == "webhook-signature"
    unsigned = client.post("/v1/feedback", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert error_of(unsigned)["field"] == "Authorization"


def test_method_not_allowed_names_the_allowed_methods(client: FlaskClient) -> None:
    response = client.put("/v1/predictions", json={})
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"POST"}


def test_two_first_requests_at_once_share_one_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With threaded workers two first requests each opened a storage and started a retention thread."""
    from detwatch.api import _context

    app = create_app(Settings(data_dir=tmp_path))
    opened: list[Any] = []
    both_asked = threading.Barrier(2)

    def slow_open(url: str) -> Any:
        storage = open_storage(url)
        opened.append(storage)
        time.sleep(0.3)  # the other request's get_storage runs meanwhile
        return storage

    monkeypatch.setattr(_context, "open_storage", slow_open)
    got: list[Any] = []

    def first_request() -> None:
        with app.app_context():
            both_asked.wait(10)
            got.append(_context.get_storage())

    threads = [threading.Thread(target=first_request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(opened) == 1 and got == [opened[0], opened[0]]
    finally:
        app.extensions["detwatch.jobs.retention"].stop()
        for storage in opened:
            storage.close()


def test_a_signed_post_counts_once_whatever_idempotency_key_a_replay_adds(tmp_path: Path) -> None:
    """Idempotency-Key is outside the signature: a captured post re-sent with a fresh one counted again."""
    from detwatch.contract.webhooks import signed_headers

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    client = create_app(Settings(data_dir=tmp_path, api_token="s3cret", webhook_secrets=(secret,))).test_client()
    body = json.dumps({"type": "correct", "prediction_id": "p-1"}).encode()
    signed = {"Content-Type": "application/json", **signed_headers(secret, body, webhook_id="msg_1")}
    assert client.post("/v1/feedback", data=body, headers=signed).status_code == 201
    for replay in ("r0", "r1"):
        again = client.post("/v1/feedback", data=body, headers={**signed, "Idempotency-Key": replay})
        assert again.status_code == 200 and again.get_json()["duplicate"] is True
    # A token client's key is another namespace: it cannot pre-empt a signed message's id.
    token = {"Authorization": "Bearer s3cret", "Idempotency-Key": "msg_2"}
    assert (
        client.post("/v1/feedback", json={"type": "correct", "prediction_id": "p-2"}, headers=token).status_code == 201
    )
    body2 = json.dumps({"type": "wrong_label", "prediction_id": "p-3", "corrected_class": "bus"}).encode()
    signed2 = {"Content-Type": "application/json", **signed_headers(secret, body2, webhook_id="msg_2")}
    second = client.post("/v1/feedback", data=body2, headers=signed2)
    assert second.status_code == 201 and second.get_json()["prediction_id"] == "p-3"
    assert client.get("/v1/status", headers={"Authorization": "Bearer s3cret"}).get_json()["counts"]["feedback"] == 3


def test_a_batch_items_keys_cannot_match_a_single_posts(client: FlaskClient) -> None:
    """Item i of a batch posted with key K was stored as "K#i": a single post with key "K#0" got item 0 back."""
    batch = {"feedback": [{"type": "correct", "prediction_id": f"p-{i}"} for i in range(2)]}
    assert client.post("/v1/feedback", json=batch, headers={"Idempotency-Key": "K"}).status_code == 200
    for key in ("K#0", "[0]:K", "K"):
        single = client.post(
            "/v1/feedback", json={"type": "correct", "prediction_id": "p-9"}, headers={"Idempotency-Key": key}
        )
        assert single.status_code == 201, key
    retried = client.post("/v1/feedback", json=batch, headers={"Idempotency-Key": "K"}).get_json()
    assert [item["duplicate"] for item in retried["accepted"]] == [True, True]


@pytest.mark.parametrize("header", ["Idempotency-Key", "webhook-id"])
def test_an_overlong_idempotency_key_is_a_400_naming_the_header(client: FlaskClient, header: str) -> None:
    """On PostgreSQL an 8,000-character key overflowed the index entry: a 500 the sender retried forever."""
    body = {"type": "correct", "prediction_id": "p-1"}
    response = client.post("/v1/feedback", json=body, headers={header: "k" * 257})
    assert response.status_code == 400
    assert error_of(response)["field"] == header
    assert client.post("/v1/feedback", json=body, headers={header: "k" * 256}).status_code == 201


def test_a_configured_token_read_with_its_newline_still_matches(tmp_path: Path) -> None:
    """DETWATCH_API_TOKEN="$(cat token)"-style values kept a newline, and no request could ever match."""
    from detwatch.config import load_settings

    settings = load_settings({"DETWATCH_API_TOKEN": "s3cret\n", "DETWATCH_CONFIG": str(tmp_path / "absent.yaml")})
    assert settings.api_token == "s3cret"
    client = create_app(Settings(data_dir=tmp_path, api_token=settings.api_token)).test_client()
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/v1/models").status_code == 401
    blank = load_settings({"DETWATCH_API_TOKEN": "  ", "DETWATCH_CONFIG": str(tmp_path / "absent.yaml")})
    assert blank.api_token is None  # as an empty value: no token
