"""Where the parts of the user's stack live: the addresses generated files point at.

Read from the ``stack:`` section of ``detwatch.yaml``; every key is optional and the
defaults are the service names of ``collector/compose.yaml``, so the generated files
work unchanged in that compose stack. Unknown keys are refused by name, since a typo
here would otherwise produce a config that silently points nowhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["StackSettings", "StackSettingsError", "parse_stack"]


class StackSettingsError(ValueError):
    """A ``stack:`` setting is invalid; the message names it."""


@dataclass(frozen=True)
class StackSettings:
    """Addresses and names the generated configuration shares."""

    store_url: str = "http://victoriametrics:8428"
    """The Prometheus-compatible store: Grafana's datasource, the Collector's metrics target."""
    store_otlp_metrics_url: str = "http://victoriametrics:8428/opentelemetry/v1/metrics"
    """Where the Collector posts OTLP metrics (VictoriaMetrics' OTLP/HTTP ingest path)."""
    tempo_url: str = "http://tempo:3200"
    """Tempo's query API: Grafana's traces datasource."""
    tempo_otlp_endpoint: str = "tempo:4317"
    """Tempo's OTLP/gRPC receiver: the Collector's traces target."""
    companion_url: str = "http://detwatch:8000"
    """The detwatch companion: prediction events go to ``<companion_url>/v1/logs``."""
    alertmanager_url: str = "http://alertmanager:9093"
    grafana_url: str = "http://grafana:3000"
    datasource_uid: str = "detwatch-prometheus"
    tempo_datasource_uid: str = "detwatch-tempo"
    grafana_folder: str = "detwatch"
    dashboards_path: str = "/var/lib/grafana/dashboards/detwatch"
    """Where Grafana's container sees ``grafana/dashboards`` (the dashboard provider's path)."""
    evaluation_interval: str = "1m"
    smtp_smarthost: str = "smtp.example.com:587"
    smtp_from: str = "detwatch@example.com"
    slack_api_url_file: str = "/etc/alertmanager/secrets/slack-webhook-url"
    """Alertmanager reads the Slack webhook URL from this file: no secret in a committed file."""


def parse_stack(data: Any) -> StackSettings:
    """Validate the ``stack:`` section (None: all defaults)."""
    if data is None:
        return StackSettings()
    if not isinstance(data, Mapping):
        raise StackSettingsError("stack: expected a mapping of settings")
    names = {f.name for f in dataclasses.fields(StackSettings)}
    values: dict[str, str] = {}
    for key, value in data.items():
        if key not in names:
            raise StackSettingsError(f"stack.{key}: unknown setting; valid settings: {', '.join(sorted(names))}")
        if not isinstance(value, str) or not value:
            raise StackSettingsError(f"stack.{key}: expected a non-empty string, got {value!r}")
        values[key] = value
    return StackSettings(**values)
