"""Alert definitions: the seed's form is accepted as written, mistakes are refused by field.

The refusal messages must say what would be valid, because definitions are typed by
hand into ``detwatch.yaml`` or a ``create_alert`` call.
"""

from __future__ import annotations

from typing import Any

import pytest

from detwatch.alerting import promql
from detwatch.alerting.definitions import AlertDefinitionError, NotifyTarget, parse_alert, parse_alerts
from detwatch_instrumentation import semconv

SEED_LOW_CONFIDENCE: dict[str, Any] = {
    "name": "Low Confidence Alert",
    "model_id": "vehicles",
    "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
    "notify": ["email:team@company.com", "slack:#ml-alerts"],
}
PRECISION: dict[str, Any] = {"metric": "estimated_precision", "operator": "lt", "threshold": 0.8, "window": "1h"}
SEED_HIGH_LATENCY: dict[str, Any] = {
    "name": "High Latency Alert",
    "model_id": "vehicles",
    "condition": {"metric": "p99_latency_ms", "operator": "gt", "threshold": 500, "window": "15m"},
}


def with_condition(**changes: Any) -> dict[str, Any]:
    return {**SEED_LOW_CONFIDENCE, "condition": {**SEED_LOW_CONFIDENCE["condition"], **changes}}


def test_seed_alerts_are_accepted_as_written() -> None:
    low = parse_alert(SEED_LOW_CONFIDENCE)
    assert (low.metric, low.operator, low.threshold, low.window) == ("avg_confidence", "lt", 0.7, "1h")
    assert low.notify == (NotifyTarget("email", "team@company.com"), NotifyTarget("slack", "#ml-alerts"))
    high = parse_alert(SEED_HIGH_LATENCY)
    assert (high.metric, high.quantile, high.threshold, high.notify) == ("p99_latency_ms", 0.99, 500.0, ())
    assert high.describe() == "p99_latency_ms > 500 over 15m"


@pytest.mark.parametrize(
    ("metric", "threshold"),
    [
        ("avg_confidence", 0.5),
        ("p50_latency_ms", 33.3),
        ("p95_latency_ms", 100),
        ("p99_latency_ms", 2500),
        ("low_confidence_rate", 0.2),
        ("no_detection_rate", 0.5),
        ("error_rate", 0.01),
        ("throughput", 12.5),
        ("class_share:person", 0.3),
        ("feedback_accuracy", 0.9),
        ("drift_score:class", 0.2),
    ],
)
def test_every_metric_of_the_design_is_accepted(metric: str, threshold: float) -> None:
    alert = parse_alert(with_condition(metric=metric, threshold=threshold))
    assert alert.metric_ref == metric
    assert promql.metric_expression(alert)


@pytest.mark.parametrize("operator", ["lt", "gt", "lte", "gte"])
def test_every_operator_is_accepted(operator: str) -> None:
    assert parse_alert(with_condition(operator=operator)).operator == operator


def refusal(data: Any) -> AlertDefinitionError:
    with pytest.raises(AlertDefinitionError) as info:
        parse_alert(data)
    return info.value


def test_unknown_metric_is_refused_with_the_list_of_valid_ones() -> None:
    error = refusal(with_condition(metric="mean_confidence"))
    assert error.field == "condition.metric"
    for metric in ("avg_confidence", "p99_latency_ms", "class_share:<class>", "drift_score:<kind>"):
        assert metric in error.message


def test_a_mean_confidence_threshold_between_bucket_bounds_is_accepted() -> None:
    # A mean is a sum over a count: exact for any threshold.
    alert = parse_alert(with_condition(threshold=0.72))
    assert alert.threshold == 0.72 and alert.resolution is None
    error = refusal(with_condition(threshold=1.5))
    assert error.field == "condition.threshold" and "[0, 1]" in error.message


def test_a_latency_quantile_between_bucket_bounds_states_its_resolution() -> None:
    data = {**SEED_HIGH_LATENCY, "condition": {**SEED_HIGH_LATENCY["condition"], "threshold": 400}}
    alert = parse_alert(data)
    assert alert.resolution == "interpolated between the 250 and 500 ms bucket bounds"
    assert "(interpolated between the 250 and 500 ms bucket bounds)" in alert.describe()
    assert parse_alert(SEED_HIGH_LATENCY).resolution is None  # 500 ms is a bound: read exactly there
    error = refusal({**data, "condition": {**data["condition"], "threshold": 10_000}})
    assert error.field == "condition.threshold" and "2500" in error.message


def test_a_low_confidence_cut_off_between_bounds_is_refused_naming_the_nearest() -> None:
    error = refusal(with_condition(metric="low_confidence_rate", threshold=0.2, below=0.72))
    assert error.field == "condition.below"
    assert "0.7 or 0.75" in error.message


@pytest.mark.parametrize("window", ["1 h", "1hour", "", 60, "30s", "40d", "1h30m"])
def test_bad_window_is_refused_with_the_duration_format(window: Any) -> None:
    error = refusal(with_condition(window=window))
    assert error.field == "condition.window"
    assert "duration" in error.message or "range" in error.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (with_condition(operator="below"), "condition.operator"),
        (with_condition(threshold="0.7"), "condition.threshold"),
        (with_condition(metric="error_rate", threshold=5), "condition.threshold"),
        (with_condition(metric="class_share"), "condition.metric"),
        (with_condition(for_="5m"), "condition.for_"),
        (with_condition(**{"for": "soon"}), "condition.for"),
        (with_condition(below=0.5), "condition.below"),
        (with_condition(min_images=-1), "condition.min_images"),
        # The document bounds it (a window holding more images than this is no deployment's): so does the server.
        (with_condition(min_images=1029463647994336768), "condition.min_images"),
        (with_condition(anomaly={"method": "prophet"}), "condition.anomaly.method"),
        (with_condition(anomaly={"method": "zscore", "baseline": "2h"}, threshold=3), "condition.anomaly.baseline"),
        (with_condition(anomaly={"method": "zscore"}, threshold=0), "condition.threshold"),
        ({**SEED_LOW_CONFIDENCE, "notify": ["sms:+4412345"]}, "notify[0]"),
        ({**SEED_LOW_CONFIDENCE, "notify": "slack:#ml-alerts"}, "notify"),
        ({**SEED_LOW_CONFIDENCE, "notify": ["slack:ml-alerts"]}, "notify[0]"),
        ({**SEED_LOW_CONFIDENCE, "notify": ["webhook:ftp://x"]}, "notify[0]"),
        ({**SEED_LOW_CONFIDENCE, "model_id": ""}, "model_id"),
        ({**SEED_LOW_CONFIDENCE, "name": "{{ evil }}"}, "name"),
        ({**SEED_LOW_CONFIDENCE, "arm": "c"}, "arm"),
        ({**SEED_LOW_CONFIDENCE, "per": "class"}, "per"),
        ({**SEED_LOW_CONFIDENCE, "condition": {**PRECISION, "metric": "estimated_precision:"}}, "condition.metric"),
        ({**SEED_LOW_CONFIDENCE, "condition": PRECISION, "arm": "a"}, "arm"),
        ({**SEED_LOW_CONFIDENCE, "condition": PRECISION, "per": "arm"}, "per"),
        ({**SEED_LOW_CONFIDENCE, "condition": {**PRECISION, "threshold": 1.2}}, "condition.threshold"),
        ({**SEED_LOW_CONFIDENCE, "colour": "red"}, "colour"),
        ({"name": "x", "model_id": "m"}, "condition"),
        ({**SEED_LOW_CONFIDENCE, "condition": {"metric": "avg_confidence"}}, "condition.operator"),
    ],
)
def test_invalid_definitions_name_the_field(data: dict[str, Any], field: str) -> None:
    error = refusal(data)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


def test_anomaly_condition_has_a_low_traffic_guard_by_default() -> None:
    alert = parse_alert(with_condition(threshold=3, anomaly={"method": "zscore", "baseline": "7d"}))
    assert alert.anomaly is not None and alert.anomaly.baseline == "7d"
    assert alert.min_images == 100
    expression = promql.alert_expression(alert)
    images = semconv.prometheus_series(semconv.IMAGES)
    assert f"increase({images}" in expression and ">= 100" in expression
    assert "stddev_over_time" in expression and expression.endswith("< -3")
    week = parse_alert(with_condition(operator="gt", threshold=0.2, anomaly="week_ago", min_images=0))
    assert "offset 1w" in promql.alert_expression(week)


def test_definitions_round_trip_through_json() -> None:
    alert = parse_alert({**SEED_LOW_CONFIDENCE, "per": "arm", "arm": "b", "severity": "critical"})
    assert parse_alert(alert.to_json()) == alert


def test_alert_names_must_differ_after_slugging() -> None:
    with pytest.raises(AlertDefinitionError) as info:
        parse_alerts([SEED_LOW_CONFIDENCE, {**SEED_LOW_CONFIDENCE, "name": "low confidence alert!"}])
    assert info.value.field == "alerts[1].name"


def test_estimated_precision_reads_the_trusted_quality_gauge_of_its_class() -> None:
    overall = parse_alert({**SEED_LOW_CONFIDENCE, "condition": PRECISION})
    person = parse_alert({**SEED_LOW_CONFIDENCE, "condition": {**PRECISION, "metric": "estimated_precision:person"}})
    assert (overall.metric, overall.argument) == ("estimated_precision", None)
    assert (person.metric, person.argument, person.metric_ref) == (
        "estimated_precision",
        "person",
        "estimated_precision:person",
    )
    assert parse_alert(person.to_json()) == person
    value = semconv.prometheus_series(semconv.QUALITY_PRECISION)
    trusted = semconv.prometheus_series(semconv.QUALITY_TRUSTED)
    expression = promql.alert_expression(overall)
    assert f'{value}{{objdet_model_id="vehicles", objdet_detection_class="__all__"}}[1h]' in expression
    assert f'{trusted}{{objdet_model_id="vehicles", objdet_detection_class="__all__"}}[1h]' in expression
    assert "== 1" in expression and expression.endswith("< 0.8")
    assert 'objdet_detection_class="person"' in promql.alert_expression(person)
