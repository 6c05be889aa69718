"""Bad bytes in requests, on both backends: the bad item is refused with its reason, the rest is stored.

A NUL (U+0000) in a text field answered 500 on PostgreSQL and dropped the whole batch
(SQLite stored it); several gzip members were half read and answered as a success; a
feedback box had no bound while the label built from it had one; a name was blank
for one validator and not for the other.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from detwatch.api.openapi import openapi_document
from detwatch.contract.textfields import NAME_PATTERN, name_problem

PROTOBUF = "application/x-protobuf"


def event(i: int, *, cls: str = "car", model_id: str = "cams") -> dict[str, Any]:
    return {
        "prediction_id": f"p-{i:04d}",
        "time": "2024-02-01T12:00:00Z",
        "model_id": model_id,
        "image": {"key": f"cam/{i}.jpg", "width": 640, "height": 480},
        "detections": [{"class": cls, "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}],
    }


def otlp(bodies: list[AnyValue]) -> ExportLogsServiceRequest:
    records = [LogRecord(event_name="objdet.prediction", body=body) for body in bodies]
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])


def as_string(body: dict[str, Any]) -> AnyValue:
    return AnyValue(string_value=json.dumps(body))


def stored(client: FlaskClient) -> int:
    return int(client.get("/v1/status").get_json()["counts"]["predictions"])


def partial_success(response: Any) -> tuple[int, str]:
    assert response.status_code == 200, response.data
    answer = ExportLogsServiceResponse.FromString(response.data)
    return answer.partial_success.rejected_log_records, answer.partial_success.error_message


# ------------------------------------------------------------------ NUL


def test_100_good_otlp_records_and_one_with_a_nul_store_the_100(client: FlaskClient) -> None:
    bodies = [as_string(event(i)) for i in range(100)]
    bodies.insert(37, as_string(event(999, cls="c\u0000r")))
    response = client.post("/v1/logs", data=otlp(bodies).SerializeToString(), headers={"Content-Type": PROTOBUF})
    rejected, message = partial_success(response)
    assert rejected == 1
    assert "logRecords[37]" in message and "body.detections[0].class" in message and "U+0000" in message
    assert stored(client) == 100


def test_a_nul_in_an_otlp_map_body_or_in_otlp_json_is_that_records_rejection(client: FlaskClient) -> None:
    as_map = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="model_id", value=AnyValue(string_value="ca\u0000ms")),
                KeyValue(key="time", value=AnyValue(string_value="2024-02-01T12:00:00Z")),
                KeyValue(key="detections", value=AnyValue()),
            ]
        )
    )
    request = otlp([as_map, as_string(event(1)), as_string({**event(2), "image": {"uri": "file:///a\u0000"}})])
    rejected, message = partial_success(
        client.post("/v1/logs", data=request.SerializeToString(), headers={"Content-Type": PROTOBUF})
    )
    assert rejected == 2 and "body.model_id" in message and "body.image.uri" in message
    as_json = json.dumps(json_format.MessageToDict(otlp([as_string(event(3)), as_string(event(4, model_id="\0"))])))
    response = client.post("/v1/logs", data=as_json, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.get_json()["partialSuccess"]["rejectedLogRecords"] == "1"
    assert stored(client) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prediction_id": "p\u0000"}, "prediction_id"),
        ({"model_id": "m\u0000"}, "model_id"),
        ({"model_version": "\u0000"}, "model_version"),
        ({"image": {"key": "a\u0000.jpg"}}, "image.key"),
        ({"image": {"uri": "file:///x\ny.jpg"}}, "image.uri"),
        ({"detections": [{"label": "\u0000", "score": 0.5, "bbox": [0, 0, 1, 1]}]}, "detections[0].class"),
    ],
)
def test_a_nul_in_one_plain_json_prediction_rejects_it_alone(
    client: FlaskClient, change: dict[str, Any], field: str
) -> None:
    batch = [event(1), {**event(2), **change}, event(3)]
    body = client.post("/v1/predictions", json={"predictions": batch}).get_json()
    assert body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, field)]
    assert stored(client) == 2


def test_free_form_objects_may_hold_a_nul_on_both_backends(client: FlaskClient) -> None:
    """metadata, options and attributes are stored as JSON text, where a NUL is the escape \\u0000."""
    response = client.post("/v1/models", json={"model_id": "m", "metadata": {"note\u0000": "a\u0000b"}})
    assert response.status_code == 201, response.data
    assert client.get("/v1/models/m").get_json()["metadata"] == {"note\u0000": "a\u0000b"}
    body = client.post("/v1/predictions", json={"predictions": [{**event(1), "attributes": {"k": "\u0000"}}]})
    assert body.get_json()["accepted"] == 1


def _fixtures(client: FlaskClient) -> dict[str, str]:
    assert client.post("/v1/models", json={"model_id": "m1"}).status_code == 201
    assert client.post("/v1/models", json={"model_id": "m2"}).status_code == 201
    dataset = client.post("/v1/datasets", json={"name": "d"}).get_json()
    return {"dataset": dataset["id"], "version": dataset["version"]["id"]}


NUL_REQUESTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/models/a%00b", None, "model_id"),
    ("GET", "/v1/datasets/x%00", None, "dataset_id"),
    ("GET", "/v1/ab-tests/%00", None, "ab_test_id"),
    ("GET", "/v1/training-jobs/j%00", None, "job_id"),
    ("GET", "/v1/models/m%00/data-engine", None, "model_id"),
    ("GET", "/v1/models/m%00/alerts", None, "model_id"),
    ("GET", "/v1/datasets/{dataset}/items?status=%00", None, "status"),
    ("GET", "/v1/datasets/{dataset}/items?cursor=1%00", None, "cursor"),
    ("GET", "/v1/datasets/{dataset}/items/i%00", None, "item_id"),
    ("GET", "/v1/datasets/{dataset}/versions/{version}/export?format=coco%00", None, "format"),
    ("GET", "/v1/models?x%00=1", None, "query"),
    ("POST", "/v1/models", {"model_id": "m\u0000"}, "model_id"),
    ("POST", "/v1/models", {"model_id": "m", "version": "\u0000"}, "version"),
    ("POST", "/v1/datasets", {"name": "d\u0000"}, "name"),
    ("POST", "/v1/datasets", {"name": "d", "description": "\u0000"}, "description"),
    ("POST", "/v1/datasets/{dataset}/versions", {"name": "v\u0000"}, "name"),
    ("POST", "/v1/datasets/{dataset}/versions", {"name": "v", "parent_version_id": "\u0000"}, "parent_version_id"),
    ("POST", "/v1/feedback", {"type": "correct", "prediction_id": "p\u0000"}, "prediction_id"),
    (
        "POST",
        "/v1/feedback",
        {"type": "wrong_label", "prediction_id": "p", "corrected_class": "\u0000"},
        "corrected_class",
    ),
    ("POST", "/v1/feedback", {"type": "correct", "prediction_id": "p", "comment": "ok\u0000"}, "comment"),
    ("POST", "/v1/feedback", {"type": "correct", "prediction_id": "p", "reviewer": "\u0000a"}, "reviewer"),
    (
        "POST",
        "/v1/models/m1/drift",
        {
            "reference_period": "2024-01-01:2024-01-02",
            "current_period": "2024-01-02:2024-01-03",
            "model_version": "v\u0000",
        },
        "model_version",
    ),
    ("POST", "/v1/ab-tests", {"name": "t\u0000", "model_a_id": "m1", "model_b_id": "m2"}, "name"),
    (
        "POST",
        "/v1/ab-tests",
        {"name": "t", "model_a_id": "m1", "model_b_id": "m2", "config": {"model_a_version": "\u0000"}},
        "config.model_a_version",
    ),
    ("PUT", "/v1/models/m1/data-engine", {"target_dataset_id": "\u0000", "config": {}}, "target_dataset_id"),
    ("POST", "/v1/datasets/{dataset}/claims", {"reviewer": "r\u0000"}, "reviewer"),
    ("POST", "/v1/training-jobs", {"name": "j\u0000", "dataset_id": "{dataset}", "version_id": "{version}"}, "name"),
    ("POST", "/v1/training-jobs/j/status", {"status": "running", "message": "\u0000"}, "message"),
    ("POST", "/v1/training-jobs/j/status", {"status": "succeeded", "model_version": "\u0000"}, "model_version"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), NUL_REQUESTS, ids=[f"{r[0]} {r[1]} {r[3]}" for r in NUL_REQUESTS]
)
def test_a_nul_anywhere_in_a_request_is_a_400_naming_the_field(
    client: FlaskClient, method: str, path: str, body: Any, field: str
) -> None:
    ids = _fixtures(client)
    if body is not None:
        body = json.loads(json.dumps(body).replace("{dataset}", ids["dataset"]).replace("{version}", ids["version"]))
    response = client.open(path.format(**ids), method=method, json=body)
    assert response.status_code == 400, response.data
    assert response.get_json()["error"]["field"] == field
    assert "U+0000" in response.get_json()["error"]["message"]


def test_a_nul_in_the_idempotency_key_is_a_400_naming_the_header(client: FlaskClient) -> None:
    response = client.post(
        "/v1/feedback", json={"type": "correct", "prediction_id": "p"}, headers={"Idempotency-Key": "k\u0000"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "Idempotency-Key"


def test_a_nul_in_one_item_of_a_feedback_batch_rejects_it_alone(client: FlaskClient) -> None:
    items = [
        {"type": "correct", "prediction_id": "p-1"},
        {"type": "wrong_label", "prediction_id": "p-2", "corrected_class": "tr\u0000uck"},
        {"type": "correct", "prediction_id": "p-3", "comment": "fine"},
    ]
    body = client.post("/v1/feedback", json={"feedback": items}).get_json()
    assert [r["prediction_id"] for r in body["accepted"]] == ["p-1", "p-3"]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "corrected_class")]


# ------------------------------------------------------------------ gzip


def test_every_member_of_a_gzip_body_is_stored(client: FlaskClient) -> None:
    first = otlp([as_string(event(i)) for i in range(5)]).SerializeToString()
    second = otlp([as_string(event(i)) for i in range(5, 10)]).SerializeToString()
    body = gzip.compress(first) + gzip.compress(second)  # protobuf messages concatenate: one request of 10
    response = client.post("/v1/logs", data=body, headers={"Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
    assert partial_success(response) == (0, "")
    assert stored(client) == 10


def test_a_gzip_body_with_bytes_after_its_members_is_a_400_and_stores_nothing(client: FlaskClient) -> None:
    body = gzip.compress(otlp([as_string(event(1))]).SerializeToString()) + b"garbage"
    response = client.post("/v1/logs", data=body, headers={"Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "Content-Encoding"
    assert stored(client) == 0


def test_gzip_members_share_one_decompressed_size_limit() -> None:
    from detwatch.contract.otlp import MAX_BODY_BYTES, OTLPDecodeError, decode_request

    half = gzip.compress(b"\0" * (MAX_BODY_BYTES // 2 + 1))
    with pytest.raises(OTLPDecodeError) as info:
        decode_request(half + half, PROTOBUF, "gzip")
    assert info.value.status == 413


# ------------------------------------------------------------------ boxes and names


@pytest.mark.parametrize("box", [[0, 0, 1e300, 1e300], [-1e8, 0, 10, 10], [0, 0, 1e7 + 1, 5]])
def test_a_feedback_box_beyond_the_coordinate_bound_is_refused_like_any_box(
    client: FlaskClient, box: list[float]
) -> None:
    response = client.post("/v1/feedback", json={"type": "wrong_box", "prediction_id": "p", "corrected_box": box})
    assert response.status_code == 400
    bad = next(i for i, v in enumerate(box) if abs(v) > 1e7)
    assert response.get_json()["error"]["field"] == f"corrected_box[{bad}]"  # the shape names the coordinate


def test_a_feedback_box_at_the_bound_is_accepted(client: FlaskClient) -> None:
    box = [-1e7, -1e7, 1e7, 1e7]
    response = client.post("/v1/feedback", json={"type": "wrong_box", "prediction_id": "p", "corrected_box": box})
    assert response.status_code == 201
    assert response.get_json()["corrected_box"] == box


BLANK_OR_NOT = ["\u001c", "\u0085", "\ufeff", " \t\n", "\u3000", "\u00a0", "a", " a", "\u200b", "é", "\u001cx"]


@pytest.mark.parametrize("name", BLANK_OR_NOT)
def test_every_name_route_and_the_document_agree_on_what_is_blank(client: FlaskClient, name: str) -> None:
    """One rule: POST /v1/datasets refused "\\u001c" (strip()) while the document's \\S allowed it."""
    blank = name_problem(name) is not None
    assert blank == (re.search(NAME_PATTERN, name) is None)
    dataset = client.post("/v1/datasets", json={"name": name})
    assert dataset.status_code == (400 if blank else 201), dataset.data
    model = client.post("/v1/models", json={"model_id": name})
    assert model.status_code == (400 if blank else 201)
    job = client.post("/v1/training-jobs", json={"name": name, "dataset_id": "x", "version_id": "y"})
    assert job.status_code == (400 if blank else 404)  # a valid name, then no dataset x
    feedback = client.post("/v1/feedback", json={"type": "correct", "prediction_id": "p", "reviewer": name})
    assert feedback.status_code == (400 if blank else 201)


def test_the_document_states_the_name_rule_and_no_nul_for_every_text_field() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    assert schemas["DatasetCreate"]["properties"]["name"]["pattern"] == NAME_PATTERN
    assert schemas["Label"]["properties"]["annotations"]["items"] == {"$ref": "#/components/schemas/Annotation"}
    assert schemas["Annotation"]["properties"]["class"]["pattern"] == NAME_PATTERN
    text = json.dumps(document)
    assert "\\\\S" not in text and "\\\\s" not in text  # dialects differ on them: explicit classes only
    assert schemas["Prediction"]["properties"]["model_id"]["pattern"] == "^[^\\u0000]*$"
    assert re.search(schemas["Prediction"]["properties"]["model_id"]["pattern"], "a\u0000b") is None


# ------------------------------------------------------------------ idempotency keys and I-JSON


def test_an_idempotency_key_reused_for_another_body_is_a_422_naming_the_header(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "fb-1"}
    first = client.post("/v1/feedback", json={"type": "wrong_label", "prediction_id": "p", "corrected_class": "truck"},
                        headers=headers)  # fmt: skip
    assert first.status_code == 201
    retry = client.post("/v1/feedback", json={"type": "wrong_label", "prediction_id": "p", "corrected_class": "truck"},
                        headers=headers)  # fmt: skip
    assert retry.status_code == 200 and retry.get_json()["id"] == first.get_json()["id"]
    other = client.post("/v1/feedback", json={"type": "wrong_label", "prediction_id": "p", "corrected_class": "bus"},
                        headers=headers)  # fmt: skip
    assert other.status_code == 422
    assert other.get_json()["error"]["field"] == "Idempotency-Key"
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    assert client.get("/v1/status").get_json()["counts"]["feedback"] == 1


def test_a_batch_item_whose_key_was_used_for_another_item_is_rejected_alone(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "batch-1"}
    items = [{"type": "correct", "prediction_id": "p-1"}, {"type": "false_positive", "prediction_id": "p-2"}]
    assert client.post("/v1/feedback", json={"feedback": items}, headers=headers).status_code == 200
    changed = [items[0], {"type": "correct", "prediction_id": "p-2"}, {"type": "correct", "prediction_id": "p-3"}]
    body = client.post("/v1/feedback", json={"feedback": changed}, headers=headers).get_json()
    assert [(r["prediction_id"], r["duplicate"]) for r in body["accepted"]] == [("p-1", True), ("p-3", False)]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "Idempotency-Key")]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/datasets", b'{"name": "a", "name": "b"}'),
        ("/v1/models", b'{"model_id": "m", "metadata": {"k": 1, "k": 2}}'),
        ("/v1/feedback", b'{"type": "correct", "type": "wrong_box", "prediction_id": "p"}'),
        ("/v1/predictions", b'{"predictions": [], "predictions": []}'),
    ],
)
def test_a_name_twice_in_one_json_object_is_a_400(client: FlaskClient, path: str, body: bytes) -> None:
    response = client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "appears twice" in response.get_json()["error"]["message"]


def test_a_name_twice_in_an_otlp_records_json_body_rejects_that_record(client: FlaskClient) -> None:
    """The decorator's JSON string takes msgspec's fast path, which kept the last of two names."""
    text = json.dumps(event(1)).replace('"model_id": "cams"', '"model_id": "x", "model_id": "cams"')
    twice_in_a_detection = json.dumps(event(2)).replace('"class": "car"', '"class": "bus", "class": "car"')
    request = otlp([AnyValue(string_value=text), AnyValue(string_value=twice_in_a_detection), as_string(event(3))])
    rejected, message = partial_success(
        client.post("/v1/logs", data=request.SerializeToString(), headers={"Content-Type": PROTOBUF})
    )
    assert rejected == 2 and "'model_id' appears twice" in message and "'class' appears twice" in message
    assert stored(client) == 1


@pytest.mark.parametrize("name", ["a\u0000b", "a\u001fb", "a\u007f"])
def test_an_alert_name_with_a_control_character_is_a_400(client: FlaskClient, name: str) -> None:
    condition = {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"}
    body = {"name": name, "condition": condition, "notify": ["email:a@example.com"]}
    response = client.post("/v1/models/m/alerts", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "name"


def test_a_nul_in_the_url_of_a_caller_without_the_token_is_a_401(tmp_path: Path) -> None:
    from detwatch.app import create_app
    from detwatch.config import Settings

    client = create_app(Settings(data_dir=tmp_path, api_token="s3cret")).test_client()
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/models/a%00b").status_code == 401
    assert client.get("/v1/models/a%00b", headers=auth).status_code == 400
    assert client.post("/v1/training-jobs/j%00/status", json={"status": "running"}).status_code == 401
    assert client.get("/v1/training-jobs/j%00/dataset/export?format=coco").status_code == 401
    assert client.get("/healthz?x=%00").status_code == 200
