"""A loopback OTLP/HTTP receiver for tests: decodes what exporters post, as a Collector would."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from _loopback import LoopbackServer


class Receiver(LoopbackServer):
    """Collects OTLP/HTTP protobuf posts by path."""

    def __init__(self) -> None:
        self.posts: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.posts.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def metrics(self) -> list[ExportMetricsServiceRequest]:
        return [ExportMetricsServiceRequest.FromString(b) for b in self.posts.get("/v1/metrics", [])]

    def companion_env(self, service: str, config: Path) -> dict[str, str]:
        """The environment of a companion exporting its own metrics here every 200 ms, with ``config`` its settings."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.url,
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_SERVICE_NAME": service,
            "DETWATCH_CONFIG": str(config),
        }

    def gauge_points(self, service: str, prefix: str) -> Iterator[tuple[str, str, dict[str, str], float]]:
        """``(name, unit, attributes, value)`` of ``service``'s gauge points named ``prefix...``, as received."""
        for request in self.metrics():
            for rm in request.resource_metrics:
                if {kv.key: kv.value.string_value for kv in rm.resource.attributes}["service.name"] != service:
                    continue
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name.startswith(prefix):
                            for point in metric.gauge.data_points:
                                attributes = {kv.key: kv.value.string_value for kv in point.attributes}
                                yield metric.name, metric.unit, attributes, point.as_double

    def traces(self) -> list[ExportTraceServiceRequest]:
        return [ExportTraceServiceRequest.FromString(b) for b in self.posts.get("/v1/traces", [])]

    def logs(self) -> list[ExportLogsServiceRequest]:
        return [ExportLogsServiceRequest.FromString(b) for b in self.posts.get("/v1/logs", [])]
