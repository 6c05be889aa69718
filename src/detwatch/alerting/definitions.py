"""Alert definitions: the one input every generated rule, policy and contact point comes from.

An alert is written once, in ``detwatch.yaml`` (``alerts:``) or through the seed's
``client.create_alert(...)``, in the seed's own form::

    name: Low Confidence Alert
    model_id: vehicles
    condition: {metric: avg_confidence, operator: lt, threshold: 0.7, window: 1h}
    notify: ["email:team@company.com", "slack:#ml-alerts"]

:func:`parse_alert` validates such a mapping into an :class:`AlertDefinition`; the
generators (:mod:`detwatch.alerting.rules`, :mod:`detwatch.grafana`) only ever see validated
definitions. A mistake raises :class:`AlertDefinitionError` whose ``field`` names the
offending key (``condition.threshold``) and whose message says what would be valid,
because a definition is usually typed by hand.

Condition keys
--------------
``metric``
    ``avg_confidence``, ``p50_latency_ms``, ``p95_latency_ms``, ``p99_latency_ms``,
    ``low_confidence_rate``, ``no_detection_rate``, ``error_rate``, ``throughput``
    (images/s), ``class_share:<class>``, ``feedback_accuracy``, ``drift_score:<kind>``,
    ``estimated_precision`` and ``estimated_precision:<class>`` (the quality schedule's
    label-free precision, overall or of one class: the alert fires only on an estimate
    the schedule marked trusted; its gauges carry no A/B arm, so ``arm`` and
    ``per: arm`` are refused on it).
``operator``
    ``lt``, ``gt``, ``lte``, ``gte``.
``threshold``
    Any value the metric can take: ``avg_confidence`` is a sum over a count, exact for
    any threshold in [0, 1]; a latency quantile is interpolated by
    ``histogram_quantile`` inside the bucket that holds it (latency bounds 1, 2.5, 5,
    10, ... 500, 1000, 2500 ms), so its resolution is that bucket, which the alert's
    description states (``p99_latency_ms > 400`` is read between 250 and 500 ms); a
    threshold above the last finite bound is refused (the quantile never exceeds it).
    Shares and rates lie in [0, 1]; throughput and drift scores in [0, 1e12].
``window``
    A Prometheus duration (``90s``, ``15m``, ``1h``, ``7d``) from 1m to 31d.
``for``
    How long the condition must hold before the alert fires (default ``5m``; ``0s``
    fires at the first evaluation).
``below``
    ``low_confidence_rate`` only: the confidence under which a detection counts as
    low (a confidence bucket bound, default 0.5: the share under a value between two
    bounds cannot be computed from the histogram, and the error names the nearest).
``min_images``
    Low-traffic guard: evaluate only when at least this many images were seen in the
    window (default 0, or 100 for anomaly conditions: a z-score over a handful of
    images is noise); at most 1e9.
``anomaly``
    Alert on a deviation from the metric's own baseline instead of a fixed value:
    ``{"method": "zscore", "baseline": "7d"}`` (``threshold`` is then the number of
    standard deviations) or ``{"method": "week_ago"}`` (``threshold`` is the relative
    change against the same window one week earlier, e.g. 0.2). ``lt`` looks for
    drops, ``gt`` for rises.

Top-level keys besides ``name``, ``model_id``, ``condition`` and ``notify``:
``version`` and ``arm`` (``a``/``b``) narrow the alert; ``per`` (``model``,
``version``, ``arm``) evaluates it separately for each version or arm; ``severity``
(``info``, ``warning``, ``critical``).

Notify targets: ``email:<address>``, ``slack:#<channel>``, ``webhook:<http(s) URL>``.

An optional key (``anomaly``, ``notify``, ``version``, ``arm``) is left out for its
default; a null is refused, naming the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, get_args

from detwatch.contract.shapes.alerts import (
    EMAIL_PATTERN,
    MAX_MIN_IMAGES,
    MAX_NOTIFY,
    MAX_THRESHOLD,
    SLACK_PATTERN,
    WEBHOOK_PATTERN,
)
from detwatch_instrumentation import semconv

__all__ = [
    "ARMLESS_METRICS",
    "DEFAULT_ANOMALY_MIN_IMAGES",
    "DEFAULT_BELOW",
    "DEFAULT_FOR",
    "EMAIL_PATTERN",
    "MAX_MIN_IMAGES",
    "MAX_NOTIFY",
    "MAX_THRESHOLD",
    "METRICS",
    "SLACK_PATTERN",
    "WEBHOOK_PATTERN",
    "AlertDefinition",
    "AlertDefinitionError",
    "Anomaly",
    "NotifyTarget",
    "Operator",
    "duration_seconds",
    "parse_alert",
    "parse_alerts",
    "slug",
]

Operator = Literal["lt", "gt", "lte", "gte"]
Per = Literal["model", "version", "arm"]
Severity = Literal["info", "warning", "critical"]
AnomalyMethod = Literal["zscore", "week_ago"]
NotifyKind = Literal["email", "slack", "webhook"]

METRICS: Final[tuple[str, ...]] = (
    "avg_confidence",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "low_confidence_rate",
    "no_detection_rate",
    "error_rate",
    "throughput",
    "class_share:<class>",
    "feedback_accuracy",
    "drift_score:<kind>",
    "estimated_precision",
    "estimated_precision:<class>",
)
"""The metrics an alert may name; ``<class>`` and ``<kind>`` are filled in by the user."""

ARMLESS_METRICS: Final = frozenset({"estimated_precision"})
"""Metric families whose series carry no A/B arm: an ``arm`` filter or ``per: arm`` would match nothing."""

_RATIOS: Final = frozenset(
    {
        "low_confidence_rate",
        "no_detection_rate",
        "error_rate",
        "class_share",
        "feedback_accuracy",
        "estimated_precision",
    }
)
_LATENCY_QUANTILES: Final = {"p50_latency_ms": 0.5, "p95_latency_ms": 0.95, "p99_latency_ms": 0.99}
_DURATION_RE: Final = re.compile(r"^([0-9]+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MIN_WINDOW_S: Final = 60
_MAX_WINDOW_S: Final = 31 * 86400
# A label value the generated PromQL quotes: keep it to what needs no escaping anywhere
# (rule files, Grafana JSON, Alertmanager matchers).
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.:/+-]{1,128}$")
# Names appear inside templates and quoted strings of generated files: no control character either (NUL included).
_NAME_FORBIDDEN: Final = re.compile(r"[{}\"'\\\x00-\x1f\x7f]")
# A name starts with what its slug keeps (a leading "-" or space would vanish from rule names and uids).
_NAME_START: Final = re.compile(r"[A-Za-z0-9]")
_EMAIL_RE: Final = re.compile(EMAIL_PATTERN)
_SLACK_RE: Final = re.compile(SLACK_PATTERN)

_KNOWN_CONDITION_KEYS: Final = frozenset(
    {"metric", "operator", "threshold", "window", "for", "below", "min_images", "anomaly"}
)
_KNOWN_KEYS: Final = frozenset({"name", "model_id", "condition", "notify", "version", "arm", "per", "severity"})
DEFAULT_FOR: Final = "5m"
_CONFIDENCE_BOUNDS: Final = semconv.DETECTION_CONFIDENCE.bounds or ()
DEFAULT_BELOW: Final = 0.5
DEFAULT_ANOMALY_MIN_IMAGES: Final = 100
_OPTIONAL_KEYS: Final = ("notify", "version", "arm")
_OPTIONAL_CONDITION_KEYS: Final = ("anomaly",)


class AlertDefinitionError(ValueError):
    """An alert definition was refused; ``field`` names the key, the message what is valid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NotifyTarget:
    """Where a firing alert goes: ``email:``, ``slack:`` or ``webhook:`` and the address."""

    kind: NotifyKind
    address: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}"


@dataclass(frozen=True)
class Anomaly:
    """Compare the metric with its own past instead of a fixed value."""

    method: AnomalyMethod
    baseline: str | None = None
    """zscore: the longer window the mean and standard deviation come from."""


@dataclass(frozen=True)
class AlertDefinition:
    """One validated alert; the generators' only input."""

    name: str
    model_id: str
    metric: str
    """The metric family (``class_share``, ``avg_confidence``, ...), without the argument."""
    operator: Operator
    threshold: float
    window: str
    for_: str = DEFAULT_FOR
    argument: str | None = None
    """The class of ``class_share:<class>``/``estimated_precision:<class>`` or the kind of ``drift_score:<kind>``."""
    version: str | None = None
    arm: Literal["a", "b"] | None = None
    per: Per = "model"
    severity: Severity = "warning"
    below: float = DEFAULT_BELOW
    min_images: int = 0
    anomaly: Anomaly | None = None
    notify: tuple[NotifyTarget, ...] = ()

    def __hash__(self) -> int:
        # Kept after the first call: definitions key the generators' per-alert caches, which
        # hash every alert of the set each time the artifacts are regenerated.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def slug(self) -> str:
        """The alert's identifier in generated names (rule names, receivers, uids)."""
        return slug(self.name)

    @property
    def metric_ref(self) -> str:
        """The metric as the user wrote it (``class_share:car``)."""
        return f"{self.metric}:{self.argument}" if self.argument is not None else self.metric

    @property
    def quantile(self) -> float | None:
        """The latency quantile of a ``pNN_latency_ms`` metric."""
        return _LATENCY_QUANTILES.get(self.metric)

    @property
    def resolution(self) -> str | None:
        """For a latency quantile whose threshold lies between bucket bounds: the bucket it is read in."""
        if self.quantile is None or self.anomaly is not None:
            return None
        bounds = [b * 1000 for b in semconv.INFERENCE_DURATION.bounds or ()]
        if any(math.isclose(self.threshold, b, rel_tol=1e-9) for b in bounds):
            return None
        under, over = _nearest_bounds(self.threshold, bounds)
        return f"interpolated between the {_number(under or 0)} and {_number(over or 0)} ms bucket bounds"

    def describe(self) -> str:
        """One line a person reads in a notification: metric, operator, threshold, window."""
        symbol = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}[self.operator]
        if self.anomaly is None:
            text = f"{self.metric_ref} {symbol} {_number(self.threshold)} over {self.window}"
            resolution = self.resolution
            return f"{text} ({resolution})" if resolution is not None else text
        if self.anomaly.method == "zscore":
            sign = "-" if self.operator in ("lt", "lte") else ""
            return (
                f"{self.metric_ref} over {self.window} z-score {symbol} {sign}{_number(self.threshold)}"
                f" against its {self.anomaly.baseline} baseline"
            )
        sign = "-" if self.operator in ("lt", "lte") else "+"
        return (
            f"{self.metric_ref} over {self.window} changed {symbol} {sign}{_number(self.threshold * 100)}%"
            " against the same window a week ago"
        )

    def to_json(self) -> dict[str, Any]:
        """The definition in the input form, so that it round-trips through :func:`parse_alert`."""
        condition: dict[str, Any] = {
            "metric": self.metric_ref,
            "operator": self.operator,
            "threshold": self.threshold,
            "window": self.window,
            "for": self.for_,
        }
        if self.metric == "low_confidence_rate":
            condition["below"] = self.below
        if self.min_images:
            condition["min_images"] = self.min_images
        if self.anomaly is not None:
            anomaly: dict[str, Any] = {"method": self.anomaly.method}
            if self.anomaly.baseline is not None:
                anomaly["baseline"] = self.anomaly.baseline
            condition["anomaly"] = anomaly
        out: dict[str, Any] = {
            "name": self.name,
            "model_id": self.model_id,
            "condition": condition,
            "notify": [str(t) for t in self.notify],
            "per": self.per,
            "severity": self.severity,
        }
        if self.version is not None:
            out["version"] = self.version
        if self.arm is not None:
            out["arm"] = self.arm
        return out


def _number(value: float) -> str:
    return f"{value:g}"


def slug(name: str) -> str:
    """Lowercase letters, digits and dashes: safe in every generated identifier."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as ``15m`` (a single unit)."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(field: str, value: Any, *, minimum: float, maximum: float = _MAX_WINDOW_S) -> str:
    valid = "a Prometheus duration: a whole number and one unit of s, m, h, d, w (e.g. 90s, 15m, 1h, 7d)"
    if not isinstance(value, str) or _DURATION_RE.fullmatch(value) is None:
        raise AlertDefinitionError(field, f"expected {valid}, got {value!r}")
    seconds = duration_seconds(value)
    if not minimum <= seconds <= maximum:
        raise AlertDefinitionError(field, f"{value} is out of range: use from {minimum:g}s to {maximum // 86400:g}d")
    return value


def _string(field: str, value: Any, *, pattern: re.Pattern[str] = _NAME_RE) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise AlertDefinitionError(
            field, f"expected 1-128 characters of letters, digits and _ . : / + -, got {value!r}"
        )
    return value


def _choice(field: str, value: Any, choices: Sequence[str]) -> Any:
    if value not in choices:
        raise AlertDefinitionError(field, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _nearest_bounds(value: float, bounds: Sequence[float]) -> tuple[float | None, float | None]:
    """The bucket bounds just under and just over ``value``."""
    under = max((b for b in bounds if b < value), default=None)
    over = min((b for b in bounds if b > value), default=None)
    return under, over


def _below_refusal(below: Any) -> str:
    if isinstance(below, (int, float)) and not isinstance(below, bool) and math.isfinite(below):
        under, over = _nearest_bounds(float(below), _CONFIDENCE_BOUNDS)
        near = " or ".join(_number(b) for b in (under, over) if b is not None)
        return (
            f"the share of detections under {below!r} cannot be computed from the confidence histogram,"
            f" whose bounds nearest to it are {near}; use one of them"
        )
    return f"expected a confidence bucket bound ({_bounds_text(_CONFIDENCE_BOUNDS)}), got {below!r}"


def _bounds_text(bounds: Sequence[float], scale: float = 1.0) -> str:
    return ", ".join(_number(round(b * scale, 6)) for b in bounds)


def _threshold(metric: str, anomaly: Anomaly | None, value: Any) -> float:
    field = "condition.threshold"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AlertDefinitionError(field, f"expected a finite number, got {value!r}")
    threshold = float(value)
    if anomaly is not None:
        if anomaly.method == "zscore" and not 0 < threshold <= 10:
            raise AlertDefinitionError(
                field, f"a z-score threshold is a number of standard deviations in (0, 10], got {value!r}"
            )
        if anomaly.method == "week_ago" and not 0 < threshold <= 10:
            raise AlertDefinitionError(field, f"a relative change in (0, 10] (0.2 = 20%), got {value!r}")
        return threshold
    if metric == "avg_confidence":
        if not 0 <= threshold <= 1:
            raise AlertDefinitionError(field, f"a mean confidence lies in [0, 1], got {value!r}")
    elif metric in _LATENCY_QUANTILES:
        bounds = semconv.INFERENCE_DURATION.bounds or ()
        top = max(bounds) * 1000
        if not 0 < threshold <= top:
            raise AlertDefinitionError(
                field,
                f"a latency quantile is read from buckets up to {_number(top)} ms and is never above it:"
                f" use a threshold in (0, {_number(top)}] ms, got {value!r}",
            )
    elif metric in _RATIOS:
        if not 0 <= threshold <= 1:
            raise AlertDefinitionError(field, f"{metric} is a share: use a threshold from 0 to 1, got {value!r}")
    elif not 0 <= threshold <= MAX_THRESHOLD:
        raise AlertDefinitionError(
            field, f"{metric} is never negative: use a threshold from 0 to {MAX_THRESHOLD:g}, got {value!r}"
        )
    return threshold


def _refuse_nulls(data: Mapping[str, Any], keys: Sequence[str], prefix: str = "") -> None:
    """An optional key is left out, never null: one spelling, the one the OpenAPI document describes.

    A null read as "absent" is also a typo's way in (``anomaly:`` with its value on the
    wrong line of a YAML file silently makes a plain threshold alert).
    """
    for key in keys:
        if key in data and data[key] is None:
            raise AlertDefinitionError(f"{prefix}{key}", "null is not a value here: leave the key out for the default")


def _metric(value: Any) -> tuple[str, str | None]:
    field = "condition.metric"
    valid = f"expected one of {', '.join(METRICS)}"
    if not isinstance(value, str):
        raise AlertDefinitionError(field, f"{valid}, got {value!r}")
    family, sep, argument = value.partition(":")
    if family in ("class_share", "drift_score"):
        what = "class" if family == "class_share" else "drift kind"
        if not sep or not argument:
            raise AlertDefinitionError(field, f"{family} needs a {what}: {family}:<{what.rsplit(maxsplit=1)[-1]}>")
        return family, _string(field, argument)
    if family == "estimated_precision" and sep:
        if not argument:
            raise AlertDefinitionError(field, "estimated_precision:<class>, or estimated_precision for every class")
        return family, _string(field, argument)
    if sep or value not in METRICS:
        raise AlertDefinitionError(field, f"{valid}, got {value!r}")
    return family, None


def _anomaly(value: Any) -> Anomaly | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"method": value}
    if not isinstance(value, Mapping):
        raise AlertDefinitionError(
            "condition.anomaly", f"expected an object such as {{'method': 'zscore', 'baseline': '7d'}}, got {value!r}"
        )
    unknown = set(value) - {"method", "baseline"}
    if unknown:
        raise AlertDefinitionError(
            f"condition.anomaly.{sorted(unknown)[0]}", "unknown key; valid keys: method, baseline"
        )
    method = _choice("condition.anomaly.method", value.get("method"), get_args(AnomalyMethod))
    if method == "week_ago":
        if value.get("baseline") is not None:
            raise AlertDefinitionError(
                "condition.anomaly.baseline", "week_ago compares with one week earlier: omit baseline"
            )
        return Anomaly(method="week_ago")
    baseline = _duration("condition.anomaly.baseline", value.get("baseline", "7d"), minimum=3600)
    return Anomaly(method="zscore", baseline=baseline)


def _notify(value: Any) -> tuple[NotifyTarget, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise AlertDefinitionError(
            "notify", f"expected a list such as ['email:team@company.com', 'slack:#ml-alerts'], got {value!r}"
        )
    if len(value) > MAX_NOTIFY:
        raise AlertDefinitionError("notify", f"at most {MAX_NOTIFY} targets, got {len(value)}")
    targets: list[NotifyTarget] = []
    for index, item in enumerate(value):
        field = f"notify[{index}]"
        if not isinstance(item, str) or ":" not in item:
            raise AlertDefinitionError(
                field, f"expected email:<address>, slack:#<channel> or webhook:<URL>, got {item!r}"
            )
        kind, _, address = item.partition(":")
        if kind == "email" and _EMAIL_RE.fullmatch(address):
            targets.append(NotifyTarget("email", address))
        elif kind == "slack" and _SLACK_RE.fullmatch(address):
            targets.append(NotifyTarget("slack", address))
        elif kind == "webhook" and re.fullmatch(WEBHOOK_PATTERN, address):
            targets.append(NotifyTarget("webhook", address))
        else:
            raise AlertDefinitionError(
                field,
                f"expected email:<address>, slack:#<lowercase channel> or webhook:<http(s) URL>, got {item!r}",
            )
    if len(set(targets)) != len(targets):
        raise AlertDefinitionError("notify", "a target is listed twice")
    return tuple(targets)


def parse_alert(data: Mapping[str, Any]) -> AlertDefinition:
    """Validate one alert definition (the ``create_alert`` body plus ``model_id``)."""
    if not isinstance(data, Mapping):
        raise AlertDefinitionError("alert", f"expected an object with name, model_id and condition, got {data!r}")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0] or "alert"  # an empty key still gets a field name
        raise AlertDefinitionError(key, f"unknown key; valid keys: {', '.join(sorted(_KNOWN_KEYS))}")
    name = data.get("name")
    if not isinstance(name, str) or len(name) > 100 or _NAME_START.match(name) is None or _NAME_FORBIDDEN.search(name):
        raise AlertDefinitionError(
            "name",
            f"expected 1-100 characters starting with an ASCII letter or digit, without braces, quotes,"
            f" backslashes or control characters, got {name!r}",
        )
    model_id = _string("model_id", data.get("model_id"))
    _refuse_nulls(data, _OPTIONAL_KEYS)
    condition = data.get("condition")
    if not isinstance(condition, Mapping):
        raise AlertDefinitionError(
            "condition",
            "expected an object such as "
            "{'metric': 'avg_confidence', 'operator': 'lt', 'threshold': 0.7, 'window': '1h'}",
        )
    unknown = set(condition) - _KNOWN_CONDITION_KEYS
    if unknown:
        raise AlertDefinitionError(
            f"condition.{sorted(unknown)[0]}", f"unknown key; valid keys: {', '.join(sorted(_KNOWN_CONDITION_KEYS))}"
        )
    for key in ("metric", "operator", "threshold", "window"):
        if key not in condition:
            raise AlertDefinitionError(f"condition.{key}", "required")
    _refuse_nulls(condition, _OPTIONAL_CONDITION_KEYS, "condition.")
    metric, argument = _metric(condition["metric"])
    operator = _choice("condition.operator", condition["operator"], get_args(Operator))
    window = _duration("condition.window", condition["window"], minimum=_MIN_WINDOW_S)
    for_ = _duration("condition.for", condition.get("for", DEFAULT_FOR), minimum=0, maximum=86400)
    anomaly = _anomaly(condition.get("anomaly"))
    if (
        anomaly is not None
        and anomaly.baseline is not None
        and duration_seconds(anomaly.baseline) < 4 * duration_seconds(window)
    ):
        raise AlertDefinitionError(
            "condition.anomaly.baseline", f"must be at least four windows ({window}) long, got {anomaly.baseline}"
        )
    threshold = _threshold(metric, anomaly, condition["threshold"])
    below = condition.get("below", DEFAULT_BELOW)
    if "below" in condition and metric != "low_confidence_rate":
        raise AlertDefinitionError("condition.below", "only low_confidence_rate takes a confidence cut-off")
    if (
        isinstance(below, bool)
        or not isinstance(below, (int, float))
        or not semconv.is_bucket_bound(semconv.DETECTION_CONFIDENCE, float(below))
    ):
        raise AlertDefinitionError("condition.below", _below_refusal(below))
    default_min = DEFAULT_ANOMALY_MIN_IMAGES if anomaly is not None else 0
    min_images = condition.get("min_images", default_min)
    if isinstance(min_images, float) and min_images.is_integer():  # JSON's 100.0 is the integer 100
        min_images = int(min_images)
    if isinstance(min_images, bool) or not isinstance(min_images, int) or not 0 <= min_images <= MAX_MIN_IMAGES:
        raise AlertDefinitionError(
            "condition.min_images", f"expected a whole number from 0 to {MAX_MIN_IMAGES:_}, got {min_images!r}"
        )
    version = data.get("version")
    if version is not None:
        version = _string("version", version)
    arm = data.get("arm")
    if arm is not None:
        arm = _choice("arm", arm, ("a", "b"))
    per = _choice("per", data.get("per", "model"), get_args(Per))
    if metric in ARMLESS_METRICS:
        if arm is not None:
            raise AlertDefinitionError("arm", f"{metric} is not exported per A/B arm: leave arm out")
        if per == "arm":
            raise AlertDefinitionError("per", f"{metric} is not exported per A/B arm: use per model or version")
    severity = _choice("severity", data.get("severity", "warning"), get_args(Severity))
    return AlertDefinition(
        name=name.strip(),
        model_id=model_id,
        metric=metric,
        argument=argument,
        operator=operator,
        threshold=threshold,
        window=window,
        for_=for_,
        version=version,
        arm=arm,
        per=per,
        severity=severity,
        below=float(below),
        min_images=min_images,
        anomaly=anomaly,
        notify=_notify(data.get("notify")),
    )


def parse_alerts(items: Any) -> tuple[AlertDefinition, ...]:
    """Validate a list of definitions (``alerts:`` in ``detwatch.yaml``); names must be unique."""
    if items is None:
        return ()
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise AlertDefinitionError("alerts", "expected a list of alert definitions")
    alerts: list[AlertDefinition] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            alert = parse_alert(item)
        except AlertDefinitionError as exc:
            raise AlertDefinitionError(f"alerts[{index}].{exc.field}", exc.message) from None
        if alert.slug in seen:
            raise AlertDefinitionError(
                f"alerts[{index}].name", f"{alert.name!r} clashes with alerts[{seen[alert.slug]}]: names must differ"
            )
        seen[alert.slug] = index
        alerts.append(alert)
    return tuple(alerts)
