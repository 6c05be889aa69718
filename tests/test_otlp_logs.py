"""OTLP/HTTP logs decoding: the decorator's real records, as the SDK's exporter posts them."""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from _telemetry import Telemetry
from detwatch.contract import otlp as otlp_logs
from detwatch.contract.otlp import OTLPDecodeError, decode_request, encode_response, extract_predictions
from detwatch_instrumentation import monitor_detections, prediction_context

DETECTIONS = [
    {"class": "car", "confidence": 0.91, "box": [12.0, 40.5, 220.0, 180.0]},
    {"class": "person", "confidence": 0.55, "box": [1.0, 2.0, 30.0, 90.0]},
]


def exported_bytes(telemetry: Telemetry) -> bytes:
    """What the SDK's OTLPLogExporter puts on the wire for the recorded events."""
    return bytes(encode_logs(telemetry.logs()).SerializeToString())


def record_some(telemetry: Telemetry, n: int = 3) -> None:
    @monitor_detections(model_id="vehicles", model_version="v2", **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        return DETECTIONS

    for i in range(n):
        with prediction_context(image_key=f"cam7/{i:06d}.jpg"):
            predict(np.zeros((480, 640, 3), dtype=np.uint8))


def test_protobuf_request_from_the_sdk_exporter_yields_the_decorators_predictions(telemetry: Telemetry) -> None:
    record_some(telemetry)
    spans = {s.context.span_id: s for s in telemetry.spans()}
    request = decode_request(exported_bytes(telemetry), "application/x-protobuf", None)
    ingest = extract_predictions(request)
    assert (ingest.rejected, ingest.ignored) == (0, 0)
    assert len(ingest.predictions) == 3
    for prediction in ingest.predictions:
        assert prediction.model_id == "vehicles"
        assert prediction.model_version == "v2"
        assert [(d.class_name, d.confidence, list(d.box)) for d in prediction.detections] == [
            (d["class"], d["confidence"], d["box"]) for d in DETECTIONS
        ]
        assert prediction.image.width == 640
        assert prediction.trace_id is not None and prediction.span_id is not None
        assert int(prediction.span_id, 16) in spans
        assert prediction.prediction_id == f"{prediction.trace_id}-{prediction.span_id}-0"
    assert sorted(p.image.key or "" for p in ingest.predictions) == [f"cam7/{i:06d}.jpg" for i in range(3)]


def test_gzip_protobuf_is_accepted(telemetry: Telemetry) -> None:
    record_some(telemetry, 2)
    request = decode_request(gzip.compress(exported_bytes(telemetry)), "application/x-protobuf", "gzip")
    assert len(extract_predictions(request).predictions) == 2


def test_otlp_json_with_hex_ids_and_string_integers() -> None:
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cam"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "detwatch_instrumentation"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1706788800123000000",
                                "eventName": "objdet.prediction",
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "body": {
                                    "kvlistValue": {
                                        "values": [
                                            {"key": "model_id", "value": {"stringValue": "vehicles"}},
                                            {"key": "detections", "value": {"arrayValue": {"values": []}}},
                                        ]
                                    }
                                },
                            },
                            {"timeUnixNano": "1706788800123000000", "body": {"stringValue": "an unrelated log line"}},
                        ],
                    }
                ],
            }
        ]
    }
    request = decode_request(json.dumps(body).encode(), "application/json; charset=utf-8", None)
    ingest = extract_predictions(request)
    assert (len(ingest.predictions), ingest.rejected, ingest.ignored) == (1, 0, 1)
    prediction = ingest.predictions[0]
    assert prediction.time_unix_nano == 1706788800123000000
    assert prediction.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert prediction.prediction_id == "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"
    assert prediction.detections == ()


def test_a_malformed_record_is_rejected_in_a_partial_success_and_the_rest_kept(telemetry: Telemetry) -> None:
    record_some(telemetry, 2)
    request = decode_request(exported_bytes(telemetry), "application/x-protobuf", None)
    bad = request.resource_logs[0].scope_logs[0].log_records[0]
    bad.body.string_value = json.dumps(
        {
            "model_id": "vehicles",
            "time": "2024-02-01T12:00:00Z",
            "detections": [{"class": "car", "confidence": 1.7, "box": [0, 0, 1, 1]}],
        }
    )
    ingest = extract_predictions(request)
    assert len(ingest.predictions) == 1
    assert ingest.rejected == 1
    assert "detections[0].confidence" in ingest.errors[0]
    payload, media = encode_response(ingest, "application/x-protobuf")
    assert media == "application/x-protobuf"
    response = ExportLogsServiceResponse.FromString(payload)
    assert response.partial_success.rejected_log_records == 1
    assert "detections[0].confidence" in response.partial_success.error_message


def test_full_success_answers_an_empty_response_in_the_request_encoding() -> None:
    payload, media = encode_response(
        extract_predictions(decode_request(b"{}", "application/json", None)), "application/json"
    )
    assert (json.loads(payload), media) == ({}, "application/json")


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "field"),
    [
        (b"\x00\xff not protobuf", "application/x-protobuf", None, "body"),
        (b"{not json", "application/json", None, "body"),
        (b"{}", "text/plain", None, "Content-Type"),
        (b"{}", "application/json", "br", "Content-Encoding"),
        (b"not gzip", "application/json", "gzip", "Content-Encoding"),
        (b"no", "application/json", "gzip", "Content-Encoding"),  # shorter than a gzip header
        (
            gzip.compress(b'{"resourceLogs": []}', mtime=0)[:-12],
            "application/json",
            "gzip",
            "Content-Encoding",
        ),  # cut short
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}',
            "application/json",
            None,
            "traceId",
        ),
    ],
)
def test_unreadable_requests_raise_naming_the_field(
    body: bytes, content_type: str, encoding: str | None, field: str
) -> None:
    with pytest.raises(OTLPDecodeError) as caught:
        decode_request(body, content_type, encoding)
    assert caught.value.field == field


def test_gzip_is_inflated_by_isal_where_it_is_installed() -> None:
    """The fast inflate is the one in use (a dependency), and agrees with the standard library."""
    from isal import isal_zlib

    assert vars(otlp_logs)["_zlib"] is isal_zlib
    payload = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x" * 5000}}]}]}]})
    request = decode_request(gzip.compress(payload.encode(), compresslevel=9), "application/json", "gzip")
    assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "x" * 5000


def test_gzip_bombs_are_refused() -> None:
    bomb = gzip.compress(b"\x00" * (40 * 1024 * 1024))
    with pytest.raises(OTLPDecodeError, match="larger than"):
        decode_request(bomb, "application/x-protobuf", "gzip")
