"""Alerts on the data dir: a read-only or full one, and what creating one more alert costs.

Alerts are rows in the database and their artifacts files under ``<data_dir>/generated``.
A data dir that cannot take writes answers 503 (retry later) and leaves nothing
half-written; creating an alert does work for that alert only, however many exist
(counted here, not timed: each definition is built and rendered once, and a stored row
is parsed again only when its revision changed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from _disk import small_disk
from detwatch.alerting import grafana as grafana_provisioning
from detwatch.alerting import rules
from detwatch.alerting.definitions import parse_alert
from detwatch.alerting.generate import GenerateConfig, load_config
from detwatch.api import alerts as alerts_api
from detwatch.app import create_app
from detwatch.config import Settings

REPO = Path(__file__).resolve().parents[1]


def body(i: int) -> dict[str, Any]:
    return {
        "name": f"Alert {i}",
        "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
        "notify": ["email:team@company.com", f"slack:#channel-{i % 3}"],
    }


def stray_files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith((".tmp", ".ready-"))]


@pytest.mark.parametrize("fault", ["read-only", "disk full"])
def test_an_alert_on_a_read_only_or_full_data_dir_is_a_503_and_leaves_no_stray_file(tmp_path: Path, fault: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data_dir = disk.path / "data"
        client = create_app(
            Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
        ).test_client()
        assert client.post("/v1/models/m/alerts", json=body(0)).status_code == 201
        if fault == "read-only":
            disk.read_only()
        else:
            disk.fill()
        answer = client.post("/v1/models/m/alerts", json=body(1))
        assert answer.status_code == 503, answer.get_json()
        assert answer.headers["Retry-After"].isdigit()
        error = answer.get_json()["error"]
        assert error["code"] == "storage_unavailable" and fault in error["message"], error
        assert str(tmp_path) not in error["message"], error  # the path is in the log, not in the answer
        assert stray_files(data_dir) == []
        if fault == "read-only":
            disk.writable()
        else:
            (disk.path / "filler").unlink()
        retried = client.post("/v1/models/m/alerts", json=body(1))
        assert retried.status_code in (200, 201), retried.get_json()
        listed = client.get("/v1/models/m/alerts").get_json()["alerts"]
        assert [a["name"] for a in listed] == ["Alert 0", "Alert 1"]
        assert stray_files(data_dir) == []


class Counts:
    """Calls of the per-alert work, counted by wrapping the functions that do it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        for module, name in (
            (rules, "recording_rule"),
            (rules, "alerting_rule"),
            (rules, "_firing_and_quiet"),
            (rules, "receiver_name"),
            (grafana_provisioning, "grafana_rules"),
            (grafana_provisioning, "contact_points"),
            (yaml, "dump"),  # every YAML rendering: a whole document or one alert's entry
            (alerts_api, "parse_alert"),  # every alert definition read and validated
        ):
            monkeypatch.setattr(module, name, self._counting(name, getattr(module, name)))

    def _counting(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return function(*args, **kwargs)

        return counted

    def during(self, action: Callable[[], None]) -> dict[str, int]:
        self.calls.clear()
        action()
        return dict(self.calls)


def test_creating_an_alert_costs_the_same_work_with_5_or_80_alerts_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = create_app(Settings(data_dir=tmp_path)).test_client()
    tag = uuid.uuid4().hex[:8]  # the per-alert caches are the process's: these definitions are new to them

    def create(i: int) -> Callable[[], None]:
        def post() -> None:
            answer = client.post("/v1/models/m/alerts", json={**body(i), "name": f"Alert {tag} {i}"})
            assert answer.status_code == 201, answer.get_json()

        return post

    for i in range(5):
        create(i)()
    counts = Counts(monkeypatch)
    sixth = counts.during(create(5))
    for i in range(6, 80):
        create(i)()
    eighty_first = counts.during(create(80))
    assert sixth == eighty_first, (sixth, eighty_first)
    assert sixth["recording_rule"] == sixth["alerting_rule"] == sixth["grafana_rules"] == 1, sixth
    assert sixth["parse_alert"] <= 2, sixth  # the request's body and the row it was stored in
    # The files: one rendering of each alert file's frame, and one per entry of the new alert.
    assert sixth["dump"] <= 4 + 10, sixth

    files = client.get("/v1/alerts/artifacts").get_json()["files"]
    assert files["rules/detwatch.rules.yml"].count("alert: Alert") == 81
    assert counts.during(lambda: client.get("/v1/alerts/artifacts").get_json()) == {}  # nothing changed: no work
    assert counts.during(lambda: client.get("/v1/models/m/alerts").get_json()) == {}


def test_files_rendered_entry_by_entry_are_the_files_rendered_whole() -> None:
    """The spliced rendering is byte for byte what PyYAML writes for the whole document."""
    metrics = ["avg_confidence", "p95_latency_ms", "low_confidence_rate", "throughput", "class_share:car"]
    definitions = []
    for i in range(12):
        metric = metrics[i % len(metrics)]
        condition: dict[str, Any] = {"metric": metric, "operator": ["lt", "gt", "lte", "gte"][i % 4], "window": "1h"}
        condition["threshold"] = {"p95_latency_ms": 250, "throughput": 5}.get(metric, 0.5)
        if i % 5 == 0 and metric in ("avg_confidence", "throughput"):
            condition["anomaly"] = {"method": "zscore", "baseline": "7d"}
            condition["threshold"] = 3
        notify = [["email:a@b.co"], ["slack:#x", "webhook:https://h.example/x"], []][i % 3]
        definition: dict[str, Any] = {"name": f"Whole {i}", "model_id": f"m{i % 4}", "condition": condition}
        definitions.append(parse_alert({**definition, "notify": notify, "per": "version" if i % 6 == 1 else "model"}))
    config = GenerateConfig(alerts=(*load_config(REPO / "detwatch.yaml").alerts, *definitions))

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: plain(value) for key, value in node.items()}
        if isinstance(node, list):
            return [plain(element) for element in node]
        return node

    stack = config.stack
    for data in (
        rules.rule_groups(config.alerts, stack),
        rules.rules_tests(config.alerts, stack),
        rules.alertmanager_config(config.alerts, stack),
        grafana_provisioning.alerting_file(config.alerts, stack),
    ):
        whole = yaml.dump(plain(data), Dumper=rules._Dumper, sort_keys=False, allow_unicode=True, width=1000)
        assert rules.render_yaml(data) == rules.GENERATED_HEADER + whole
        assert yaml.safe_load(rules.render_yaml(data)) == plain(data)
