"""Per-arm results of an A/B test and its verdict, from the companion's per-hour aggregates.

Arm A is the traffic of ``model_a_id`` tagged ``objdet.ab.variant = a`` (what
:class:`detwatch_instrumentation.ABRouter` tags), arm B that of ``model_b_id`` tagged
``b``, both between the test's start and end (events' own time), and optionally one
version each. Everything is read from mergeable cells (counts, sums, sums of squares,
per-image sums, latency bins), so that results for ten million routed predictions
cost what results for a thousand do: the work grows with hours times cells, not with
predictions.

The unit of evidence is the image. Per-detection metrics (confidence, class mix) use
the cluster-robust variances of :mod:`detwatch.stats.clustered` (detections of one image
move together, and treating them as independent made A/A tests declare winners in a
quarter of runs); each comparison reports its ``effective_sample_size`` per arm (the
independent detections or images the evidence is worth), its ``design_effect`` and
``variance_assumes_independence``, true when some of its detections come from cells
stored before the per-image sums existed (those count as independent). The feedback
score takes the image too as its unit: several posts on one image (one per detection)
are one judgement of the model on one input, summed per image from the feedback rows.
The empty-image rate, detections per image and latency are per image already.

Every metric is compared (B - A, its interval and p-values); the configured
``metrics`` are the family whose p-values are corrected together (Holm), and the
first of them decides the verdict. Each hour boundary is one look of the sequential test (:func:`.statistics.msprt`):
the always-valid p-value is the minimum over those looks, valid however often anyone
reads the results. Feedback scores come from feedback joined to stored predictions,
so feedback on predictions already expired by retention no longer counts.

Verdicts (primary metric = the first in ``metrics``):

- ``running``: before the end, while no decision is reached;
- ``b_better`` / ``a_better``: the primary metric's always-valid p-value is below
  alpha (any time) and the difference points that way;
- ``no_difference``: at the end, the confidence sequence lies within +- the metric's
  ``min_effect`` (the arms are equivalent for practical purposes);
- ``inconclusive``: at the end otherwise; also whenever the sample-ratio check fails
  (the split observed is not the one configured, so assignment is broken and no
  comparison can be trusted) or an arm has fewer than ``min_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from detwatch.abtest.config import HIGHER_IS_BETTER, METRICS, ABTestConfig
from detwatch.abtest.statistics import (
    Moments,
    TestResult,
    class_mix_test,
    mann_whitney_binned,
    minimum_detectable_effect,
    msprt,
    quantile_from_bins,
    rate_test,
    sample_ratio_mismatch,
    welch_from_variances,
    welch_test,
)
from detwatch.contract import bins
from detwatch.stats.clustered import ImageSums, rao_scott_deff
from detwatch.stats.multiple_testing import holm
from detwatch.storage.records import AggregateRow

__all__ = ["HOURLY_KINDS", "KEYED_KINDS", "KINDS", "SRM_ALPHA", "ArmData", "FeedbackCount", "compute_results"]

KINDS: Final = ("images", "empty_images", "detections", "confidence_all", "latency_ms", "latency_ms_sum")
"""The aggregate kinds the results read (a small share of all cells)."""

HOURLY_KINDS: Final = ("images", "empty_images", "detections", "confidence_all", "latency_ms_sum")
"""Kinds read per hour (keys added up) for the sequential looks."""

KEYED_KINDS: Final = ("detections", "latency_ms")
"""Kinds read per key (hours added up): class mix and latency bins."""

SRM_ALPHA: Final = 0.001
"""A sample-ratio mismatch is declared below this p-value: strict, because a false alarm
voids a valid test, while a real mismatch shows up with overwhelming evidence."""

NS_PER_SECOND: Final = 1_000_000_000
SECONDS_PER_DAY: Final = 86_400

_ZERO = Moments(0, 0.0, 0.0)
_NONE = ImageSums()


@dataclass(frozen=True)
class FeedbackCount:
    """Feedback posts of one type on predictions of one arm in one hour."""

    arm: str
    hour_unix: int
    type: str
    count: int


@dataclass
class _Hour:
    images: Moments = _ZERO
    empty: int = 0
    confidence: Moments = _ZERO
    confidence_all: ImageSums = _NONE
    latency: Moments = _ZERO
    feedback_correct: int = 0
    feedback_total: int = 0
    feedback_images: ImageSums = _NONE

    def clustered_feedback(self) -> ImageSums:
        """Feedback posts (value: the correct ones) with their per-image sums; posts without them as independent."""
        sums = self.feedback_images
        missing = self.feedback_total - round(sums.count)
        if missing <= 0:
            return sums
        correct = max(0.0, self.feedback_correct - sums.value)
        return sums + ImageSums.independent_items(missing, correct, correct)

    def clustered_confidence(self) -> ImageSums:
        """All confidences with their per-image sums; detections stored without them count as independent."""
        c, every = self.confidence, self.confidence_all
        missing = c.n - round(every.count)
        if missing <= 0:
            return every
        return every + ImageSums.independent_items(missing, c.total - every.value, c.total_sq - every.value_sq)


@dataclass
class ArmData:
    """One arm's merged cells, overall and per hour."""

    hours: dict[int, _Hour] = field(default_factory=dict)
    latency_bins: np.ndarray = field(default_factory=lambda: np.zeros(bins.LATENCY_BINS, dtype=np.int64))
    classes: dict[str, int] = field(default_factory=dict)
    class_sums: dict[str, ImageSums] = field(default_factory=dict)
    feedback: dict[str, int] = field(default_factory=dict)

    def hour(self, hour_unix: int) -> _Hour:
        h = self.hours.get(hour_unix)
        if h is None:
            h = self.hours[hour_unix] = _Hour()
        return h

    def add_cell(self, row: AggregateRow) -> None:
        """Add one stored cell (both its hour's sums and its key's)."""
        sums = ImageSums.of(row)
        self.add_hour_sum(row.hour_unix, row.kind, sums)
        self.add_key_sum(row.kind, row.key, sums)

    def add_hour_sum(self, hour_unix: int, kind: str, sums: ImageSums) -> None:
        """Add the sums of one kind in one hour (keys added up): what the sequential looks need."""
        h = self.hour(hour_unix) if kind in HOURLY_KINDS else None
        if h is None:
            return
        count = round(sums.count)
        m = Moments(count, sums.value, sums.value_sq)
        if kind == "confidence_all":
            h.confidence_all = h.confidence_all + sums
        elif kind == "images":
            h.images = h.images + m
        elif kind == "empty_images":
            h.empty += count
        elif kind == "detections":
            h.confidence = h.confidence + m
        else:  # latency_ms_sum
            h.latency = h.latency + m

    def add_key_sum(self, kind: str, key: str, sums: ImageSums) -> None:
        """Add one kind's key over the whole test (hours added up): the class mix and latency bins."""
        count = round(sums.count)
        if kind == "detections":
            self.classes[key] = self.classes.get(key, 0) + count
            self.class_sums[key] = self.class_sums.get(key, _NONE) + sums
        elif kind == "latency_ms":
            self.latency_bins[int(key)] += count

    def class_mix_shares(self, classes: list[str]) -> list[ImageSums]:
        """Each class's share of the arm's detections, as ratio sums (:meth:`ImageSums.share_of`)."""
        whole = self.total().clustered_confidence()
        return [self.class_sums.get(c, _NONE).share_of(whole) for c in classes]

    def add_feedback(self, item: FeedbackCount) -> None:
        h = self.hour(item.hour_unix)
        h.feedback_total += item.count
        if item.type == "correct":
            h.feedback_correct += item.count
        self.feedback[item.type] = self.feedback.get(item.type, 0) + item.count

    def add_feedback_images(self, hour_unix: int, sums: ImageSums) -> None:
        """Add one hour's feedback summed per image (posts, correct ones: :meth:`_Hour.clustered_feedback`)."""
        h = self.hour(hour_unix)
        h.feedback_images = h.feedback_images + sums

    def total(self) -> _Hour:
        t = _Hour()
        for h in self.hours.values():
            t = _merge(t, h)
        return t


def _merge(a: _Hour, b: _Hour) -> _Hour:
    return _Hour(
        images=a.images + b.images,
        empty=a.empty + b.empty,
        confidence=a.confidence + b.confidence,
        confidence_all=a.confidence_all + b.confidence_all,
        latency=a.latency + b.latency,
        feedback_correct=a.feedback_correct + b.feedback_correct,
        feedback_total=a.feedback_total + b.feedback_total,
        feedback_images=a.feedback_images + b.feedback_images,
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _rate(x: int, n: int) -> float:
    return x / n if n else math.nan


def _look(metric: str, a: _Hour, b: _Hour) -> tuple[float, float]:
    """(B - A, its variance) of ``metric`` on cumulative data; NaN while undefined."""
    if metric == "confidence":
        ca, cb = a.clustered_confidence(), b.clustered_confidence()
        return cb.mean - ca.mean, ca.variance + cb.variance
    if metric in ("latency", "detections_per_image"):
        attr = {"latency": "latency", "detections_per_image": "images"}[metric]
        ma, mb = getattr(a, attr), getattr(b, attr)
        if ma.n < 2 or mb.n < 2:
            return math.nan, math.nan
        return mb.mean - ma.mean, ma.variance / ma.n + mb.variance / mb.n
    if metric == "empty_image_rate":
        xa, na, xb, nb = a.empty, a.images.n, b.empty, b.images.n
    elif metric == "feedback_score":
        fa, fb = a.clustered_feedback(), b.clustered_feedback()
        return fb.mean - fa.mean, fa.variance + fb.variance
    else:
        return math.nan, math.nan
    if na == 0 or nb == 0:
        return math.nan, math.nan
    pa, pb = xa / na, xb / nb
    return pb - pa, pa * (1 - pa) / na + pb * (1 - pb) / nb


def _fixed(metric: str, a: _Hour, b: _Hour, *, arm_a: ArmData, arm_b: ArmData, alpha: float) -> TestResult:
    if metric == "confidence":
        ca, cb = a.clustered_confidence(), b.clustered_confidence()
        return welch_from_variances(
            cb.mean - ca.mean, ca.variance, cb.variance, df_a=ca.images - 1, df_b=cb.images - 1, alpha=alpha
        )
    if metric == "detections_per_image":
        return welch_test(a.images, b.images, alpha)
    if metric == "latency":
        # Latency is skewed: the rank test gives the p-value, Welch the interval of the means.
        welch = welch_test(a.latency, b.latency, alpha)
        mw = mann_whitney_binned(arm_a.latency_bins.tolist(), arm_b.latency_bins.tolist())
        return TestResult("mann_whitney_u", mw.statistic, mw.p_value, welch.difference, welch.ci_low, welch.ci_high)
    if metric == "empty_image_rate":
        return rate_test(a.empty, a.images.n, b.empty, b.images.n, alpha)
    if metric == "feedback_score":
        fa, fb = a.clustered_feedback(), b.clustered_feedback()
        return rate_test(
            a.feedback_correct, a.feedback_total, b.feedback_correct, b.feedback_total, alpha,
            deff_a=fa.design_effect, deff_b=fb.design_effect,
        )  # fmt: skip
    return class_mix_test(arm_a.classes, arm_b.classes, _class_mix_deff(arm_a, arm_b))


def _class_mix_deff(arm_a: ArmData, arm_b: ArmData) -> float:
    classes = sorted(set(arm_a.classes) | set(arm_b.classes))
    return rao_scott_deff(arm_a.class_mix_shares(classes), arm_b.class_mix_shares(classes))


_UNITS: Final = {
    "confidence": "detection, clustered by image",
    "class_mix": "detection, clustered by image",
    "feedback_score": "feedback post, clustered by image",
}
"""The unit each comparison counts (the rest count images)."""


def _evidence(metric: str, a: _Hour, b: _Hour, *, arm_a: ArmData, arm_b: ArmData) -> dict[str, Any]:
    """What a comparison's evidence is worth: effective sample size and design effect per arm.

    Per-detection metrics count detections divided by their design effect (the image is
    the unit); image-level metrics count images (posts for the feedback score), design
    effect 1.
    """
    if metric == "confidence":
        ca, cb = a.clustered_confidence(), b.clustered_confidence()
        sizes, deffs = (ca.effective_size, cb.effective_size), (ca.design_effect, cb.design_effect)
        independent = ca.independent + cb.independent > 0
    elif metric == "class_mix":
        deff = _class_mix_deff(arm_a, arm_b)
        ca, cb = a.clustered_confidence(), b.clustered_confidence()
        sizes, deffs = (ca.count / deff, cb.count / deff), (deff, deff)
        independent = ca.independent + cb.independent > 0
    elif metric == "feedback_score":
        fa, fb = a.clustered_feedback(), b.clustered_feedback()
        sizes, deffs = (fa.effective_size, fb.effective_size), (fa.design_effect, fb.design_effect)
        independent = fa.independent + fb.independent > 0
    else:
        counts = (a.latency.n, b.latency.n) if metric == "latency" else (a.images.n, b.images.n)
        sizes, deffs, independent = (float(counts[0]), float(counts[1])), (1.0, 1.0), False
    return {
        "unit": _UNITS.get(metric, "image"),
        "effective_sample_size": {"a": _finite(sizes[0]), "b": _finite(sizes[1])},
        "design_effect": {"a": _finite(deffs[0]), "b": _finite(deffs[1])},
        "variance_assumes_independence": independent,
    }


def _arm_summary(model_id: str, version: str | None, arm: ArmData) -> dict[str, Any]:
    t = arm.total()
    edges = bins.latency_edges_ms()
    counts = arm.latency_bins.tolist()
    total_classes = sum(arm.classes.values())
    return {
        "model_id": model_id,
        "model_version": version,
        "images": t.images.n,
        "detections": t.confidence.n,
        "avg_confidence": _finite(t.confidence.mean),
        "confidence_sd": _finite(math.sqrt(t.confidence.variance)) if t.confidence.n > 1 else None,
        "latency_ms": {
            "mean": _finite(t.latency.mean),
            "p50": _finite(quantile_from_bins(counts, edges, 0.5)),
            "p95": _finite(quantile_from_bins(counts, edges, 0.95)),
            "p99": _finite(quantile_from_bins(counts, edges, 0.99)),
            "count": t.latency.n,
        },
        "detections_per_image": _finite(t.images.mean),
        "empty_image_rate": _finite(_rate(t.empty, t.images.n)),
        "feedback_score": _finite(_rate(t.feedback_correct, t.feedback_total)),
        "feedback_count": t.feedback_total,
        "feedback": dict(sorted(arm.feedback.items())),
        "class_mix": {c: n / total_classes for c, n in sorted(arm.classes.items())} if total_classes else {},
    }


def compute_results(
    *,
    test: Mapping[str, Any],
    config: ABTestConfig,
    arm_a: ArmData,
    arm_b: ArmData,
    feedback: Iterable[FeedbackCount],
    now_unix_nano: int,
    feedback_images: Iterable[tuple[str, int, ImageSums]] = (),
    arms_by: str = "ab_variant",
) -> dict[str, Any]:
    """The results document of ``GET /v1/ab-tests/{id}/results``.

    ``arm_a``/``arm_b`` hold the aggregate cells of each arm's model in the test's
    window, already restricted to the arm's variant and version; ``test`` carries
    ``id``, ``name``, ``model_a_id``, ``model_b_id``, ``start_unix_nano`` and
    ``end_unix_nano``. ``arms_by`` says how the arms' traffic was told apart
    (``ab_variant``: the router's tag; ``model``: the arms' model ids and versions).
    """
    for item in feedback:
        (arm_a if item.arm == "a" else arm_b).add_feedback(item)
    for arm, hour_unix, sums in feedback_images:
        (arm_a if arm == "a" else arm_b).add_feedback_images(hour_unix, sums)

    start, end = int(test["start_unix_nano"]), int(test["end_unix_nano"])
    ended = now_unix_nano >= end
    elapsed_days = max(0.0, (min(now_unix_nano, end) - start) / NS_PER_SECOND / SECONDS_PER_DAY)
    ta, tb = arm_a.total(), arm_b.total()
    # Every metric is compared; the configured ones form the family whose p-values are
    # corrected together (and the first decides the verdict).
    compared = [*config.metrics, *(m for m in METRICS if m not in config.metrics)]
    looks = _sequential_looks(compared, arm_a, arm_b)
    comparisons = _comparisons(compared, looks, config, ta, tb, arm_a=arm_a, arm_b=arm_b)

    srm_chi2, srm_p = sample_ratio_mismatch(ta.images.n, tb.images.n, config.traffic_split)
    mismatch = math.isfinite(srm_p) and srm_p < SRM_ALPHA
    primary = config.metrics[0]
    pc = comparisons[primary]
    verdict, reason = _verdict(config, primary, pc, ta, tb, ended=ended, mismatch=mismatch)

    return {
        "id": test["id"],
        "name": test["name"],
        "status": "completed" if ended else "running",
        "start_unix_nano": start,
        "end_unix_nano": end,
        "elapsed_days": elapsed_days,
        "config": config.as_json(),
        "model_a": _arm_summary(str(test["model_a_id"]), config.model_a_version, arm_a),
        "model_b": _arm_summary(str(test["model_b_id"]), config.model_b_version, arm_b),
        "primary_metric": primary,
        "p_value": _finite(pc["p_value_always_valid"] if pc["p_value_always_valid"] is not None else math.nan),
        "p_value_method": "mSPRT always-valid p-value (valid at any look)",
        "p_value_fixed_horizon": pc["p_value_fixed_horizon"],
        "p_values_corrected": {m: comparisons[m]["p_value_corrected"] for m in config.metrics},
        "comparisons": comparisons,
        "verdict": verdict,
        "verdict_reason": reason,
        "valid": not mismatch,
        "arms_by": arms_by,
        "sample_ratio": _sample_ratio(config, arms_by, ta, tb, (srm_chi2, srm_p), mismatch=mismatch),
        "power": _power(config, primary, looks[primary], elapsed_days),
    }


def _sequential_looks(compared: Sequence[str], arm_a: ArmData, arm_b: ArmData) -> dict[str, list[tuple[float, float]]]:
    """Each metric's ``(difference, variance)`` at every hour boundary, cumulative from the start: the mSPRT's looks."""
    hours = sorted(set(arm_a.hours) | set(arm_b.hours))
    looks: dict[str, list[tuple[float, float]]] = {m: [] for m in compared}
    ca, cb = _Hour(), _Hour()
    for hour in hours:
        ca = _merge(ca, arm_a.hours.get(hour, _Hour()))
        cb = _merge(cb, arm_b.hours.get(hour, _Hour()))
        for metric in compared:
            looks[metric].append(_look(metric, ca, cb))
    return looks


def _comparisons(
    compared: Sequence[str],
    looks: Mapping[str, list[tuple[float, float]]],
    config: ABTestConfig,
    ta: _Hour,
    tb: _Hour,
    *,
    arm_a: ArmData,
    arm_b: ArmData,
) -> dict[str, dict[str, Any]]:
    """Every metric's fixed-horizon test, confidence sequence and evidence; the family's Holm-corrected p-values."""
    comparisons: dict[str, dict[str, Any]] = {}
    always_valid: list[float] = []
    for metric in compared:
        fixed = _fixed(metric, ta, tb, arm_a=arm_a, arm_b=arm_b, alpha=config.alpha)
        min_effect = config.min_effect[metric]
        seq_p, cs = math.nan, (math.nan, math.nan)
        if metric != "class_mix":
            seq = msprt(looks[metric], tau2=min_effect * min_effect, alpha=config.alpha)
            seq_p, cs = seq.p_value, (seq.ci_low, seq.ci_high)
        if metric in config.metrics:
            always_valid.append(seq_p if metric != "class_mix" else fixed.p_value)
        comparisons[metric] = {
            "in_family": metric in config.metrics,
            "difference": _finite(fixed.difference),
            "ci_low": _finite(fixed.ci_low),
            "ci_high": _finite(fixed.ci_high),
            "confidence_sequence": [_finite(cs[0]), _finite(cs[1])],
            "p_value_always_valid": _finite(seq_p),
            "p_value_fixed_horizon": _finite(fixed.p_value),
            "fixed_horizon_method": fixed.method,
            "min_effect": min_effect,
            "higher_is_better": HIGHER_IS_BETTER[metric],
            **_evidence(metric, ta, tb, arm_a=arm_a, arm_b=arm_b),
        }
    corrected = holm(always_valid)
    for metric in compared:
        comparisons[metric]["p_value_corrected"] = None
    for metric, p in zip(config.metrics, corrected, strict=True):
        comparisons[metric]["p_value_corrected"] = _finite(p)
    return comparisons


def _sample_ratio(
    config: ABTestConfig, arms_by: str, ta: _Hour, tb: _Hour, test: tuple[float, float], *, mismatch: bool
) -> dict[str, Any]:
    """The sample-ratio check: the arms' share of images against the split the test was configured with."""
    chi2, p_value = test
    n_total = ta.images.n + tb.images.n
    return {
        "expected_from": (
            "the traffic_split the router applied"
            if arms_by == "ab_variant"
            else "the configured traffic_split: the split was made outside detwatch, so a mismatch may"
            " mean the deployment's weights differ from it"
        ),
        "configured": config.traffic_split,
        "observed": _finite(tb.images.n / n_total) if n_total else None,
        "chi2": _finite(chi2),
        "p_value": _finite(p_value),
        "mismatch": mismatch,
    }


def _power(config: ABTestConfig, primary: str, looks: list[tuple[float, float]], elapsed_days: float) -> dict[str, Any]:
    """The primary metric's minimum detectable effect today and the days left until it reaches ``min_effect``."""
    diff, var = looks[-1] if looks else (math.nan, math.nan)
    mde = minimum_detectable_effect(var, alpha=config.alpha, power=0.8)
    projected: float | None = None
    if math.isfinite(mde) and elapsed_days > 0:
        # Variance falls as 1/n: the days at which the MDE reaches min_effect, at today's rate.
        needed = elapsed_days * (mde / config.min_effect[primary]) ** 2
        projected = max(0.0, needed - elapsed_days)
    return {
        "metric": primary,
        "minimum_detectable_effect": _finite(mde),
        "min_effect": config.min_effect[primary],
        "observed_difference": _finite(diff),
        "projected_days_to_decision": projected,
    }


def _verdict(
    config: ABTestConfig,
    primary: str,
    pc: Mapping[str, Any],
    ta: _Hour,
    tb: _Hour,
    *,
    ended: bool,
    mismatch: bool,
) -> tuple[str, str]:
    if mismatch:
        return "inconclusive", "sample ratio mismatch: the observed split differs from the configured one"
    if min(ta.images.n, tb.images.n) < config.min_samples:
        reason = f"fewer than {config.min_samples} images in an arm"
        return ("inconclusive" if ended else "running"), reason
    if primary == "feedback_score" and min(ta.feedback_total, tb.feedback_total) < config.min_feedback:
        reason = f"fewer than {config.min_feedback} feedback posts in an arm"
        return ("inconclusive" if ended else "running"), reason
    p = pc["p_value_always_valid"]
    diff = pc["difference"]
    better = HIGHER_IS_BETTER.get(primary)
    if p is not None and p < config.alpha and diff is not None and better is not None:
        b_wins = (diff > 0) == better
        return ("b_better" if b_wins else "a_better"), f"always-valid p = {p:.4g} < alpha = {config.alpha:g}"
    if not ended:
        return "running", "no decision yet; the always-valid p-value may be read at any time"
    low, high = pc["confidence_sequence"]
    margin = config.min_effect[primary]
    if low is not None and high is not None and -margin <= low and high <= margin:
        return "no_difference", f"the confidence sequence lies within +-{margin:g} ({primary}'s min_effect)"
    return "inconclusive", "the test ended without a decision; the confidence sequence is wider than min_effect"
