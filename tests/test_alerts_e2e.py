"""End to end: decorator -> VictoriaMetrics -> vmalert (generated rules) -> Alertmanager -> Slack.

Everything but Slack is the real component: the real decorator records through the
real SDK and OTLP/HTTP exporter into VictoriaMetrics; vmalert evaluates the rule file
that :mod:`detwatch.alerting.rules` generates for the seed's "Low Confidence Alert"; Debian's
Alertmanager routes it with the generated configuration to a Slack-compatible
receiver served by this test, whose payload must name the model and the threshold.

Two controls keep the test honest: the same alert defined for a second model fed
high confidences, and the seed's latency alert on fast calls, must both stay quiet.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _components import Alertmanager, VictoriaMetrics, VMAlert, free_port
from _loopback import LoopbackServer
from _stream import cumulative_provider, run_calls
from detwatch.alerting import rules
from detwatch.alerting.definitions import parse_alerts
from detwatch.alerting.rules import AlertmanagerOptions, render_yaml
from detwatch.alerting.stack import StackSettings
from detwatch_instrumentation import monitor_detections

SEED_CONDITION = {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"}
DEFINITIONS: list[dict[str, Any]] = [
    # The seed's alert as written, with no pending period so the test need not wait 5 minutes.
    {
        "name": "Low Confidence Alert",
        "model_id": "vehicles",
        "condition": {**SEED_CONDITION, "for": "0s"},
        "notify": ["email:team@company.com", "slack:#ml-alerts"],
    },
    {
        "name": "Trucks Low Confidence",
        "model_id": "trucks",
        "condition": {**SEED_CONDITION, "for": "0s"},
        "notify": ["slack:#ml-alerts"],
    },
    {
        "name": "High Latency Alert",
        "model_id": "vehicles",
        "condition": {"metric": "p99_latency_ms", "operator": "gt", "threshold": 500, "window": "15m", "for": "0s"},
        "notify": ["slack:#ml-alerts"],
    },
]
DEADLINE_S = 45.0


class SlackReceiver(LoopbackServer):
    """A Slack-compatible incoming webhook on loopback: records each JSON payload."""

    def __init__(self) -> None:
        self.payloads: queue.Queue[dict[str, Any]] = queue.Queue()
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reports what matters."""

        super().__init__(Handler)
        self.url += "/services/T000/B000/XXXX"


@pytest.fixture
def store() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as vm:
        yield vm


def emit_stream(store: VictoriaMetrics, model_id: str, low: float, high: float, calls: int, seed: int) -> list[float]:
    """Run the real decorator over ``calls`` images; returns the confidences it saw."""
    provider = cumulative_provider(store.otlp_metrics_url, f"detwatch-e2e-{model_id}")
    rng = np.random.default_rng(seed)
    seen: list[float] = []

    @monitor_detections(model_id=model_id, model_version="v2", meter_provider=provider)
    def predict(image: Any) -> list[dict[str, Any]]:
        confidences = [float(rng.uniform(low, high)) for _ in range(3)]
        seen.extend(confidences)
        return [{"class": "car", "confidence": c, "box": [0.0, 0.0, 32.0, 32.0]} for c in confidences]

    image = np.zeros((64, 64, 3), dtype=np.uint8)
    run_calls(provider, [lambda: predict(image)], [lambda: predict(image)] * (calls - 1))
    provider.shutdown()
    return seen


def test_low_confidence_stream_reaches_slack_through_vmalert_and_alertmanager(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    alerts = parse_alerts(DEFINITIONS)
    stack = StackSettings(evaluation_interval="1s")
    rule_file = tmp_path / rules.RULES_FILE
    rule_file.write_text(render_yaml(rules.rule_groups(alerts, stack)))

    low = emit_stream(store, "vehicles", 0.3, 0.6, calls=40, seed=1)
    high = emit_stream(store, "trucks", 0.8, 0.99, calls=40, seed=2)
    assert float(np.mean(low)) < 0.7 < float(np.mean(high))  # the premise, computed from what was emitted
    store.flush()

    with SlackReceiver() as slack:
        options = AlertmanagerOptions(
            slack_api_url=slack.url,
            smtp_smarthost=f"127.0.0.1:{free_port()}",  # nothing listens: email fails, Slack must not
            group_wait="1s",
            group_interval="1s",
        )
        config = render_yaml(rules.alertmanager_config(alerts, stack, options))
        with (
            Alertmanager(config=config) as alertmanager,
            VMAlert(rules=[rule_file], datasource_url=store.url, notifier_url=alertmanager.url) as vmalert,
        ):
            deadline = time.monotonic() + DEADLINE_S
            payload: dict[str, Any] | None = None
            while payload is None and time.monotonic() < deadline:
                try:
                    candidate = slack.payloads.get(timeout=0.5)
                except queue.Empty:
                    # What vmalert writes back (the recording rule) reaches search only after
                    # VictoriaMetrics' in-memory buffer is flushed (about ten seconds by itself).
                    store.flush()
                    continue
                if "FIRING" in candidate["attachments"][0]["title"]:
                    payload = candidate
            assert payload is not None, f"no Slack message within {DEADLINE_S:g} s\n{vmalert.log}\n{alertmanager.log}"
            firing = {
                (a["name"], a["labels"].get("objdet_model_id")) for a in vmalert.alerts() if a["state"] == "firing"
            }
            # Alertmanager batches: wait one more group interval for anything else it sends.
            time.sleep(1.5)
            others = []
            while not slack.payloads.empty():
                others.append(slack.payloads.get_nowait())

    attachment = payload["attachments"][0]
    assert payload["channel"] == "#ml-alerts"
    assert attachment["title"] == "[FIRING] LowConfidenceAlert (vehicles)"
    assert "model vehicles" in attachment["text"]
    assert "avg_confidence < 0.7 over 1h" in attachment["text"]
    assert firing == {("LowConfidenceAlert", "vehicles")}
    for other in others:
        assert "LowConfidenceAlert (vehicles)" in other["attachments"][0]["title"], other
    # The recording rule vmalert wrote back holds the mean the decorator saw.
    recorded = store.query('detwatch:avg_confidence:1h{detwatch_alert="low-confidence-alert"}')
    assert len(recorded) == 1
    assert float(recorded[0]["value"][1]) == pytest.approx(float(np.mean(low)), rel=1e-9)
