"""PromQL for every alert metric and dashboard panel, built only from the telemetry registry.

Series and label names come from :mod:`detwatch_instrumentation.semconv`
(:func:`~detwatch_instrumentation.semconv.prometheus_series`, ``ATTR_*``): a name typed
here by hand could drift from what the exporter writes and leave a dashboard showing
"No data". Each alert metric has one function; rules, Grafana alerting and dashboards
all call them, so the alert a rule evaluates is the curve a panel draws.

Windows use ``increase`` rather than ``rate`` in ratios and means: the two agree in
Prometheus, but VictoriaMetrics counts a series that starts inside the window from
zero only in ``increase`` (its ``rate`` needs two samples), and a young deployment is
exactly when an alert should already work.

Model scope is a :class:`Scope` (matchers) plus the labels to aggregate ``by``;
aggregation is always explicit, because resource attributes such as
``service_instance_id`` become labels and differ per process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from detwatch.alerting.definitions import AlertDefinition, duration_seconds
from detwatch_instrumentation import semconv
from detwatch_instrumentation.semconv import InstrumentSpec, PrometheusPart

__all__ = [
    "LABEL_AB_VARIANT",
    "LABEL_CLASS",
    "LABEL_DRIFT_KIND",
    "LABEL_DRIFT_METHOD",
    "LABEL_ERROR_TYPE",
    "LABEL_FEEDBACK_TYPE",
    "LABEL_MODEL_ID",
    "LABEL_MODEL_VERSION",
    "LABEL_REASON",
    "LABEL_SAMPLING_STRATEGY",
    "LABEL_STAGE",
    "Matcher",
    "Scope",
    "alert_expression",
    "alert_scope",
    "alert_score",
    "alert_threshold",
    "avg_confidence",
    "bucket_increase",
    "class_share",
    "detections_by_class",
    "detections_per_image",
    "drift_score",
    "drift_scores",
    "error_rate",
    "estimated_precision",
    "estimated_precision_band",
    "failed_image_rate",
    "feedback_accuracy",
    "feedback_by_type",
    "flagged_by_strategy",
    "histogram_quantile",
    "image_rate",
    "images",
    "invalid_outputs",
    "latency_quantile_ms",
    "low_confidence_rate",
    "metric_expression",
    "no_detection_rate",
    "series",
    "series_name",
    "throughput",
]

LABEL_MODEL_ID: Final = semconv.prometheus_label(semconv.ATTR_MODEL_ID)
LABEL_MODEL_VERSION: Final = semconv.prometheus_label(semconv.ATTR_MODEL_VERSION)
LABEL_AB_VARIANT: Final = semconv.prometheus_label(semconv.ATTR_AB_VARIANT)
LABEL_CLASS: Final = semconv.prometheus_label(semconv.ATTR_DETECTION_CLASS)
LABEL_ERROR_TYPE: Final = semconv.prometheus_label(semconv.ATTR_ERROR_TYPE)
LABEL_STAGE: Final = semconv.prometheus_label(semconv.ATTR_STAGE)
LABEL_FEEDBACK_TYPE: Final = semconv.prometheus_label(semconv.ATTR_FEEDBACK_TYPE)
LABEL_SAMPLING_STRATEGY: Final = semconv.prometheus_label(semconv.ATTR_SAMPLING_STRATEGY)
LABEL_DRIFT_KIND: Final = semconv.prometheus_label(semconv.ATTR_DRIFT_KIND)
LABEL_DRIFT_METHOD: Final = semconv.prometheus_label(semconv.ATTR_DRIFT_METHOD)
LABEL_REASON: Final = semconv.prometheus_label(semconv.ATTR_REASON)

_PER_LABELS: Final = {
    "model": (LABEL_MODEL_ID,),
    "version": (LABEL_MODEL_ID, LABEL_MODEL_VERSION),
    "arm": (LABEL_MODEL_ID, LABEL_AB_VARIANT),
}


@dataclass(frozen=True)
class Matcher:
    """One label matcher; the value is quoted and escaped when rendered."""

    label: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    def render(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Scope:
    """Which series (matchers) and per which labels (``by``) an expression aggregates."""

    matchers: tuple[Matcher, ...] = ()
    by: tuple[str, ...] = (LABEL_MODEL_ID,)
    offset: str | None = None
    """Look this far back (``1w``): PromQL's ``offset`` applies to selectors, not expressions."""

    def select(self, spec: InstrumentSpec, part: PrometheusPart = "", *extra: Matcher) -> str:
        """An instant selector: the registry's name and this scope's matchers (plus ``extra``)."""
        return series(spec, part, *self.matchers, *extra) + self._offset()

    def range(self, spec: InstrumentSpec, part: PrometheusPart, window: str, *extra: Matcher) -> str:
        """A range selector ``name{...}[window]`` (with the scope's offset)."""
        return f"{series(spec, part, *self.matchers, *extra)}[{window}]{self._offset()}"

    def _offset(self) -> str:
        return f" offset {self.offset}" if self.offset else ""

    def shifted(self, offset: str) -> Scope:
        return replace(self, offset=offset)

    def by_clause(self, *extra: str) -> str:
        return f"by ({', '.join((*self.by, *extra))})"


def series_name(spec: InstrumentSpec, part: PrometheusPart = "") -> str:
    """The store's series name, from the registry (:func:`~detwatch_instrumentation.semconv.prometheus_series`).

    ``tests/test_grafana_queries.py`` pins the names against VictoriaMetrics, e.g. the
    translator's ``_ratio`` on unit-1 gauges (``objdet_drift_score_ratio``).
    """
    return semconv.prometheus_series(spec, part)


def series(spec: InstrumentSpec, part: PrometheusPart = "", *matchers: Matcher) -> str:
    """``name{matchers}`` with the name from the registry (see :func:`series_name`)."""
    name = series_name(spec, part)
    if not matchers:
        return name
    return f"{name}{{{', '.join(m.render() for m in matchers)}}}"


def alert_scope(alert: AlertDefinition) -> Scope:
    """The series an alert watches and the labels it is evaluated per."""
    matchers = [Matcher(LABEL_MODEL_ID, "=", alert.model_id)]
    if alert.version is not None:
        matchers.append(Matcher(LABEL_MODEL_VERSION, "=", alert.version))
    if alert.arm is not None:
        matchers.append(Matcher(LABEL_AB_VARIANT, "=", alert.arm))
    return Scope(tuple(matchers), _PER_LABELS[alert.per])


def _ratio(numerator: str, denominator: str) -> str:
    return f"{numerator}\n/\n{denominator}"


def _sum_increase(scope: Scope, spec: InstrumentSpec, part: PrometheusPart, window: str, *extra: Matcher) -> str:
    return f"sum {scope.by_clause()} (increase({scope.range(spec, part, window, *extra)}))"


# The whole-call duration carries no stage; stage timings (objdet.stage) would count twice.
_WHOLE_CALL: Final = Matcher(LABEL_STAGE, "=", "")


def avg_confidence(scope: Scope, window: str) -> str:
    """Mean detection confidence: exact, from the histogram's sum and count."""
    spec = semconv.DETECTION_CONFIDENCE
    return _ratio(_sum_increase(scope, spec, "sum", window), _sum_increase(scope, spec, "count", window))


def latency_quantile_ms(scope: Scope, window: str, quantile: float) -> str:
    """A quantile of the whole-call duration, in milliseconds (bucket interpolation)."""
    inner = (
        f"sum {scope.by_clause('le')} "
        f"(increase({scope.range(semconv.INFERENCE_DURATION, 'bucket', window, _WHOLE_CALL)}))"
    )
    return f"histogram_quantile({quantile:g}, {inner}) * 1000"


def low_confidence_rate(scope: Scope, window: str, below: float) -> str:
    """Share of detections with a confidence at or under ``below`` (a bucket bound)."""
    spec = semconv.DETECTION_CONFIDENCE
    le = Matcher("le", "=", _bound_label(below))
    return _ratio(_sum_increase(scope, spec, "bucket", window, le), _sum_increase(scope, spec, "count", window))


def no_detection_rate(scope: Scope, window: str) -> str:
    """Share of images with no valid detection (the ``le="0"`` bucket)."""
    spec = semconv.IMAGE_DETECTIONS
    le = Matcher("le", "=", _bound_label(0.0))
    return _ratio(_sum_increase(scope, spec, "bucket", window, le), _sum_increase(scope, spec, "count", window))


def detections_per_image(scope: Scope, window: str) -> str:
    """Mean number of valid detections per image."""
    spec = semconv.IMAGE_DETECTIONS
    return _ratio(_sum_increase(scope, spec, "sum", window), _sum_increase(scope, spec, "count", window))


def _zero_with_traffic(scope: Scope, window: str, function: str = "increase") -> str:
    """0 for every group of ``scope`` that saw images in the window.

    A counter's series exists only from its first increment: a count of failures (or
    unreadable outputs) of a healthy model has no series at all, and an expression
    over it no value, so that a panel said "No data" where the answer is 0. ``or``
    with this fills in the 0 exactly where the model had traffic (and nowhere else:
    a model without images still has no value).
    """
    return f"0 * sum {scope.by_clause()} ({function}({scope.range(semconv.IMAGES, '', window)}))"


def _or_zero(expr: str, scope: Scope, window: str, function: str = "increase", label: str | None = None) -> str:
    """``expr``, or 0 per group with traffic where it has no series (see :func:`_zero_with_traffic`).

    ``label``: a label ``expr`` groups by beyond the scope's (the reason, the error
    type); the 0 series carries it as ``none``, and ``on`` the scope's labels only, it
    appears only for groups where ``expr`` has no series of any value of the label.
    """
    zero = _zero_with_traffic(scope, window, function)
    if label is None:
        return f"(\n{expr}\nor\n{zero}\n)"
    zero = f'label_replace({zero}, "{label}", "none", "{label}", "")'
    return f"(\n{expr}\nor on ({', '.join(scope.by)})\n{zero}\n)"


def error_rate(scope: Scope, window: str) -> str:
    """Share of images whose inference call raised (``error.type`` set); 0, not "no data", before the first error."""
    failed = Matcher(LABEL_ERROR_TYPE, "!=", "")
    return _ratio(
        _or_zero(_sum_increase(scope, semconv.IMAGES, "", window, failed), scope, window),
        _sum_increase(scope, semconv.IMAGES, "", window),
    )


def failed_image_rate(scope: Scope, window: str) -> str:
    """Failed images per second by exception type (``rate``, for panels); ``none`` 0 for a model without errors."""
    failed = Matcher(LABEL_ERROR_TYPE, "!=", "")
    by_type = f"sum {scope.by_clause(LABEL_ERROR_TYPE)} (rate({scope.range(semconv.IMAGES, '', window, failed)}))"
    return _or_zero(by_type, scope, window, "rate", LABEL_ERROR_TYPE)


def images(scope: Scope, window: str) -> str:
    """Images seen in the window: the low-traffic guard's measure."""
    return _sum_increase(scope, semconv.IMAGES, "", window)


def throughput(scope: Scope, window: str) -> str:
    """Images per second over the window (``increase`` / window, see the module docstring)."""
    return f"{images(scope, window)} / {duration_seconds(window):g}"


def class_share(scope: Scope, window: str, cls: str) -> str:
    """Share of detections of class ``cls`` (after the cardinality guard's folding)."""
    spec = semconv.DETECTIONS
    return _ratio(
        _sum_increase(scope, spec, "", window, Matcher(LABEL_CLASS, "=", cls)), _sum_increase(scope, spec, "", window)
    )


def feedback_accuracy(scope: Scope, window: str) -> str:
    """Share of feedback posts of type ``correct``."""
    spec = semconv.FEEDBACK
    correct = Matcher(LABEL_FEEDBACK_TYPE, "=", "correct")
    return _ratio(_sum_increase(scope, spec, "", window, correct), _sum_increase(scope, spec, "", window))


def drift_score(scope: Scope, window: str, kind: str) -> str:
    """The highest drift score of ``kind`` reported in the window (any method)."""
    selector = scope.range(semconv.DRIFT_SCORE, "", window, Matcher(LABEL_DRIFT_KIND, "=", kind))
    return f"max {scope.by_clause()} (max_over_time({selector}))"


def _latest(scope: Scope, spec: InstrumentSpec, window: str, cls: str, aggregate: str = "max") -> str:
    selector = scope.range(spec, "", window, Matcher(LABEL_CLASS, "=", cls))
    return f"{aggregate} {scope.by_clause()} (last_over_time({selector}))"


def estimated_precision(scope: Scope, window: str, cls: str = semconv.ALL_CLASSES) -> str:
    """The latest label-free precision of ``cls`` (every class: ``__all__``) in the window, only where trusted.

    The quality schedule sets ``objdet.quality.trusted`` to 0 beside an estimate resting
    on too few labels or on a calibration the period's confidences have left; ``and``
    drops such a group, so an alert on this never fires on an untrusted value.
    """
    value = _latest(scope, semconv.QUALITY_PRECISION, window, cls)
    trusted = _latest(scope, semconv.QUALITY_TRUSTED, window, cls, "min")
    return f"{value}\nand on ({', '.join(scope.by)})\n(\n{trusted} == 1\n)"


def estimated_precision_band(scope: Scope, cls: str = ".*") -> tuple[str, str, str, str]:
    """A panel's four queries of the latest label-free precision per group and class (``cls`` a regex).

    The estimate, its interval's ends, and the estimate again where the schedule marked
    it untrusted (empty while every estimate is trusted), so that a panel can mark those.
    """
    match = Matcher(LABEL_CLASS, "=~", cls)
    by = scope.by_clause(LABEL_CLASS)

    def latest(spec: InstrumentSpec, aggregate: str = "max") -> str:
        return f"{aggregate} {by} ({scope.select(spec, '', match)})"

    value = latest(semconv.QUALITY_PRECISION)
    untrusted = (
        f"{value}\nand on ({', '.join((*scope.by, LABEL_CLASS))})\n(\n{latest(semconv.QUALITY_TRUSTED, 'min')} == 0\n)"
    )
    return value, latest(semconv.QUALITY_PRECISION_LOW), latest(semconv.QUALITY_PRECISION_HIGH), untrusted


def image_rate(scope: Scope, window: str, *extra: Matcher) -> str:
    """Images per second (``rate``: for panels, whose window Grafana sizes to the scrape interval)."""
    return f"sum {scope.by_clause()} (rate({scope.range(semconv.IMAGES, '', window, *extra)}))"


def detections_by_class(scope: Scope, window: str) -> str:
    """Detections per class in the window: the class mix."""
    return f"sum {scope.by_clause(LABEL_CLASS)} (increase({scope.range(semconv.DETECTIONS, '', window)}))"


def invalid_outputs(scope: Scope, window: str) -> str:
    """Unreadable outputs in the window, by reason; ``none`` 0 for a model with traffic and none unreadable."""
    spec = semconv.INVALID_OUTPUTS
    by_reason = f"sum {scope.by_clause(LABEL_REASON)} (increase({scope.range(spec, '', window)}))"
    return _or_zero(by_reason, scope, window, label=LABEL_REASON)


def bucket_increase(scope: Scope, spec: InstrumentSpec, window: str) -> str:
    """Per-bucket counts in the window (a heatmap's input; ``le`` kept)."""
    return f"sum {scope.by_clause('le')} (increase({scope.range(spec, 'bucket', window)}))"


def histogram_quantile(scope: Scope, spec: InstrumentSpec, window: str, quantile: float) -> str:
    """A quantile of any detwatch histogram (no unit conversion)."""
    return f"histogram_quantile({quantile:g}, {bucket_increase(scope, spec, window)})"


def feedback_by_type(scope: Scope, window: str) -> str:
    """Feedback posts in the window, by type."""
    spec = semconv.FEEDBACK
    return f"sum {scope.by_clause(LABEL_FEEDBACK_TYPE)} (increase({scope.range(spec, '', window)}))"


def flagged_by_strategy(scope: Scope, window: str) -> str:
    """Images the data engine flagged for review in the window, by sampling strategy."""
    spec = semconv.REVIEW_FLAGGED
    return f"sum {scope.by_clause(LABEL_SAMPLING_STRATEGY)} (increase({scope.range(spec, '', window)}))"


def drift_scores(scope: Scope) -> str:
    """The latest drift score per kind and method."""
    return f"max {scope.by_clause(LABEL_DRIFT_KIND, LABEL_DRIFT_METHOD)} ({scope.select(semconv.DRIFT_SCORE)})"


def _bound_label(value: float) -> str:
    """A bucket bound as the store writes the ``le`` label (``0.5``, ``1``, ``0``)."""
    return f"{value:g}" if value != int(value) else str(int(value))


def metric_expression(alert: AlertDefinition, scope: Scope | None = None) -> str:
    """The value an alert compares: the expression of its metric over its window."""
    scope = scope or alert_scope(alert)
    window = alert.window
    metric = alert.metric
    if metric == "avg_confidence":
        return avg_confidence(scope, window)
    if alert.quantile is not None:
        return latency_quantile_ms(scope, window, alert.quantile)
    if metric == "low_confidence_rate":
        return low_confidence_rate(scope, window, alert.below)
    if metric == "no_detection_rate":
        return no_detection_rate(scope, window)
    if metric == "error_rate":
        return error_rate(scope, window)
    if metric == "throughput":
        return throughput(scope, window)
    if metric == "class_share":
        assert alert.argument is not None
        return class_share(scope, window, alert.argument)
    if metric == "feedback_accuracy":
        return feedback_accuracy(scope, window)
    if metric == "drift_score":
        assert alert.argument is not None
        return drift_score(scope, window, alert.argument)
    if metric == "estimated_precision":
        return estimated_precision(scope, window, alert.argument or semconv.ALL_CLASSES)
    raise ValueError(f"metric: no expression for {metric!r}")


_SYMBOL: Final = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}


def alert_score(alert: AlertDefinition, value: str | None = None) -> str:
    """What an alert compares with its threshold: the metric, its z-score or its weekly change.

    ``value`` is the metric's expression (inline by default; the rule files pass the
    recording rule's selector instead). The low-traffic guard keeps only groups that
    saw at least ``min_images`` images in the window (``and`` binds loosest, so the
    comparison of :func:`alert_expression` applies to the guarded score).
    """
    if value is None:
        current = f"(\n{metric_expression(alert)}\n)"
        week_ago = f"(\n{metric_expression(alert, alert_scope(alert).shifted('1w'))}\n)"
    else:
        current, week_ago = value, f"{value} offset 1w"
    anomaly = alert.anomaly
    if anomaly is None:
        score = current
    elif anomaly.method == "zscore":
        history = f"{current}[{anomaly.baseline}:{_subquery_step(alert.window)}]"
        score = f"(\n{current}\n- avg_over_time({history})\n)\n/ stddev_over_time({history})"
    else:
        score = f"{current}\n/ {week_ago}\n- 1"
    if alert.min_images > 0:
        scope = alert_scope(alert)
        guard = f"{images(scope, alert.window)} >= {alert.min_images}"
        score = f"{score}\nand on ({', '.join(scope.by)})\n(\n{guard}\n)"
    return score


def alert_threshold(alert: AlertDefinition) -> float:
    """The number the score is compared with (negative for a z-score or change downwards)."""
    if alert.anomaly is not None and alert.operator in ("lt", "lte"):
        return -alert.threshold
    return alert.threshold


def alert_expression(alert: AlertDefinition, value: str | None = None) -> str:
    """The alert condition as a filtering comparison: the series it returns are firing."""
    score = alert_score(alert, value)
    if alert.min_images > 0:  # `and` binds loosest: compare the guarded score as a whole
        score = f"(\n{score}\n)"
    return f"{score}\n{_SYMBOL[alert.operator]} {alert_threshold(alert):g}"


def _subquery_step(window: str) -> str:
    """A baseline step a quarter of the window long, at least a minute: enough points, bounded cost."""
    seconds = max(60, int(duration_seconds(window) // 4))
    return f"{seconds}s"
