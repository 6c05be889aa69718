"""The Collector configuration and compose file, checked structurally (no Collector binary here).

Every component a pipeline names must be declared, and its type must ship in the
``otelcol-contrib`` distribution the compose file runs; the endpoints must agree with
the store, Tempo and the companion of the same compose file; and the prediction
events must reach a route the real companion serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from _components import REPO_ROOT
from detwatch.alerting.collector import COLLECTOR_IMAGE
from detwatch.app import create_app
from detwatch.config import Settings

COLLECTOR = yaml.safe_load((REPO_ROOT / "collector" / "otelcol.yaml").read_text())
COMPOSE = yaml.safe_load((REPO_ROOT / "collector" / "compose.yaml").read_text())

# Component types of otelcol-contrib 0.136.0 that this configuration may use, with the
# Go module each comes from (open-telemetry/opentelemetry-collector-releases,
# distributions/otelcol-contrib/manifest.yaml). A type missing here is not in the image.
_CONTRIB_GO: Final = "github.com/open-telemetry/opentelemetry-collector-contrib"
CONTRIB: dict[str, dict[str, str]] = {
    "receivers": {"otlp": "go.opentelemetry.io/collector/receiver/otlpreceiver"},
    "processors": {
        "batch": "go.opentelemetry.io/collector/processor/batchprocessor",
        "memory_limiter": "go.opentelemetry.io/collector/processor/memorylimiterprocessor",
        "deltatocumulative": f"{_CONTRIB_GO}/processor/deltatocumulativeprocessor",
        "filter": f"{_CONTRIB_GO}/processor/filterprocessor",
        "transform": f"{_CONTRIB_GO}/processor/transformprocessor",
    },
    "exporters": {
        "otlp": "go.opentelemetry.io/collector/exporter/otlpexporter",
        "otlphttp": "go.opentelemetry.io/collector/exporter/otlphttpexporter",
        "prometheusremotewrite": f"{_CONTRIB_GO}/exporter/prometheusremotewriteexporter",
        "loadbalancing": f"{_CONTRIB_GO}/exporter/loadbalancingexporter",
    },
    "extensions": {
        "health_check": f"{_CONTRIB_GO}/extension/healthcheckextension",
        "file_storage": f"{_CONTRIB_GO}/extension/storage/filestorage",
    },
}


def component_type(name: str) -> str:
    return name.split("/", 1)[0]


def test_every_pipeline_component_is_declared_and_ships_in_otelcol_contrib() -> None:
    assert COLLECTOR_IMAGE.startswith("otel/opentelemetry-collector-contrib:0.136")
    service = COLLECTOR["service"]
    for kind in ("receivers", "processors", "exporters"):
        for name in COLLECTOR[kind]:
            assert component_type(name) in CONTRIB[kind], f"{kind}: {name} is not in otelcol-contrib"
    for name in service["extensions"]:
        assert name in COLLECTOR["extensions"] and component_type(name) in CONTRIB["extensions"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline in service["pipelines"].values():
        for kind, names in used.items():
            for name in pipeline[kind]:
                assert name in COLLECTOR[kind], f"{name} is used but not declared"
                names.add(name)
    for kind, names in used.items():
        assert names == set(COLLECTOR[kind]), f"declared but unused {kind}: {set(COLLECTOR[kind]) - names}"


def test_pipelines_limit_memory_first_batch_last_and_send_each_signal_where_it_belongs() -> None:
    pipelines = COLLECTOR["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces", "logs"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"][0] == "memory_limiter"
        assert component_type(pipeline["processors"][-1]) == "batch"
    exporters = COLLECTOR["exporters"]
    for name in exporters:
        assert exporters[name]["retry_on_failure"]["enabled"] is True
        assert exporters[name]["sending_queue"]["enabled"] is True
    (metrics,) = pipelines["metrics"]["exporters"]
    (traces,) = pipelines["traces"]["exporters"]
    (logs,) = pipelines["logs"]["exporters"]
    assert "deltatocumulative" in pipelines["metrics"]["processors"]  # the store drops delta
    assert exporters[metrics]["metrics_endpoint"].endswith("/opentelemetry/v1/metrics")
    assert component_type(traces) == "otlp"
    assert exporters[logs]["logs_endpoint"].endswith("/v1/logs")
    # Prediction events survive restarts: their queue is on disk.
    storage = exporters[logs]["sending_queue"]["storage"]
    assert storage in COLLECTOR["service"]["extensions"]


def host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"grpc://{address}")
    assert parts.hostname is not None and parts.port is not None, address
    return parts.hostname, parts.port


def service_listens(service: dict[str, Any], port: int) -> bool:
    command = " ".join(service.get("command", []))
    return (
        f":{port}" in command
        or f"--port {port}" in command
        or any(p.endswith(f":{port}") for p in service.get("ports", []))
    )


def test_endpoints_match_the_compose_services() -> None:
    services = COMPOSE["services"]
    exporters = COLLECTOR["exporters"]
    pipelines = COLLECTOR["service"]["pipelines"]
    for pipeline in pipelines.values():
        (exporter,) = pipeline["exporters"]
        config = exporters[exporter]
        address = config.get("metrics_endpoint") or config.get("logs_endpoint") or config["endpoint"]
        host, port = host_port(address)
        assert host in services, f"{exporter} points at {host}, not a compose service"
        if host == "tempo":
            tempo = yaml.safe_load((REPO_ROOT / "collector" / "tempo.yaml").read_text())
            grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
            assert grpc.endswith(f":{port}")
        else:
            assert service_listens(services[host], port), f"{host} does not listen on {port}"
    collector = services["otel-collector"]
    assert "./otelcol.yaml:/etc/otelcol/config.yaml:ro" in collector["volumes"]
    assert {"4317:4317", "4318:4318"} <= set(collector["ports"])
    # vmalert loads the rules the companion generates in its data dir (detwatch.yaml's alerts and
    # those created through the API) and notifies the Alertmanager that loads the generated config.
    data_volume = next(v for v in services["detwatch"]["volumes"] if v.startswith("detwatch-data:"))
    data_dir = data_volume.split(":")[1]
    assert services["detwatch"]["environment"]["DETWATCH_DATA_DIR"] == data_dir
    assert f"detwatch-data:{data_dir}:ro" in services["vmalert"]["volumes"]
    assert f"-rule={data_dir}/generated/rules/detwatch.rules.yml" in services["vmalert"]["command"]
    assert any(v.startswith("../rules/alertmanager.yml:") for v in services["alertmanager"]["volumes"])
    for relative in ("../rules/detwatch.rules.yml", "../rules/alertmanager.yml", "./tempo.yaml", "./otelcol.yaml"):
        assert (REPO_ROOT / "collector" / relative).resolve().is_file(), relative


def test_prediction_events_go_to_a_route_the_companion_serves_with_the_token(tmp_path: Path) -> None:
    exporter = COLLECTOR["exporters"][COLLECTOR["service"]["pipelines"]["logs"]["exporters"][0]]
    path = urlsplit(exporter["logs_endpoint"]).path
    app = create_app(Settings(data_dir=tmp_path), {"TESTING": True})
    methods = {m for rule in app.url_map.iter_rules() if rule.rule == path for m in rule.methods or ()}
    assert "POST" in methods, f"the companion serves no POST {path}"
    assert exporter["headers"]["Authorization"] == "Bearer ${env:DETWATCH_API_TOKEN}"
    assert "DETWATCH_API_TOKEN" in COMPOSE["services"]["otel-collector"]["environment"]
    assert "DETWATCH_API_TOKEN" in COMPOSE["services"]["detwatch"]["environment"]
