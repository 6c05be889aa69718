"""Every PromQL expression of every committed dashboard panel and rule, run against a real store.

A real VictoriaMetrics is filled over OTLP/HTTP by the real decorator (two A/B arms
of model ``vehicles``, versions v1 and v2, with empty images, failing calls and an
unreadable output) and, for the companion's instruments (feedback, flagged images,
drift scores, which the companion does not export yet), by the SDK with the
registry's names. Then each query of ``grafana/dashboards/*.json``,
``grafana/provisioning/alerting/detwatch.yaml`` and ``rules/detwatch.rules.yml`` runs
with Grafana's variables filled in, and must answer: non-empty, and equal to what
this test computes from the values it fed in (exact for means, shares and counts;
within the bucket for quantiles; within the export-timing bounds for rates).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import yaml
from opentelemetry.sdk.metrics import MeterProvider

import detwatch_instrumentation
from _components import REPO_ROOT, VictoriaMetrics
from _stream import cumulative_provider
from detwatch.alerting import promql, rules
from detwatch.alerting.definitions import AlertDefinition, duration_seconds, parse_alert
from detwatch.alerting.generate import load_config
from detwatch_instrumentation import ABRouter, monitor_detections, semconv

DASHBOARDS = sorted((REPO_ROOT / "grafana" / "dashboards").glob("*.json"))
GRAFANA_ALERTING = REPO_ROOT / "grafana" / "provisioning" / "alerting" / "detwatch.yaml"
RULES = REPO_ROOT / "rules" / "detwatch.rules.yml"
MODEL = "vehicles"
VERSION = {"a": "v1", "b": "v2"}
WINDOW = "1h"
IMAGE_SIZE = (480, 640)  # height, width: box areas are shares of 640 x 480
CONFIDENCE_BOUNDS = semconv.DETECTION_CONFIDENCE.bounds or ()
DURATION_BOUNDS = semconv.INFERENCE_DURATION.bounds or ()
AREA_BOUNDS = semconv.DETECTION_BOX_AREA.bounds or ()


@dataclass
class Call:
    arm: str
    latency_s: float
    detections: list[tuple[str, float, float]] = field(default_factory=list)  # class, confidence, area share
    raised: bool = False
    returned_invalid: bool = False


@dataclass
class Feed:
    """Everything the test fed in, and when the two exports happened."""

    store: VictoriaMetrics
    provider: MeterProvider
    calls: list[Call]
    phase2: list[Call]
    feedback: list[tuple[str, str]]  # arm, type
    flagged: dict[str, int]
    drift: dict[tuple[str, str], float]
    export_windows: list[tuple[float, float]]
    quality: dict[str, tuple[float, float, float, bool]]
    """The quality schedule's gauges set (model-wide, no version): class -> (estimate, low, high, trusted)."""

    def version(self, call: Call) -> str:
        return VERSION[call.arm]


def prometheus_quantile(q: float, bounds: tuple[float, ...], values: list[float]) -> float:
    """histogram_quantile from raw values: linear interpolation inside the bucket holding rank q."""
    cumulative = [sum(1 for v in values if v <= b) for b in bounds]
    rank = q * len(values)
    lower, below = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return bounds[-1]


def bucket_width(bounds: tuple[float, ...], value: float) -> float:
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return bound - lower
        lower = bound
    return math.inf


def fill(store: VictoriaMetrics) -> Feed:
    provider = cumulative_provider(store.otlp_metrics_url, "detwatch-grafana-queries")
    rng = np.random.default_rng(11)
    calls: list[Call] = []
    image = np.zeros((*IMAGE_SIZE, 3), dtype=np.uint8)

    def model(arm: str) -> Callable[..., Any]:
        @monitor_detections(model_id=MODEL, model_version=VERSION[arm], meter_provider=provider)
        def predict(frame: Any, plan: dict[str, Any]) -> Any:
            if plan["pause"]:
                time.sleep(plan["pause"])
            if plan["kind"] == "raise":
                raise ValueError("corrupt frame")
            if plan["kind"] == "nan":
                return [{"class": "car", "confidence": math.nan, "box": [0, 0, 10, 10]}]
            return plan["output"]

        return predict

    router = ABRouter(model("a"), model("b"), traffic_split=0.5, salt="grafana-queries")
    meter = provider.get_meter("detwatch-companion-standin")
    feedback_counter = meter.create_counter(semconv.FEEDBACK.name, unit=semconv.FEEDBACK.unit)
    flagged_counter = meter.create_counter(semconv.REVIEW_FLAGGED.name, unit=semconv.REVIEW_FLAGGED.unit)
    drift_gauge = meter.create_gauge(semconv.DRIFT_SCORE.name, unit=semconv.DRIFT_SCORE.unit)
    feedback: list[tuple[str, str]] = []
    flagged: dict[str, int] = {}
    drift = {("class", "jensen_shannon"): 0.12, ("confidence", "ks"): 0.31}
    quality = {
        semconv.ALL_CLASSES: (0.74, 0.7, 0.78, True),
        "car": (0.9, 0.87, 0.93, True),
        "person": (0.4, 0.2, 0.6, False),
    }
    quality_gauges = [
        meter.create_gauge(spec.name, unit=spec.unit)
        for spec in (semconv.QUALITY_PRECISION, semconv.QUALITY_PRECISION_LOW, semconv.QUALITY_PRECISION_HIGH,
                     semconv.QUALITY_TRUSTED)
    ]  # fmt: skip

    def one_call(key: str, kind: str, pause: float) -> None:
        arm = router.route(key)
        output: list[dict[str, Any]] = []
        dets: list[tuple[str, float, float]] = []
        if kind in ("ok", "both"):
            # "both": one of each class, so that phase 1 creates every class's series.
            classes = ["car", "person"] if kind == "both" else []
            for _ in range(2 if kind == "both" else int(rng.integers(1, 5))):
                cls = classes.pop() if classes else "car" if rng.random() < 0.6 else "person"
                conf = float(rng.uniform(0.3, 0.95))
                w, h = float(rng.uniform(8, 300)), float(rng.uniform(8, 300))
                output.append({"class": cls, "confidence": conf, "box": [5.0, 5.0, 5.0 + w, 5.0 + h]})
                dets.append((cls, conf, (w * h) / (IMAGE_SIZE[0] * IMAGE_SIZE[1])))
        call = Call(arm, 0.0, dets, raised=kind == "raise", returned_invalid=kind == "nan")
        started = time.perf_counter()
        try:
            router(image, {"kind": kind, "pause": pause, "output": output}, key=key)  # "both", "ok", "empty" return it
        except ValueError:
            assert kind == "raise"
        call.latency_s = time.perf_counter() - started
        calls.append(call)

    def give_feedback(arm: str, kind: str) -> None:
        attrs = {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_MODEL_VERSION: VERSION[arm], semconv.ATTR_AB_VARIANT: arm}
        feedback_counter.add(1, {**attrs, semconv.ATTR_FEEDBACK_TYPE: kind})
        feedback.append((arm, kind))

    def flag(strategy: str) -> None:
        flagged_counter.add(1, {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_SAMPLING_STRATEGY: strategy})
        flagged[strategy] = flagged.get(strategy, 0) + 1

    keys = {router.route(f"frame-{i}"): f"frame-{i}" for i in range(20)}
    assert set(keys) == {"a", "b"}
    # Phase 1 touches every series once (see _stream: first values under ten).
    for arm, key in keys.items():
        for kind in ("both", "empty", "raise", "nan"):
            one_call(key, kind, 0.0)
        give_feedback(arm, "correct")
        give_feedback(arm, "wrong_label")
    for strategy in ("low_confidence", "random_sample"):
        flag(strategy)
    for (kind, method), score in drift.items():
        drift_gauge.set(
            score, {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_DRIFT_KIND: kind, semconv.ATTR_DRIFT_METHOD: method}
        )
    for cls, (estimate, low, high, trusted) in quality.items():
        attributes = {semconv.ATTR_MODEL_ID: MODEL, semconv.ATTR_DETECTION_CLASS: cls}
        for gauge, value in zip(quality_gauges, (estimate, low, high, float(trusted)), strict=True):
            gauge.set(value, attributes)
    windows = [_export(provider)]
    phase1 = len(calls)
    # Phase 2: the stream. Slow calls sleep mid-bucket (0.0167, 0.025]; one in ten raises.
    for i in range(160):
        kind = "raise" if i % 10 == 3 else "empty" if i % 7 == 2 else "nan" if i % 40 == 5 else "ok"
        one_call(f"img-{i}", kind, 0.02 if i % 4 == 0 else 0.0)
    for i in range(30):
        give_feedback("a" if i % 3 else "b", ("correct", "correct", "wrong_box", "false_positive")[i % 4])
    for i in range(12):
        flag(("low_confidence", "random_sample", "no_detections")[i % 3])
    windows.append(_export(provider))
    return Feed(store, provider, calls, calls[phase1:], feedback, flagged, drift, windows, quality)


def _export(provider: MeterProvider) -> tuple[float, float]:
    started = time.time()
    assert detwatch_instrumentation.flush(10.0)
    assert provider.force_flush(10_000)
    return started, time.time()


# ----------------------------------------------------------------------------- expectations

Key = tuple[str, ...]
Interval = tuple[float, float]
Grouping = Callable[[Call], Key]

BY_VERSION: tuple[str, ...] = ("objdet_model_id", "objdet_model_version")
BY_ARM: tuple[str, ...] = ("objdet_model_id", "objdet_ab_variant")
BY_MODEL: tuple[str, ...] = ("objdet_model_id",)


def grouping(labels: tuple[str, ...]) -> Grouping:
    def key(call: Call) -> Key:
        values = {"objdet_model_id": MODEL, "objdet_model_version": VERSION[call.arm], "objdet_ab_variant": call.arm}
        return tuple(values[label] for label in labels)

    return key


def exact(value: float) -> Interval:
    tolerance = 1e-9 * abs(value) + 1e-12
    return value - tolerance, value + tolerance


def per_group(calls: list[Call], key: Grouping, value: Callable[[list[Call]], float | None]) -> dict[Key, Interval]:
    groups: dict[Key, list[Call]] = {}
    for call in calls:
        groups.setdefault(key(call), []).append(call)
    out = {}
    for k, members in groups.items():
        v = value(members)
        if v is not None:
            out[k] = exact(v)
    return out


def confidences(calls: list[Call]) -> list[float]:
    return [conf for call in calls for _, conf, _ in call.detections]


def mean_confidence(calls: list[Call]) -> float | None:
    values = confidences(calls)
    return sum(values) / len(values) if values else None


def returned(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.raised]


def empty_share(calls: list[Call]) -> float | None:
    images = returned(calls)
    return sum(1 for c in images if not c.detections) / len(images) if images else None


def detections_per_image(calls: list[Call]) -> float | None:
    images = returned(calls)
    return sum(len(c.detections) for c in images) / len(images) if images else None


def error_share(calls: list[Call]) -> float | None:
    return sum(1 for c in calls if c.raised) / len(calls)


def low_share(calls: list[Call]) -> float | None:
    values = confidences(calls)
    return sum(1 for v in values if v <= 0.5) / len(values) if values else None


def quantile_ms(feed: Feed, labels: tuple[str, ...], q: float) -> dict[Key, Interval]:
    key = grouping(labels)
    groups: dict[Key, list[float]] = {}
    for call in feed.calls:
        groups.setdefault(key(call), []).append(call.latency_s)
    out = {}
    for k, latencies in groups.items():
        # The test's timing wraps the decorator's: the two may straddle a bound, so the
        # check is "within the bucket", the histogram's own resolution.
        expected = prometheus_quantile(q, DURATION_BOUNDS, latencies)
        width = bucket_width(DURATION_BOUNDS, expected)
        out[k] = ((expected - width) * 1000, (expected + width) * 1000)
    return out


def rate_bounds(feed: Feed, counts: dict[Key, int]) -> dict[Key, Interval]:
    """Phase-2 events over the time between the two exports (known within the export calls)."""
    (a1, b1), (a2, b2) = feed.export_windows
    return {k: (n / (b2 - a1), n / (a2 - b1)) for k, n in counts.items() if n}


def count_by(items: list[Key]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def cumulative_buckets(values: list[float], bounds: tuple[float, ...]) -> dict[Key, Interval]:
    out: dict[Key, Interval] = {(f"{b:g}",): exact(float(sum(1 for v in values if v <= b))) for b in bounds}
    out[("+Inf",)] = exact(float(len(values)))
    return out


def feedback_accuracy(feed: Feed, labels: tuple[str, ...]) -> dict[Key, Interval]:
    key = grouping(labels)
    totals: dict[Key, list[str]] = {}
    for arm, kind in feed.feedback:
        totals.setdefault(key(Call(arm, 0.0)), []).append(kind)
    return {k: exact(kinds.count("correct") / len(kinds)) for k, kinds in totals.items()}


def drift_scores(feed: Feed) -> dict[Key, Interval]:
    return {(MODEL, kind, method): exact(score) for (kind, method), score in feed.drift.items()}


def estimated_precision(feed: Feed, part: int, *, untrusted_only: bool = False) -> dict[Key, Interval]:
    """The quality gauges per (model, version: none set, class): estimate, low or high (``part`` 0, 1, 2)."""
    return {
        (MODEL, "", cls): exact(figures[part])
        for cls, figures in feed.quality.items()
        if not (untrusted_only and figures[3])
    }


BY_CLASS: tuple[str, ...] = ("objdet_model_id", "objdet_model_version", "objdet_detection_class")


@dataclass(frozen=True)
class Expect:
    labels: tuple[str, ...]
    compute: Callable[[Feed], dict[Key, Interval]]


PANELS: dict[tuple[str, str], Expect] = {
    ("Throughput", "A"): Expect(
        BY_VERSION, lambda f: rate_bounds(f, count_by([grouping(BY_VERSION)(c) for c in f.phase2]))
    ),
    ("Errors", "A"): Expect(BY_VERSION, lambda f: per_group(f.calls, grouping(BY_VERSION), error_share)),
    ("Errors", "B"): Expect(
        ("objdet_model_id", "error_type"),
        lambda f: rate_bounds(f, count_by([(MODEL, "ValueError") for c in f.phase2 if c.raised])),
    ),
    ("Latency p50 / p95 / p99", "A"): Expect(BY_VERSION, lambda f: quantile_ms(f, BY_VERSION, 0.5)),
    ("Latency p50 / p95 / p99", "B"): Expect(BY_VERSION, lambda f: quantile_ms(f, BY_VERSION, 0.95)),
    ("Latency p50 / p95 / p99", "C"): Expect(BY_VERSION, lambda f: quantile_ms(f, BY_VERSION, 0.99)),
    ("Average confidence", "A"): Expect(
        BY_VERSION, lambda f: per_group(f.calls, grouping(BY_VERSION), mean_confidence)
    ),
    ("Confidence distribution", "A"): Expect(
        ("le",), lambda f: cumulative_buckets(confidences(f.calls), CONFIDENCE_BOUNDS)
    ),
    ("Average confidence per class", "A"): Expect(
        ("objdet_model_id", "objdet_detection_class"),
        lambda f: {
            (MODEL, cls): exact(float(np.mean([c for call in f.calls for k, c, _ in call.detections if k == cls])))
            for cls in ("car", "person")
        },
    ),
    ("Detections per image", "A"): Expect(
        BY_VERSION, lambda f: per_group(f.calls, grouping(BY_VERSION), detections_per_image)
    ),
    ("Empty-image rate", "A"): Expect(BY_VERSION, lambda f: per_group(f.calls, grouping(BY_VERSION), empty_share)),
    ("Class mix", "A"): Expect(
        ("objdet_detection_class",),
        lambda f: {k: exact(float(n)) for k, n in count_by([(d[0],) for c in f.calls for d in c.detections]).items()},
    ),
    ("Box sizes", "A"): Expect(
        ("le",), lambda f: cumulative_buckets([a for c in f.calls for _, _, a in c.detections], AREA_BOUNDS)
    ),
    ("Unreadable outputs", "A"): Expect(
        ("objdet_reason",),
        lambda f: {("confidence_not_finite",): exact(float(sum(1 for c in f.calls if c.returned_invalid)))},
    ),
    ("Feedback by type", "A"): Expect(
        ("objdet_model_id", "objdet_feedback_type"),
        lambda f: {(MODEL, t): exact(float(n)) for (t,), n in count_by([(k,) for _, k in f.feedback]).items()},
    ),
    ("Feedback accuracy", "A"): Expect(BY_VERSION, lambda f: feedback_accuracy(f, BY_VERSION)),
    ("Flagged for review", "A"): Expect(
        ("objdet_sampling_strategy",), lambda f: {(k,): exact(float(n)) for k, n in f.flagged.items()}
    ),
    ("Low-confidence share", "A"): Expect(BY_VERSION, lambda f: per_group(f.calls, grouping(BY_VERSION), low_share)),
    ("Estimated precision (label-free)", "A"): Expect(BY_CLASS, lambda f: estimated_precision(f, 0)),
    ("Estimated precision (label-free)", "B"): Expect(BY_CLASS, lambda f: estimated_precision(f, 1)),
    ("Estimated precision (label-free)", "C"): Expect(BY_CLASS, lambda f: estimated_precision(f, 2)),
    ("Estimated precision (label-free)", "D"): Expect(
        BY_CLASS, lambda f: estimated_precision(f, 0, untrusted_only=True)
    ),
    ("Latest drift scores", "A"): Expect(("objdet_model_id", "objdet_drift_kind", "objdet_drift_method"), drift_scores),
    ("Drift scores", "A"): Expect(("objdet_model_id", "objdet_drift_kind", "objdet_drift_method"), drift_scores),
    ("Average confidence by arm", "A"): Expect(BY_ARM, lambda f: per_group(f.calls, grouping(BY_ARM), mean_confidence)),
    ("Latency p95 by arm", "A"): Expect(BY_ARM, lambda f: quantile_ms(f, BY_ARM, 0.95)),
    ("Traffic by arm", "A"): Expect(
        BY_ARM, lambda f: rate_bounds(f, count_by([grouping(BY_ARM)(c) for c in f.phase2]))
    ),
    ("Empty-image rate by arm", "A"): Expect(BY_ARM, lambda f: per_group(f.calls, grouping(BY_ARM), empty_share)),
    ("Error rate by arm", "A"): Expect(BY_ARM, lambda f: per_group(f.calls, grouping(BY_ARM), error_share)),
    ("Feedback accuracy by arm", "A"): Expect(BY_ARM, lambda f: feedback_accuracy(f, BY_ARM)),
}

GRAFANA_VARIABLES = {"$__rate_interval": WINDOW, "$model": MODEL, "$version": ".*", "$arm": ".*"}


def with_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def panel_targets() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel title, refId, expr) of every target of every committed dashboard."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = list(board.get("panels", []))
        for panel in list(panels):
            panels.extend(panel.get("panels", []))  # collapsed rows
        for panel in panels:
            for target in panel.get("targets", []):
                out.append((path.stem, panel["title"], target["refId"], target["expr"]))
    return out


TARGETS = panel_targets()


def answer(store: VictoriaMetrics, expr: str, labels: tuple[str, ...]) -> dict[Key, float]:
    result = store.query(expr)
    values: dict[Key, float] = {}
    for series in result:
        key = tuple(series["metric"].get(label, "") for label in labels)
        assert key not in values, f"two series for {key}: {result}"
        values[key] = float(series["value"][1])
    return values


@pytest.fixture(scope="module")
def feed() -> Iterator[Feed]:
    with VictoriaMetrics() as store:
        fed = fill(store)
        store.flush()
        try:
            yield fed
        finally:
            fed.provider.shutdown()


def test_the_dashboards_hold_the_panels_the_issue_lists() -> None:
    titles = {(board, title) for board, title, _, _ in TARGETS}
    assert {board for board, _ in titles} == {"overview", "quality", "drift", "ab"}
    overview = {
        "Throughput", "Errors", "Latency p50 / p95 / p99", "Average confidence", "Confidence distribution",
        "Average confidence per class", "Detections per image", "Empty-image rate", "Class mix", "Box sizes",
    }  # fmt: skip
    assert overview <= {t for b, t in titles if b == "overview"}
    assert {"Feedback by type", "Feedback accuracy", "Flagged for review", "Estimated precision (label-free)"} <= {
        t for b, t in titles if b == "quality"
    }
    assert "Drift scores" in {t for b, t in titles if b == "drift"}
    assert {r for b, t, r, _ in TARGETS if t == "Latency p50 / p95 / p99"} == {"A", "B", "C"}


@pytest.mark.parametrize(("board", "title", "ref_id", "expr"), TARGETS, ids=[f"{b}:{t}:{r}" for b, t, r, _ in TARGETS])
def test_every_dashboard_query_returns_the_values_that_were_recorded(
    feed: Feed, board: str, title: str, ref_id: str, expr: str
) -> None:
    expect = PANELS.get((title, ref_id))
    assert expect is not None, f"{board}/{title}/{ref_id}: no independent expectation for this query"
    actual = answer(feed.store, with_variables(expr), expect.labels)
    expected = expect.compute(feed)
    assert actual, f"{title}: no data for {expr}"
    assert set(actual) == set(expected), (title, actual, expected)
    for key, (low, high) in expected.items():
        assert low <= actual[key] <= high, (title, key, actual[key], (low, high))


# ----------------------------------------------------------------------------- rules


CONFIG = load_config(REPO_ROOT / "detwatch.yaml")
ALERTS = {alert.slug: alert for alert in CONFIG.alerts}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "gte": lambda a, b: a >= b,
}


def metric_expectation(alert: AlertDefinition, feed: Feed) -> dict[Key, Interval]:
    """The alert's metric per group, from the raw calls (the model here is always ``vehicles``)."""
    labels = {"model": BY_MODEL, "version": BY_VERSION, "arm": BY_ARM}[alert.per]
    assert alert.model_id == MODEL
    calls = [
        c
        for c in feed.calls
        if (alert.version is None or VERSION[c.arm] == alert.version) and (alert.arm is None or c.arm == alert.arm)
    ]
    key = grouping(labels)
    if alert.metric == "avg_confidence":
        return per_group(calls, key, mean_confidence)
    if alert.quantile is not None:
        return quantile_ms(Feed(**{**feed.__dict__, "calls": calls}), labels, alert.quantile)
    if alert.metric == "no_detection_rate":
        return per_group(calls, key, empty_share)
    if alert.metric == "error_rate":
        return per_group(calls, key, error_share)
    if alert.metric == "low_confidence_rate":
        below = alert.below
        return per_group(calls, key, lambda cs: sum(1 for v in confidences(cs) if v <= below) / len(confidences(cs)))
    if alert.metric == "throughput":
        return per_group(calls, key, lambda cs: len(cs) / duration_seconds(alert.window))
    if alert.metric == "estimated_precision":
        assert alert.per == "model"  # the feed's gauges are model-wide, as the schedule sets them without a version
        estimate, _, _, trusted = feed.quality[alert.argument or semconv.ALL_CLASSES]
        return {(MODEL,): exact(estimate)} if trusted else {}
    raise AssertionError(f"{alert.metric}: add an independent expectation for this metric")


def firing(alert: AlertDefinition, expected: dict[Key, Interval]) -> set[Key]:
    """Groups whose metric satisfies the condition; the interval must not straddle the threshold."""
    compare = _COMPARE[alert.operator]
    out = set()
    for key, (low, high) in expected.items():
        assert compare(low, alert.threshold) == compare(high, alert.threshold), (alert.name, key, low, high)
        if compare(low, alert.threshold):
            out.add(key)
    return out


def rules_of(kind: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if kind in r]


RECORDS = rules_of("record")
ALERTING = rules_of("alert")
GRAFANA_RULES = [r for g in yaml.safe_load(GRAFANA_ALERTING.read_text())["groups"] for r in g["rules"]]


def labels_for(alert: AlertDefinition) -> tuple[str, ...]:
    return {"model": BY_MODEL, "version": BY_VERSION, "arm": BY_ARM}[alert.per]


@pytest.mark.parametrize("rule", RECORDS, ids=[r["labels"]["detwatch_alert"] for r in RECORDS])
def test_every_recording_rule_returns_the_recorded_metric(feed: Feed, rule: dict[str, Any]) -> None:
    alert = ALERTS[rule["labels"]["detwatch_alert"]]
    expected = metric_expectation(alert, feed)
    actual = answer(feed.store, rule["expr"], labels_for(alert))
    assert actual and set(actual) == set(expected), (alert.name, actual, expected)
    for key, (low, high) in expected.items():
        assert low <= actual[key] <= high, (alert.name, key, actual[key], (low, high))


@pytest.mark.parametrize("rule", ALERTING, ids=[r["alert"] for r in ALERTING])
def test_every_alerting_rule_fires_exactly_where_the_recorded_data_says(feed: Feed, rule: dict[str, Any]) -> None:
    alert = ALERTS[rule["labels"]["detwatch_alert"]]
    record = next(r for r in RECORDS if r["labels"]["detwatch_alert"] == alert.slug)
    selector = f'{record["record"]}{{detwatch_alert="{alert.slug}"}}'
    assert selector in rule["expr"]
    # The store holds no recording-rule output here (no vmalert): inline the recorded expression.
    expr = rule["expr"].replace(selector, f"(\n{record['expr']}\n)")
    actual = answer(feed.store, expr, labels_for(alert))
    if alert.anomaly is not None:
        assert actual == {}, "without a week of history there is no baseline: the anomaly rule must stay quiet"
        return
    assert set(actual) == firing(alert, metric_expectation(alert, feed)), (alert.name, actual)


@pytest.mark.parametrize("rule", GRAFANA_RULES, ids=[r["uid"] for r in GRAFANA_RULES])
def test_every_grafana_rule_query_returns_the_metric_it_compares(feed: Feed, rule: dict[str, Any]) -> None:
    alert = ALERTS[rule["labels"]["detwatch_alert"]]
    (query,) = [d for d in rule["data"] if d["refId"] == "A"]
    actual = answer(feed.store, query["model"]["expr"], labels_for(alert))
    if alert.anomaly is not None:
        assert actual == {}, "without a week of history there is no baseline"
        return
    expected = metric_expectation(alert, feed)
    assert actual and set(actual) == set(expected), (alert.name, actual, expected)
    for key, (low, high) in expected.items():
        assert low <= actual[key] <= high, (alert.name, key, actual[key], (low, high))
    (math_step,) = [d for d in rule["data"] if d["refId"] == "C"]
    symbol = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}[alert.operator]
    assert math_step["model"]["expression"] == f"$B {symbol} {alert.threshold:g}"


def test_anomaly_rule_fires_on_a_drop_from_its_own_baseline_and_not_on_a_steady_value(feed: Feed) -> None:
    """A week of recorded history (imported), then the rule file's z-score rule on it.

    The traffic guard reads the decorator's real image counts: enough images in the
    last hour for ``vehicles``, none for another model with the same drop.
    """
    (rule,) = [r for r in ALERTING if ALERTS[r["labels"]["detwatch_alert"]].anomaly is not None]
    alert = ALERTS[rule["labels"]["detwatch_alert"]]
    assert alert.anomaly is not None and alert.anomaly.baseline == "7d" and alert.operator == "lt"
    record = next(r for r in RECORDS if r["labels"]["detwatch_alert"] == alert.slug)["record"]
    now = time.time()
    step = 900
    start = int(now // step) * step - 7 * 86400
    history = [(t, 0.84 if (t // step) % 2 else 0.86) for t in range(start, int(now) - 60, step)]
    baseline = np.array([v for _, v in history])
    lines = []
    for model in (MODEL, "quiet-model"):
        labels = f'detwatch_alert="{alert.slug}",objdet_model_id="{model}"'
        lines += [f"{record}{{{labels}}} {v} {t * 1000}" for t, v in history]
    feed.store.import_prometheus("\n".join(lines) + "\n")
    steady = float(baseline.mean())
    feed.store.import_prometheus(
        f'{record}{{detwatch_alert="{alert.slug}",objdet_model_id="{MODEL}"}} {steady} {int((now - 30) * 1000)}\n'
    )
    feed.store.flush()
    assert answer(feed.store, rule["expr"], BY_MODEL) == {}, "a value at its baseline mean must not fire"

    drop = 0.6
    expected_z = (drop - baseline.mean()) / baseline.std()
    for model in (MODEL, "quiet-model"):
        labels = f'detwatch_alert="{alert.slug}",objdet_model_id="{model}"'
        feed.store.import_prometheus(f"{record}{{{labels}}} {drop} {int((time.time() - 5) * 1000)}\n")
    feed.store.flush()
    fired = answer(feed.store, rule["expr"], BY_MODEL)
    assert set(fired) == {(MODEL,)}, fired  # quiet-model has no images: the guard holds it back
    assert fired[(MODEL,)] < -alert.threshold
    # The drop may also be one of the baseline's points (a subquery step), which widens
    # the deviation; it still lies far beyond the threshold, on the expected side.
    assert expected_z * 1.6 < fired[(MODEL,)] <= expected_z * 0.5


def test_every_series_the_artifacts_query_is_in_the_registry_and_in_the_store(feed: Feed) -> None:
    texts = [p.read_text() for p in DASHBOARDS] + [GRAFANA_ALERTING.read_text(), RULES.read_text()]
    # A series name is followed by its matchers or range, or is label_values()' first argument.
    pattern = r"\b(objdet_[a-z_]+)(?=[{\[])|label_values\((objdet_[a-z_]+)"
    queried = {a or b for text in texts for a, b in re.findall(pattern, text)}
    registry = set()
    for spec in semconv.INSTRUMENTS:
        parts: tuple[semconv.PrometheusPart, ...] = ("bucket", "sum", "count") if spec.kind == "histogram" else ("",)
        registry |= {promql.series_name(spec, part) for part in parts}
    assert queried and queried <= registry, queried - registry
    stored = {s["__name__"] for s in feed.store.series('{__name__=~"objdet_.*"}')}
    assert queried <= stored, queried - stored


def test_dashboard_variables_list_the_models_versions_and_arms_that_were_recorded(feed: Feed) -> None:
    """Grafana's label_values(series{match}, label) is the store's label-values API with that match."""
    board = json.loads(DASHBOARDS[0].read_text())
    expected = {"model": [MODEL], "version": sorted(VERSION.values()), "arm": sorted(VERSION)}
    for variable in board["templating"]["list"]:
        found = re.fullmatch(r"label_values\((.+), ([a-z_]+)\)", variable["query"])
        assert found is not None, variable["query"]
        match, label = found.groups()
        values = feed.store.label_values(label, match.replace("$model", MODEL))
        assert sorted(values) == expected[variable["name"]], variable["name"]


def test_week_ago_rule_compares_with_the_same_window_one_week_earlier(feed: Feed) -> None:
    alert = parse_alert(
        {
            "name": "Confidence Week Over Week",
            "model_id": MODEL,
            "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.2, "window": "1h",
                          "anomaly": "week_ago", "min_images": 0},
        }
    )  # fmt: skip
    rule = rules.alerting_rule(alert)
    series = f'{rules.recording_name(alert)}{{detwatch_alert="{alert.slug}",objdet_model_id="{MODEL}"}}'
    now = time.time()
    week = 7 * 86400
    feed.store.import_prometheus(
        f"{series} 0.85 {int((now - week - 30) * 1000)}\n{series} 0.8 {int((now - 60) * 1000)}\n"
    )
    feed.store.flush()
    assert answer(feed.store, rule["expr"], BY_MODEL) == {}, "-6% is within the 20% allowed"
    feed.store.import_prometheus(f"{series} 0.6 {int((now - 5) * 1000)}\n")
    feed.store.flush()
    fired = answer(feed.store, rule["expr"], BY_MODEL)
    assert fired.keys() == {(MODEL,)}
    assert fired[(MODEL,)] == pytest.approx(0.6 / 0.85 - 1, rel=1e-9)
