"""Grafana provisioning: alerting (rules, contact points, policies), datasources, dashboard provider.

Grafana alerting objects are built with ``grafana-foundation-sdk``'s typed builders
(:mod:`grafana_foundation_sdk.builders.alerting`, whose models are the shapes of
Grafana's provisioning HTTP API) and then laid out in Grafana's file-provisioning
format (``apiVersion: 1`` with ``groups``, ``contactPoints``, ``policies``), which
nests the same objects by group and by contact point. The API shapes are also what
:func:`api_payloads` returns for pushing to a running Grafana.

Each alert definition becomes one Grafana rule with three steps: ``A`` the PromQL
score (the same expression as the Prometheus rule, inline since Grafana cannot see
recording rules it did not write), ``B`` its last value, ``C`` the comparison as a
math expression (Grafana's threshold type has no ``<=``/``>=``). No data means no
traffic or a low-traffic guard holding back: ``OK``, not an alert.

Notification: one contact point per alert with ``notify`` targets (email, Slack,
webhook), routed by the ``detwatch_alert`` label. Slack's webhook URL is read from the
``DETWATCH_SLACK_WEBHOOK_URL`` environment variable of the Grafana server, so that no
secret is committed. The notification policy tree replaces the organisation's tree
(Grafana provisions it whole); its root goes to Grafana's default email contact point.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

from grafana_foundation_sdk.builders import alerting, expr, prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model
from grafana_foundation_sdk.models import dashboard as dashboard_model

from detwatch.alerting import promql
from detwatch.alerting.definitions import AlertDefinition, duration_seconds
from detwatch.alerting.rules import ALERT_LABEL, CachedItem, alert_annotations, alert_labels, alert_name
from detwatch.alerting.stack import StackSettings

__all__ = [
    "DEFAULT_RECEIVER",
    "RULE_GROUP",
    "SLACK_URL_VARIABLE",
    "alerting_file",
    "api_payloads",
    "contact_points",
    "dashboard_providers",
    "datasources",
    "grafana_rules",
    "notification_policy",
    "receiver_name",
    "rule_uid",
]

RULE_GROUP: Final = "detwatch"
DEFAULT_RECEIVER: Final = "grafana-default-email"
_PER_ALERT_CACHE: Final = 4096
"""Alerts whose built entries are kept (per builder): far more than a deployment defines."""
SLACK_URL_VARIABLE: Final = "DETWATCH_SLACK_WEBHOOK_URL"
_EXPR_DATASOURCE: Final = "__expr__"
_SYMBOL: Final = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}


def _to_json(obj: Any) -> Any:
    """Plain JSON data from an SDK model (its own encoder)."""
    return json.loads(json.dumps(obj, cls=JSONEncoder))


def _uid(prefix: str, slug: str) -> str:
    """A Grafana uid (at most 40 characters): readable, with a hash when the slug is long."""
    uid = f"{prefix}-{slug}"
    if len(uid) <= 40:
        return uid
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    return f"{uid[:31]}-{digest}"


def rule_uid(alert: AlertDefinition) -> str:
    return _uid("detwatch", alert.slug)


def receiver_name(alert: AlertDefinition) -> str:
    return f"detwatch-{alert.slug}"


def grafana_rules(alerts: Sequence[AlertDefinition], stack: StackSettings) -> list[alerting_model.Rule]:
    """One Grafana-managed rule per definition, in the provisioning API's shape."""
    out = []
    for alert in alerts:
        lookback = int(duration_seconds(alert.window) + 600)
        score = (
            prometheus.Dataquery()
            .expr(promql.alert_score(alert))
            .instant()
            .ref_id("A")
            .datasource(dashboard_model.DataSourceRef(type_val="prometheus", uid=stack.datasource_uid))
        )
        last = expr.TypeReduce().expression("A").reducer("last").ref_id("B")
        compare = (
            expr.TypeMath().expression(f"$B {_SYMBOL[alert.operator]} {promql.alert_threshold(alert):g}").ref_id("C")
        )
        rule = (
            alerting.Rule(alert.name)
            .uid(rule_uid(alert))
            .org_id(1)
            .folder_uid(stack.grafana_folder)
            .rule_group(RULE_GROUP)
            .condition("C")
            .with_query(
                alerting.Query("A")
                .datasource_uid(stack.datasource_uid)
                .relative_time_range(alerting_model.RelativeTimeRange(from_val=lookback, to=0))
                .model(score)
            )
            .with_query(alerting.Query("B").datasource_uid(_EXPR_DATASOURCE).model(last))
            .with_query(alerting.Query("C").datasource_uid(_EXPR_DATASOURCE).model(compare))
            .for_val(alert.for_)
            .no_data_state("OK")
            .exec_err_state("Error")
            .labels({**alert_labels(alert), "alertname_prometheus": alert_name(alert)})
            .annotations(alert_annotations(alert))
            .is_paused(False)
        )
        out.append(rule.build())
    return out


def contact_points(alerts: Sequence[AlertDefinition]) -> list[alerting_model.ContactPoint]:
    """One integration per ``notify`` target, named after its alert (the API's shape)."""
    out = []
    for alert in alerts:
        for index, target in enumerate(alert.notify):
            settings: dict[str, Any]
            if target.kind == "email":
                settings = {"addresses": target.address, "singleEmail": True}
            elif target.kind == "slack":
                settings = {"recipient": target.address, "url": f"${{{SLACK_URL_VARIABLE}}}"}
            else:
                settings = {"url": target.address, "httpMethod": "POST"}
            point = (
                alerting.ContactPoint()
                .uid(_uid(f"dw{index}", alert.slug))
                .name(receiver_name(alert))
                .type(target.kind)
                .settings(settings)
                .disable_resolve_message(False)
            )
            out.append(point.build())
    return out


def notification_policy(alerts: Sequence[AlertDefinition]) -> alerting_model.NotificationPolicy:
    """The policy tree: each alert's label routes to its contact point."""
    routes: list[cogbuilder.Builder[alerting_model.NotificationPolicy]] = [
        alerting.NotificationPolicy().receiver(receiver_name(alert)).object_matchers([[ALERT_LABEL, "=", alert.slug]])
        for alert in alerts
        if alert.notify
    ]
    policy = (
        alerting.NotificationPolicy()
        .receiver(DEFAULT_RECEIVER)
        .group_by(["grafana_folder", "alertname", promql.LABEL_MODEL_ID])
        .group_wait("30s")
        .group_interval("5m")
        .repeat_interval("4h")
        .routes(routes)
    )
    return policy.build()


def api_payloads(alerts: Sequence[AlertDefinition], stack: StackSettings) -> dict[str, Any]:
    """What the provisioning HTTP API takes: rules, contact points, the policy tree."""
    return {
        "alert-rules": [_to_json(r) for r in grafana_rules(alerts, stack)],
        "contact-points": [_to_json(c) for c in contact_points(alerts)],
        "policies": _to_json(notification_policy(alerts)),
    }


@functools.lru_cache(maxsize=_PER_ALERT_CACHE)
def _file_rule(alert: AlertDefinition, stack: StackSettings) -> CachedItem:
    (rule,) = grafana_rules([alert], stack)
    data = _to_json(rule)
    for key in ("folderUID", "orgID", "ruleGroup"):  # given once, on the group
        data.pop(key)
    return CachedItem(data)


@functools.lru_cache(maxsize=_PER_ALERT_CACHE)
def _file_contact_point(alert: AlertDefinition) -> CachedItem:
    """The alert's contact point (an alert with ``notify`` targets): one receiver per target."""
    receivers = []
    for point in contact_points([alert]):
        data = _to_json(point)
        data.pop("name")
        receivers.append(data)
    return CachedItem({"orgId": 1, "name": receiver_name(alert), "receivers": receivers})


@functools.lru_cache(maxsize=_PER_ALERT_CACHE)
def _policy_route(alert: AlertDefinition) -> CachedItem:
    (route,) = _to_json(notification_policy([alert]))["routes"]
    return CachedItem(route)


def alerting_file(alerts: Sequence[AlertDefinition], stack: StackSettings) -> dict[str, Any]:
    """Grafana's alerting provisioning file: the API objects grouped as the file format wants.

    Each alert's rule, contact point and route is built once (:class:`detwatch.alerting.rules.CachedItem`):
    the companion rewrites this file after every ``create_alert``.
    """
    rules = [_file_rule(alert, stack) for alert in alerts]
    # One contact point per alert: its name is the alert's, and alert names are unique.
    receivers = [_file_contact_point(alert) for alert in alerts if alert.notify]
    policy = _to_json(notification_policy([]))
    policy["routes"] = [_policy_route(alert) for alert in alerts if alert.notify]
    out: dict[str, Any] = {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": RULE_GROUP,
                "folder": stack.grafana_folder,
                "interval": stack.evaluation_interval,
                "rules": rules,
            }
        ],
    }
    if receivers:
        out["contactPoints"] = receivers
    out["policies"] = [{"orgId": 1, **policy}]
    return out


def datasources(stack: StackSettings) -> dict[str, Any]:
    """The store (Prometheus type) with exemplar links to Tempo, and Tempo itself."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "detwatch metrics",
                "uid": stack.datasource_uid,
                "type": "prometheus",
                "access": "proxy",
                "url": stack.store_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "httpMethod": "POST",
                    "timeInterval": "15s",
                    "exemplarTraceIdDestinations": [
                        {"name": "trace_id", "datasourceUid": stack.tempo_datasource_uid},
                    ],
                },
            },
            {
                "name": "detwatch traces",
                "uid": stack.tempo_datasource_uid,
                "type": "tempo",
                "access": "proxy",
                "url": stack.tempo_url,
                "editable": False,
                "jsonData": {
                    "tracesToMetrics": {"datasourceUid": stack.datasource_uid},
                    "serviceMap": {"datasourceUid": stack.datasource_uid},
                },
            },
        ],
    }


def dashboard_providers(stack: StackSettings) -> dict[str, Any]:
    """A file provider loading ``grafana/dashboards`` (mounted at ``stack.dashboards_path``)."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "detwatch",
                "orgId": 1,
                "folder": stack.grafana_folder,
                "type": "file",
                "disableDeletion": False,
                # Generated files are the source: edits in the UI would be lost on regeneration.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": stack.dashboards_path, "foldersFromFilesStructure": False},
            }
        ],
    }
