"""The compose stack shows what the user guide configures: the companion's metrics reach the store, an
alert created through the API is evaluated by vmalert, and the companion image is built once.

Docker is not run here: the wiring the compose file declares is reproduced with the real
components on loopback (the companion under gunicorn, VictoriaMetrics, vmalert), each
given what its compose service is given (the same variables, the same rule path under
the same data dir), and the image's recipe is checked against the lock file.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import detwatch
from _components import REPO_ROOT, VictoriaMetrics, VMAlert
from _service import Companion
from detwatch.alerting import collector as collector_config
from detwatch.alerting import promql
from detwatch_instrumentation import semconv

COMPOSE = yaml.safe_load((REPO_ROOT / "collector" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
TOKEN = "stack-token"


def _lock_module() -> Any:
    loader = importlib.machinery.SourceFileLoader("lock_companion", str(REPO_ROOT / "scripts" / "lock-companion"))
    spec = importlib.util.spec_from_loader("lock_companion", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_companion_image_is_built_once_from_pinned_dependencies() -> None:
    companion = SERVICES["detwatch"]
    assert companion["build"] == {"context": "..", "dockerfile": "collector/companion.Dockerfile"}
    assert "pip" not in " ".join(companion["command"])  # nothing installed when a container starts
    dockerfile = (REPO_ROOT / "collector" / "companion.Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps -r /tmp/companion-requirements.txt" in dockerfile
    assert "--no-deps --no-build-isolation ./instrumentation ." in dockerfile
    pins: dict[str, str] = {}
    for line in (REPO_ROOT / "collector" / "companion-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not pinned: {line}"
            pins[name] = version
    # Every runtime dependency of the companion, transitively, is pinned (the versions are the
    # lock's: scripts/lock-companion writes them from the project's environment).
    needed = set(_lock_module().closure("detwatch"))
    assert needed <= set(pins), f"missing from the lock: {sorted(needed - set(pins))}"
    assert not {"pytest", "mypy", "supervision", "statsmodels", "pgserver"} & set(pins)  # test tools stay out


def test_the_collectors_queue_volume_is_made_writable_for_the_collectors_user() -> None:
    collector = SERVICES["otel-collector"]
    owner = SERVICES["otelcol-queue-owner"]
    queue_volume = next(v for v in collector["volumes"] if v.startswith("otelcol-queue:"))
    assert queue_volume in owner["volumes"]
    assert owner["command"] == ["chown", "-R", collector_config.COLLECTOR_UID, queue_volume.split(":")[1]]
    assert collector["depends_on"]["otelcol-queue-owner"] == {"condition": "service_completed_successfully"}


class ReloadingVMAlert(VMAlert):
    """vmalert as the compose stack runs it: it re-reads its rule file when the file changes."""

    def command(self, port: int) -> list[str]:
        interval = next(a for a in SERVICES["vmalert"]["command"] if a.startswith("-configCheckInterval="))
        assert interval  # the compose service reloads; here faster, so the test need not wait 30 s
        return [*super().command(port), "-configCheckInterval=1s"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Companion, VictoriaMetrics, Path]]:
    with VictoriaMetrics() as store:
        environment = SERVICES["detwatch"]["environment"]
        env = {
            "DETWATCH_API_TOKEN": TOKEN,
            # The compose service's OTEL_* settings, with the Collector replaced by the store's own
            # OTLP receiver (the Collector forwards metrics there unchanged).
            "OTEL_LOGS_EXPORTER": environment["OTEL_LOGS_EXPORTER"],
            "OTEL_SERVICE_NAME": environment["OTEL_SERVICE_NAME"],
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": store.url,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{store.url}/opentelemetry/v1/metrics",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
        }
        companion = Companion(tmp_path / "data", workers=1, env=env)
        companion.start()
        try:
            yield companion, store, tmp_path / "data"
        finally:
            companion.stop()


def _query(store: VictoriaMetrics, promql_text: str) -> list[dict[str, Any]]:
    url = f"{store.url}/api/v1/query?query={urllib.parse.quote(promql_text)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result


def test_companion_metrics_reach_the_store_and_an_alert_created_through_the_api_is_evaluated(
    stack: tuple[Companion, VictoriaMetrics, Path],
) -> None:
    companion, store, data_dir = stack
    client = detwatch.Client(base_url=companion.url, token=TOKEN)
    client.register_model(model_id="vehicles", version="v2")
    client.send_feedback(type="wrong_label", prediction_id="p-1", corrected_class="truck")
    client.send_feedback(type="correct", prediction_id="p-2")

    feedback = promql.series_name(semconv.FEEDBACK)
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        store.flush()
        found = _query(store, f"sum({feedback})")
        time.sleep(0.5)
    assert found and float(found[0]["value"][1]) == 2

    # vmalert reads the rule file where the compose service does: <data dir>/generated/rules.
    relative = next(a for a in SERVICES["vmalert"]["command"] if a.startswith("-rule=")).removeprefix("-rule=")
    rule_file = data_dir / Path(relative).relative_to(collector_config.DATA_DIR)
    assert rule_file.is_file()  # written at start, so that vmalert can start before any alert exists
    with ReloadingVMAlert(rules=[rule_file], datasource_url=store.url, notifier_url=store.url) as vmalert:
        client.create_alert(
            model_id="vehicles",
            name="Low Confidence Alert",
            condition={"metric": "avg_confidence", "operator": "lt", "threshold": 0.72, "window": "1h"},
            notify=["slack:#ml-alerts"],
        )
        names: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "LowConfidenceAlert" not in names:
            with urllib.request.urlopen(f"{vmalert.url}/api/v1/rules", timeout=5) as response:
                groups = json.load(response)["data"]["groups"]
            names = {rule["name"] for group in groups for rule in group["rules"]}
            time.sleep(0.5)
    assert "LowConfidenceAlert" in names
