"""OpenTelemetry Collector configuration for detwatch, and a compose file for the whole stack.

The pipeline DESIGN.md draws: OTLP in (gRPC 4317, HTTP 4318); every pipeline starts
with ``memory_limiter`` (it must see data first to refuse it under pressure) and ends
with ``batch``; then

- metrics -> the Prometheus-compatible store over OTLP/HTTP (VictoriaMetrics'
  ``/opentelemetry/v1/metrics``). ``deltatocumulative`` first, because the store
  silently drops delta temporality;
- traces -> Tempo over OTLP/gRPC;
- logs (the ``objdet.prediction`` events) -> the companion's ``/v1/logs`` over
  OTLP/HTTP with the bearer token, through a persistent queue (``file_storage``) so
  that events survive a Collector restart or a companion outage. Other log records
  reach the companion too, which skips everything but ``objdet.prediction``; no filter
  here, because the OTTL path of a record's ``event_name`` differs between Collector
  versions and a wrong one would drop every event.

Every exporter retries with backoff and has a sending queue. Components are from the
``otelcol-contrib`` distribution. The compose file runs the Collector, VictoriaMetrics,
vmalert (the generated rules), Alertmanager, Tempo, Grafana (with ``grafana/`` mounted)
and the companion, with the addresses of :class:`~detwatch.alerting.stack.StackSettings`.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from detwatch.alerting.rules import RULES_FILE
from detwatch.alerting.stack import StackSettings

__all__ = [
    "ALERTMANAGER_IMAGE",
    "COLLECTOR_IMAGE",
    "COMPANION_IMAGE",
    "DATA_DIR",
    "GRAFANA_IMAGE",
    "INIT_IMAGE",
    "TEMPO_IMAGE",
    "VICTORIAMETRICS_IMAGE",
    "VMALERT_IMAGE",
    "collector_config",
    "compose_file",
    "tempo_config",
]

COLLECTOR_IMAGE: Final = "otel/opentelemetry-collector-contrib:0.136.0"
VICTORIAMETRICS_IMAGE: Final = "victoriametrics/victoria-metrics:v1.112.0"
VMALERT_IMAGE: Final = "victoriametrics/vmalert:v1.112.0"
ALERTMANAGER_IMAGE: Final = "prom/alertmanager:v0.28.1"
TEMPO_IMAGE: Final = "grafana/tempo:2.7.2"
GRAFANA_IMAGE: Final = "grafana/grafana:11.6.0"
COMPANION_IMAGE: Final = "detwatch-companion:local"
"""The image compose builds from ``companion.Dockerfile`` (pinned dependencies, built once)."""
INIT_IMAGE: Final = "busybox:1.37"
COLLECTOR_UID: Final = "10001:10001"
"""The user the Collector image runs as: its queue volume must be writable by it."""
DATA_DIR: Final = "/var/lib/detwatch"
"""The companion's data dir in its container; vmalert reads the alert rules generated there."""

_RETRY: Final = {"enabled": True, "initial_interval": "5s", "max_interval": "30s", "max_elapsed_time": "300s"}


def _queue(size: int, storage: str | None = None) -> dict[str, Any]:
    queue: dict[str, Any] = {"enabled": True, "num_consumers": 4, "queue_size": size}
    if storage is not None:
        queue["storage"] = storage
    return queue


def collector_config(stack: StackSettings) -> dict[str, Any]:
    """The Collector's ``config.yaml``."""
    return {
        "extensions": {
            "health_check": {"endpoint": "0.0.0.0:13133"},
            "file_storage/queue": {"directory": "/var/lib/otelcol/queue", "create_directory": True},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "0.0.0.0:4317"},
                    "http": {"endpoint": "0.0.0.0:4318"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "deltatocumulative": {},
            "batch": {"send_batch_size": 8192, "send_batch_max_size": 16384, "timeout": "5s"},
            # Prediction events feed feedback joins and review queues: keep them prompt.
            "batch/events": {"send_batch_size": 512, "send_batch_max_size": 2048, "timeout": "1s"},
        },
        "exporters": {
            "otlphttp/metrics": {
                "metrics_endpoint": stack.store_otlp_metrics_url,
                "compression": "gzip",
                "retry_on_failure": _RETRY,
                "sending_queue": _queue(1000),
            },
            "otlp/tempo": {
                "endpoint": stack.tempo_otlp_endpoint,
                "tls": {"insecure": True},
                "retry_on_failure": _RETRY,
                "sending_queue": _queue(1000),
            },
            "otlphttp/companion": {
                "logs_endpoint": f"{stack.companion_url.rstrip('/')}/v1/logs",
                "headers": {"Authorization": "Bearer ${env:DETWATCH_API_TOKEN}"},
                "compression": "gzip",
                "retry_on_failure": _RETRY,
                "sending_queue": _queue(5000, storage="file_storage/queue"),
            },
        },
        "service": {
            "extensions": ["health_check", "file_storage/queue"],
            "pipelines": {
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "deltatocumulative", "batch"],
                    "exporters": ["otlphttp/metrics"],
                },
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["otlp/tempo"],
                },
                "logs": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch/events"],
                    "exporters": ["otlphttp/companion"],
                },
            },
        },
    }


def tempo_config() -> dict[str, Any]:
    """A single-binary Tempo: OTLP/gRPC in, local block storage."""
    return {
        "server": {"http_listen_port": 3200},
        "distributor": {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}}},
        "storage": {
            "trace": {"backend": "local", "local": {"path": "/var/tempo/blocks"}, "wal": {"path": "/var/tempo/wal"}}
        },
    }


def _port(url: str) -> int:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.port is None:
        raise ValueError(f"stack: {url!r} needs an explicit port")
    return parts.port


def compose_file(stack: StackSettings) -> dict[str, Any]:
    """``docker compose`` for the whole stack; run from ``collector/`` (paths are relative to it)."""
    store_port = _port(stack.store_url)
    return {
        "name": "detwatch",
        "services": {
            # A new named volume belongs to root; the Collector runs as 10001 and its
            # persistent queue (file_storage) would fail with "permission denied".
            "otelcol-queue-owner": {
                "image": INIT_IMAGE,
                "command": ["chown", "-R", COLLECTOR_UID, "/var/lib/otelcol/queue"],
                "volumes": ["otelcol-queue:/var/lib/otelcol/queue"],
            },
            "otel-collector": {
                "image": COLLECTOR_IMAGE,
                "command": ["--config=/etc/otelcol/config.yaml"],
                "volumes": ["./otelcol.yaml:/etc/otelcol/config.yaml:ro", "otelcol-queue:/var/lib/otelcol/queue"],
                "environment": {"DETWATCH_API_TOKEN": "${DETWATCH_API_TOKEN:?set DETWATCH_API_TOKEN}"},
                "ports": ["4317:4317", "4318:4318"],
                "depends_on": {
                    "otelcol-queue-owner": {"condition": "service_completed_successfully"},
                    "victoriametrics": {"condition": "service_started"},
                    "tempo": {"condition": "service_started"},
                    "detwatch": {"condition": "service_started"},
                },
            },
            "victoriametrics": {
                "image": VICTORIAMETRICS_IMAGE,
                "command": [
                    "-opentelemetry.usePrometheusNaming",
                    "-retentionPeriod=90d",
                    f"-httpListenAddr=:{store_port}",
                    "-storageDataPath=/storage",
                ],
                "volumes": ["vm-data:/storage"],
                "ports": [f"{store_port}:{store_port}"],
            },
            # The rules the companion generates (detwatch.yaml's alerts and those created through
            # the API), re-read when they change.
            "vmalert": {
                "image": VMALERT_IMAGE,
                "command": [
                    f"-rule={DATA_DIR}/generated/rules/{RULES_FILE}",
                    "-configCheckInterval=30s",
                    f"-datasource.url={stack.store_url}",
                    f"-remoteWrite.url={stack.store_url}",
                    f"-remoteRead.url={stack.store_url}",
                    f"-notifier.url={stack.alertmanager_url}",
                    f"-evaluationInterval={stack.evaluation_interval}",
                ],
                "volumes": [f"detwatch-data:{DATA_DIR}:ro"],
                "depends_on": {
                    "victoriametrics": {"condition": "service_started"},
                    "alertmanager": {"condition": "service_started"},
                    "detwatch": {"condition": "service_healthy"},
                },
            },
            "alertmanager": {
                "image": ALERTMANAGER_IMAGE,
                "command": ["--config.file=/etc/alertmanager/alertmanager.yml"],
                "volumes": [
                    "../rules/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro",
                    f"./secrets/slack-webhook-url:{stack.slack_api_url_file}:ro",
                ],
                "ports": [f"{_port(stack.alertmanager_url)}:{_port(stack.alertmanager_url)}"],
            },
            "tempo": {
                "image": TEMPO_IMAGE,
                "command": ["-config.file=/etc/tempo.yaml"],
                "volumes": ["./tempo.yaml:/etc/tempo.yaml:ro", "tempo-data:/var/tempo"],
            },
            "grafana": {
                "image": GRAFANA_IMAGE,
                "environment": {
                    "GF_AUTH_ANONYMOUS_ENABLED": "false",
                    "DETWATCH_SLACK_WEBHOOK_URL": "${DETWATCH_SLACK_WEBHOOK_URL:-}",
                },
                "volumes": [
                    "../grafana/provisioning:/etc/grafana/provisioning:ro",
                    f"../grafana/dashboards:{stack.dashboards_path}:ro",
                ],
                "ports": [f"{_port(stack.grafana_url)}:{_port(stack.grafana_url)}"],
                "depends_on": ["victoriametrics", "tempo"],
            },
            "detwatch": {
                "build": {"context": "..", "dockerfile": "collector/companion.Dockerfile"},
                "image": COMPANION_IMAGE,
                "command": ["detwatch", "serve", "--host", "0.0.0.0", "--port", str(_port(stack.companion_url))],
                "environment": {
                    "DETWATCH_API_TOKEN": "${DETWATCH_API_TOKEN:?set DETWATCH_API_TOKEN}",
                    "DETWATCH_DATA_DIR": DATA_DIR,
                    # create_alert pushes the Grafana alerting objects with a service-account token.
                    "DETWATCH_GRAFANA_URL": stack.grafana_url,
                    "DETWATCH_GRAFANA_TOKEN": "${DETWATCH_GRAFANA_TOKEN:-}",
                    # The companion's own metrics (feedback, review, drift scores) through the
                    # Collector to the store; its log records are not prediction events.
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
                    "OTEL_LOGS_EXPORTER": "none",
                    "OTEL_SERVICE_NAME": "detwatch-companion",
                },
                "volumes": ["../detwatch.yaml:/srv/detwatch/detwatch.yaml:ro", f"detwatch-data:{DATA_DIR}"],
                "working_dir": "/srv/detwatch",
                "ports": [f"{_port(stack.companion_url)}:{_port(stack.companion_url)}"],
                "healthcheck": {
                    "test": [
                        "CMD",
                        "python",
                        "-c",
                        "import urllib.request; urllib.request.urlopen("
                        f"'http://127.0.0.1:{_port(stack.companion_url)}/readyz', timeout=2)",
                    ],
                    "interval": "10s",
                    "timeout": "3s",
                    "retries": 12,
                },
            },
        },
        "volumes": {"otelcol-queue": {}, "vm-data": {}, "tempo-data": {}, "detwatch-data": {}},
    }
