"""The real-component fixtures themselves work.

Every integration test leans on ``_components``; if starting, feeding or
querying the real store broke, these tests say so directly instead of through
a confusing failure in a dashboard or rule test.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from _components import VictoriaMetrics, binary

# Loopback must not go through a proxy taken from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_victoria_metrics_returns_an_imported_sample_from_an_instant_query() -> None:
    timestamp_ms = time.time_ns() // 1_000_000
    with VictoriaMetrics() as vm:
        vm.import_prometheus(f'detwatch_fixture_probe{{model="vehicles",arm="b"}} 42.5 {timestamp_ms}\n')
        vm.flush()

        # No explicit time: querying "now" right after ingest must see it.
        result = vm.query("detwatch_fixture_probe")

        assert result == [
            {
                "metric": {
                    "__name__": "detwatch_fixture_probe",
                    "model": "vehicles",
                    "arm": "b",
                },
                "value": [pytest.approx(time.time(), abs=5), "42.5"],
            }
        ]
        assert vm.series("detwatch_fixture_probe") == [
            {"__name__": "detwatch_fixture_probe", "model": "vehicles", "arm": "b"}
        ]
        assert vm.label_values("model") == ["vehicles"]


def test_victoria_metrics_stops_listening_on_exit() -> None:
    with VictoriaMetrics() as vm:
        health = f"{vm.url}/health"
        with _NO_PROXY.open(health, timeout=5) as response:
            assert response.status == 200

    with pytest.raises(OSError):
        _NO_PROXY.open(health, timeout=1)


def test_missing_binary_error_names_the_fetch_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DETWATCH_COMPONENTS_DIR", str(tmp_path))

    with pytest.raises(RuntimeError, match="scripts/fetch-components"):
        binary("victoria-metrics")
