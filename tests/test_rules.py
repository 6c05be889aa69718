"""The generated Prometheus rules pass the real promtool, and their unit tests mean something.

``promtool check rules`` and ``promtool test rules`` run on the committed files in
``rules/``; the generated unit tests must contain, for each seed alert, a case where
it fires (for its own model only) and one where it stays quiet, and they must fail
when the rule's threshold is wrong. Alertmanager's ``amtool`` checks the example
configuration and routes each alert to the receiver holding its ``notify`` targets.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from _components import REPO_ROOT, binary
from detwatch.alerting import rules
from detwatch.alerting.definitions import AlertDefinition, parse_alert
from detwatch.alerting.generate import load_config
from detwatch.alerting.rules import render_yaml
from detwatch.alerting.stack import StackSettings

RULES_DIR = REPO_ROOT / "rules"
CONFIG = load_config(REPO_ROOT / "detwatch.yaml")


def run(tool: str, *args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary(tool)), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_generated_rule_file() -> None:
    result = run("promtool", "check", "rules", rules.RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = 2 * len(CONFIG.alerts)  # one recording and one alerting rule each
    assert f"SUCCESS: {expected} rules found" in result.stdout


def test_promtool_unit_tests_pass_with_each_seed_alert_firing_and_quiet() -> None:
    result = run("promtool", "test", "rules", rules.RULES_TEST_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((RULES_DIR / rules.RULES_TEST_FILE).read_text())["tests"]
    for name in ("LowConfidenceAlert", "HighLatencyAlert"):
        cases = [c for c in tests if c["alert_rule_test"][0]["alertname"] == name]
        fired = [c for c in cases if c["alert_rule_test"][0]["exp_alerts"]]
        quiet = [c for c in cases if not c["alert_rule_test"][0]["exp_alerts"]]
        assert len(fired) == 1 and len(quiet) == 1, name
        (alert,) = fired[0]["alert_rule_test"][0]["exp_alerts"]
        assert alert["exp_labels"]["objdet_model_id"] == "vehicles"
        # The firing case also feeds another model the same values: it must not fire.
        models = {s["series"].split('objdet_model_id="')[1].split('"')[0] for s in fired[0]["input_series"]}
        assert models == {"vehicles", "vehicles-other"}
    # Every threshold alert of detwatch.yaml has its cases, not only the seed's (and an
    # estimated precision alert one more: quiet on an untrusted value).
    threshold_alerts = [a for a in CONFIG.alerts if a.anomaly is None]
    untrusted = [a for a in threshold_alerts if a.metric == "estimated_precision"]
    assert untrusted
    assert len(tests) == 2 * len(threshold_alerts) + len(untrusted)


def write_pair(tmp_path: Path, rule_alert: dict[str, Any], test_alert: dict[str, Any]) -> None:
    stack = StackSettings()
    (tmp_path / rules.RULES_FILE).write_text(render_yaml(rules.rule_groups([parse_alert(rule_alert)], stack)))
    tests = rules.rules_tests([parse_alert(test_alert)], stack)
    (tmp_path / rules.RULES_TEST_FILE).write_text(render_yaml(tests))


def promtool_tests(tmp_path: Path, definitions: list[AlertDefinition]) -> subprocess.CompletedProcess[str]:
    """The rules and their generated tests for ``definitions``, written to ``tmp_path`` and run by promtool."""
    stack = StackSettings()
    (tmp_path / rules.RULES_FILE).write_text(render_yaml(rules.rule_groups(definitions, stack)))
    (tmp_path / rules.RULES_TEST_FILE).write_text(render_yaml(rules.rules_tests(definitions, stack)))
    return run("promtool", "test", "rules", rules.RULES_TEST_FILE, cwd=tmp_path)


def test_promtool_unit_tests_fail_when_the_rule_threshold_is_wrong(tmp_path: Path) -> None:
    """The generated tests are not vacuous: rules with another threshold fail them."""
    seed: dict[str, Any] = {
        "name": "Low Confidence Alert",
        "model_id": "vehicles",
        "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
    }
    too_low = {**seed, "condition": {**seed["condition"], "threshold": 0.3}}
    write_pair(tmp_path, too_low, seed)
    result = run("promtool", "test", "rules", rules.RULES_TEST_FILE, cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    write_pair(tmp_path, seed, seed)
    result = run("promtool", "test", "rules", rules.RULES_TEST_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_kind_gets_passing_promtool_tests(tmp_path: Path) -> None:
    """Synthetic series for each metric family, each operator direction, per version and arm."""
    conditions = [
        ("p50_latency_ms", "lt", 10),
        ("p95_latency_ms", "gte", 100),
        ("low_confidence_rate", "gt", 0.2),
        ("no_detection_rate", "gte", 0.5),
        ("error_rate", "gt", 0.05),
        ("throughput", "lt", 5),
        ("class_share:person", "gt", 0.3),
        ("feedback_accuracy", "lte", 0.9),
        ("drift_score:confidence", "gt", 0.2),
        ("avg_confidence", "gte", 0.95),
        ("avg_confidence", "lt", 0.72),  # between confidence bounds: a mean is exact anywhere
        ("p99_latency_ms", "gt", 400),  # between latency bounds: read inside the 250-500 ms bucket
        ("p99_latency_ms", "lt", 3),  # between the first bounds
    ]
    definitions = []
    for index, (metric, operator, threshold) in enumerate(conditions):
        definitions.append(
            parse_alert(
                {
                    "name": f"Alert {index}",
                    "model_id": "m1",
                    "per": ("model", "version", "arm")[index % 3],
                    "condition": {
                        "metric": metric,
                        "operator": operator,
                        "threshold": threshold,
                        "window": "10m",
                        "for": "2m",
                    },
                }
            )
        )
    result = promtool_tests(tmp_path, definitions)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((tmp_path / rules.RULES_TEST_FILE).read_text())["tests"]
    assert len(tests) == 2 * len(conditions)


def test_alertmanager_example_is_valid_and_routes_each_alert_to_its_targets() -> None:
    result = run("amtool", "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((RULES_DIR / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    for alert in CONFIG.alerts:
        result = run(
            "amtool", "config", "routes", "test", "--config.file=alertmanager.yml",
            f"{rules.ALERT_LABEL}={alert.slug}", "objdet_model_id=vehicles",
        )  # fmt: skip
        routed = result.stdout.strip()
        if not alert.notify:
            assert routed == "detwatch-default"
            continue
        assert routed == f"detwatch-{alert.slug}"
        receiver = receivers[routed]
        targets = {f"email:{c['to']}" for c in receiver.get("email_configs", [])}
        targets |= {f"slack:{c['channel']}" for c in receiver.get("slack_configs", [])}
        targets |= {f"webhook:{c['url']}" for c in receiver.get("webhook_configs", [])}
        assert targets == {str(t) for t in alert.notify}
    seed = receivers["detwatch-low-confidence-alert"]
    assert seed["email_configs"][0]["to"] == "team@company.com"
    assert seed["slack_configs"][0]["channel"] == "#ml-alerts"


def test_vmalert_accepts_the_generated_rule_file(tmp_path: Path) -> None:
    """vmalert parses with MetricsQL, not Prometheus' parser: both must accept the file."""
    result = run("vmalert", "-dryRun", f"-rule={rules.RULES_FILE}", "-loggerLevel=ERROR")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: A\n    expr: sum(\n")
    result = run("vmalert", "-dryRun", f"-rule={broken}", "-loggerLevel=ERROR")
    assert result.returncode != 0 and "invalid expression" in result.stdout + result.stderr


@pytest.mark.parametrize("per", ["model", "version"])
def test_estimated_precision_fires_only_on_a_trusted_estimate_under_the_threshold(tmp_path: Path, per: str) -> None:
    """The rule reads the quality schedule's gauges: the value, and the trust beside it."""
    definitions = [
        parse_alert(
            {
                "name": name,
                "model_id": "m1",
                "per": per,
                "condition": {"metric": metric, "operator": operator, "threshold": 0.8, "window": "10m", "for": "2m"},
            }
        )
        for name, metric, operator in (
            ("Overall", "estimated_precision", "lt"),
            ("Person", "estimated_precision:person", "lte"),
            ("High", "estimated_precision", "gt"),
        )
    ]
    result = promtool_tests(tmp_path, definitions)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((tmp_path / rules.RULES_TEST_FILE).read_text())["tests"]
    assert len(tests) == 3 * len(definitions)
    untrusted = [t for t in tests if "not trusted" in t["name"]]
    assert len(untrusted) == 3 and all(not t["alert_rule_test"][0]["exp_alerts"] for t in untrusted)
    person = next(t for t in tests if t["name"].startswith("Person fires"))
    assert any('objdet_detection_class="person"' in s["series"] for s in person["input_series"])


def test_the_untrusted_case_is_not_vacuous(tmp_path: Path) -> None:
    """A rule without the trust condition fails the generated 'quiet while untrusted' case."""
    alert = parse_alert(
        {
            "name": "Overall",
            "model_id": "m1",
            "condition": {"metric": "estimated_precision", "operator": "lt", "threshold": 0.8, "window": "10m"},
        }
    )
    stack = StackSettings()
    text = render_yaml(rules.rule_groups([alert], stack))
    untrusting = text.replace(") == 1", ") >= 0")
    assert untrusting != text
    (tmp_path / rules.RULES_FILE).write_text(untrusting)
    (tmp_path / rules.RULES_TEST_FILE).write_text(render_yaml(rules.rules_tests([alert], stack)))
    result = run("promtool", "test", "rules", rules.RULES_TEST_FILE, cwd=tmp_path)
    assert result.returncode != 0
    assert "not trusted" in result.stdout + result.stderr
