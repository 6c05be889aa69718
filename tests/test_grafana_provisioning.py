"""The committed Grafana files conform to Grafana's format, as the SDK's typed models define it.

Grafana itself cannot run here, so each object is decoded with
``grafana-foundation-sdk``'s models (generated from Grafana's own schemas) and encoded
again: a field the schema does not know, or a value of the wrong type, does not
survive the round trip. On top, the references Grafana resolves at load time are
checked: datasource uids, rule conditions, contact points named by the policy tree,
and the dashboard provider's path against the compose mount.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model
from grafana_foundation_sdk.models import dashboard as dashboard_model

from _components import REPO_ROOT
from detwatch.alerting.generate import load_config

GRAFANA = REPO_ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTING = yaml.safe_load((GRAFANA / "provisioning" / "alerting" / "detwatch.yaml").read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "detwatch.yaml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "detwatch.yaml").read_text())
COMPOSE = yaml.safe_load((REPO_ROOT / "collector" / "compose.yaml").read_text())
CONFIG = load_config(REPO_ROOT / "detwatch.yaml")
DATASOURCE_UIDS = {d["uid"] for d in DATASOURCES["datasources"]}


def round_trip(model: Any, data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(model.from_json(data), cls=JSONEncoder))


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_matches_grafanas_dashboard_schema(path: Path) -> None:
    data = json.loads(path.read_text())
    assert round_trip(dashboard_model.Dashboard, data) == data
    assert data["uid"] == f"detwatch-{path.stem}" and len(data["uid"]) <= 40
    assert [v["name"] for v in data["templating"]["list"]] == ["model", "version", "arm"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        assert panel["type"] in {"timeseries", "heatmap", "stat"}
        assert panel["datasource"]["uid"] in DATASOURCE_UIDS
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in DATASOURCE_UIDS and target["expr"]
    for variable in data["templating"]["list"]:
        assert variable["datasource"]["uid"] in DATASOURCE_UIDS


def test_latency_panels_carry_exemplars_and_the_datasource_links_them_to_tempo() -> None:
    overview = json.loads((GRAFANA / "dashboards" / "overview.json").read_text())
    (latency,) = [p for p in overview["panels"] if p["title"].startswith("Latency")]
    assert all(t["exemplar"] for t in latency["targets"])
    prometheus = next(d for d in DATASOURCES["datasources"] if d["type"] == "prometheus")
    tempo = next(d for d in DATASOURCES["datasources"] if d["type"] == "tempo")
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert link["datasourceUid"] == tempo["uid"]


def test_alert_rules_match_grafanas_provisioning_schema() -> None:
    assert ALERTING["apiVersion"] == 1
    (group,) = ALERTING["groups"]
    rules = group["rules"]
    assert [r["title"] for r in rules] == [a.name for a in CONFIG.alerts]
    uids = [r["uid"] for r in rules]
    assert len(uids) == len(set(uids)) and all(len(u) <= 40 for u in uids)
    for rule in rules:
        api_shape = {**rule, "folderUID": group["folder"], "orgID": group["orgId"], "ruleGroup": group["name"]}
        assert round_trip(alerting_model.Rule, api_shape) == api_shape
        ref_ids = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in ref_ids
        for step in rule["data"]:
            assert round_trip(alerting_model.Query, step) == step
            assert step["datasourceUid"] in DATASOURCE_UIDS | {"__expr__"}
            if step["datasourceUid"] == "__expr__":
                refs = {word.lstrip("$") for word in str(step["model"]["expression"]).split()}
                assert refs & ref_ids, step  # math/reduce read an earlier step
        assert rule["noDataState"] == "OK" and rule["labels"]["detwatch_alert"]


def test_contact_points_and_policies_route_each_alert_to_its_targets() -> None:
    points = {cp["name"]: cp for cp in ALERTING["contactPoints"]}
    for cp in points.values():
        for receiver in cp["receivers"]:
            api_shape = {**receiver, "name": cp["name"]}
            assert round_trip(alerting_model.ContactPoint, api_shape) == api_shape
            settings = receiver["settings"]
            required = {"email": {"addresses"}, "slack": {"recipient", "url"}, "webhook": {"url"}}[receiver["type"]]
            assert required <= set(settings), receiver
    (policy,) = ALERTING["policies"]
    assert round_trip(alerting_model.NotificationPolicy, {k: v for k, v in policy.items() if k != "orgId"}) == {
        k: v for k, v in policy.items() if k != "orgId"
    }
    for alert in CONFIG.alerts:
        rule = next(r for r in ALERTING["groups"][0]["rules"] if r["title"] == alert.name)
        matched = [
            route["receiver"]
            for route in policy["routes"]
            if all(rule["labels"].get(name) == value for name, op, value in route["object_matchers"] if op == "=")
        ]
        if not alert.notify:
            assert matched == []  # the root's default contact point
            continue
        (receiver,) = matched
        targets = set()
        for integration in points[receiver]["receivers"]:
            settings = integration["settings"]
            address = settings.get("addresses") or settings.get("recipient") or settings.get("url")
            targets.add(f"{integration['type']}:{address}")
        assert targets == {str(t) for t in alert.notify}
    seed = points["detwatch-low-confidence-alert"]["receivers"]
    assert {r["type"] for r in seed} == {"email", "slack"}
    assert next(r for r in seed if r["type"] == "slack")["settings"]["url"] == "${DETWATCH_SLACK_WEBHOOK_URL}"


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    (provider,) = PROVIDERS["providers"]
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    prometheus = next(d for d in DATASOURCES["datasources"] if d["type"] == "prometheus")
    host_port = prometheus["url"].removeprefix("http://")
    host, port = host_port.split(":")
    assert host in COMPOSE["services"]
    assert f"-httpListenAddr=:{port}" in COMPOSE["services"][host]["command"]


def test_the_round_trip_rejects_what_grafanas_schema_does_not_know() -> None:
    """The check above is not vacuous: an unknown field or a misspelt key does not survive."""
    data = json.loads(DASHBOARDS[0].read_text())
    assert round_trip(dashboard_model.Dashboard, {**data, "panelz": []}) != {**data, "panelz": []}
    rule = ALERTING["groups"][0]["rules"][0]
    misspelt = {k if k != "noDataState" else "noDataStat": v for k, v in rule.items()}
    misspelt |= {"folderUID": "f", "orgID": 1, "ruleGroup": "g"}
    assert round_trip(alerting_model.Rule, misspelt) != misspelt
