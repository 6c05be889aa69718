"""The companion under gunicorn on loopback: the SDK's exporter, the client and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

import detwatch
import detwatch_instrumentation
from _components import free_port
from _service import Companion, companion_on
from detwatch.cli import main as cli
from detwatch_instrumentation import monitor_detections


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    """The service under gunicorn, on each backend in turn."""
    with companion_on(request.param, request, tmp_path_factory.mktemp("companion")) as service:
        yield service


@pytest.fixture
def client(companion: Companion) -> detwatch.Client:
    return detwatch.Client(base_url=companion.url)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdk_log_exporter_delivers_prediction_events(
    companion: Companion, client: detwatch.Client, compression: Compression
) -> None:
    before = client.status()["counts"]["predictions"]
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    exporter = OTLPLogExporter(endpoint=f"{companion.url}/v1/logs", compression=compression)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    tracer_provider = TracerProvider(shutdown_on_exit=False)

    @monitor_detections(
        model_id=f"cams-{compression.value}",
        model_version="v1",
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
    )
    def predict(images: list[Any]) -> list[list[dict[str, Any]]]:
        return [[{"class": "car", "confidence": 0.7, "box": [0, 0, 20, 10]}] for _ in images]

    for _ in range(25):
        predict([np.zeros((48, 64, 3), dtype=np.uint8)] * 4)
    assert detwatch_instrumentation.flush(10)
    assert logger_provider.force_flush(10_000)
    logger_provider.shutdown()
    assert client.status()["counts"]["predictions"] == before + 100
    model = client.get_model(f"cams-{compression.value}")
    assert model["versions"] == ["v1"]


def test_the_user_guide_registry_calls_return_objects_with_ids(client: detwatch.Client) -> None:
    model = client.register_model(model_id="vehicles", version="v2")
    assert model["id"] == "vehicles"
    assert client.get_model(model["id"])["id"] == "vehicles"
    dataset = client.create_dataset(name="vehicles")
    version = dataset["version"]
    new_version = client.create_dataset_version(
        dataset_id=dataset["id"], parent_version_id=version["id"], name="v2 - with feedback"
    )
    assert new_version["parent_version_id"] == version["id"]
    assert [v["id"] for v in client.get_dataset(dataset["id"])["versions"]] == [version["id"], new_version["id"]]


def test_a_call_the_server_does_not_have_says_it_is_not_available(client: detwatch.Client) -> None:
    # Every seed call has its server side by now; a client newer than its server still meets
    # a missing route (404 not_found, or 405 on an existing path), which must read as such.
    with pytest.raises(detwatch.NotAvailableError, match="future_call is not available on this server"):
        client._request("POST", "/v1/a-route-of-a-later-version", json={}, call="future_call")
    with pytest.raises(detwatch.NotAvailableError, match="future_call is not available on this server"):
        client._request("DELETE", "/v1/status", call="future_call")


def test_client_errors_are_typed_and_carry_the_server_error(client: detwatch.Client) -> None:
    with pytest.raises(detwatch.NotFoundError) as missing:
        client.get_model("no-such-model")
    assert missing.value.code == "model_not_found"
    with pytest.raises(detwatch.InvalidRequestError) as invalid:
        client.send_feedback(type="wrong_label", prediction_id="p")
    assert invalid.value.field == "corrected_class"
    closed = detwatch.Client(base_url=f"http://127.0.0.1:{free_port()}", retries=0, timeout=2)
    with pytest.raises(detwatch.TransportError):
        closed.status()


def test_client_retries_503_after_retry_after() -> None:
    answers = [503, 503, 200]
    seen: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = answers[len(seen)]
            seen.append(status)
            body = (
                b'{"version": "x", "counts": {}}' if status == 200 else b'{"error": {"code": "busy", "message": "m"}}'
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert detwatch.Client(base_url=url, retries=3).status()["version"] == "x"
        assert seen == [503, 503, 200]
        seen.clear()
        answers[:] = [503, 503, 503, 503]
        with pytest.raises(detwatch.UnavailableError):
            detwatch.Client(base_url=url, retries=2).status()
        assert len(seen) == 3
    finally:
        server.shutdown()
        server.server_close()


def test_cli_status_and_feedback_talk_to_the_service(companion: Companion) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["status", "--url", companion.url])
    assert result.exit_code == 0, result.output
    assert "predictions" in result.output
    result = runner.invoke(
        cli,
        ["feedback", "missed_object", "--prediction-id", "p-1", "--class", "car", "--box", "1,2,30,40",
         "--url", companion.url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"type": "missed_object"' in result.output
    result = runner.invoke(cli, ["feedback", "wrong_box", "--prediction-id", "p-1", "--url", companion.url])
    assert result.exit_code == 1
    assert "corrected_box" in result.output


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DETWATCH_API_TOKEN", raising=False)
    monkeypatch.setenv("DETWATCH_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "DETWATCH_API_TOKEN" in result.output
