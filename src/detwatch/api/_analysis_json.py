"""The analyses' results as the API answers them: the one place a drift report or A/B result becomes JSON.

The analyses (:mod:`detwatch.drift`, :mod:`detwatch.abtest`) return frozen dataclasses
so that the scheduler, the CLI and the tests read typed fields; only the HTTP edge
needs the wire form, and keeping it here lets the two change apart. Non-finite
floats are written as each answer always wrote them: the drift report keeps the
float (Flask writes ``NaN``), the A/B results write ``null``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from detwatch.abtest.outcomes import ABResults, ArmSummary, Comparison
from detwatch.drift import DriftReport, PeriodSummary
from detwatch.quality import (
    EstimatedPrecision,
    LabelFreePrecision,
    LabelFreeRecall,
    Metric,
    MetricSet,
    ModelQuality,
    SampleEstimate,
)

__all__ = ["ab_results_json", "drift_report_json", "quality_json"]


def drift_report_json(report: DriftReport, model_id: str | None = None) -> dict[str, Any]:
    """The answer of ``POST /v1/models/{model_id}/drift`` (``model_id`` first when given)."""
    head: dict[str, Any] = {} if model_id is None else {"model_id": model_id}
    return {
        **head,
        "status": report.status,
        "significant_drift": report.significant_drift,
        "class_drift": report.class_drift,
        "confidence_drift": report.confidence_drift,
        "count_drift": report.count_drift,
        "affected_classes": list(report.affected_classes),
        "new_classes": list(report.new_classes),
        "vanished_classes": list(report.vanished_classes),
        "reference": _period_json(report.reference),
        "current": _period_json(report.current),
        "classes": [asdict(c) for c in report.classes],
        "tests": [{**asdict(f), "distances": dict(f.distances)} for f in report.findings],
        "insufficient": list(report.insufficient),
        "correction": "holm",
        "config": asdict(report.config),
    }


def _period_json(summary: PeriodSummary) -> dict[str, Any]:
    window: dict[str, Any] = {}
    if summary.period is not None:
        window = {**summary.period.to_json(), "model_version": summary.model_version, "ab_variant": summary.ab_variant}
    return {
        **window,
        "intra_image_correlation": summary.intra_image_correlation,
        "effective_detections": summary.effective_detections,
        "detections_assumed_independent": summary.detections_assumed_independent,
        "images": summary.images,
        "detections": summary.detections,
        "empty_images": summary.empty_images,
        "empty_rate": summary.empty_rate,
        "detections_per_image": summary.detections_per_image,
        "mean_confidence_binned": summary.mean_confidence_binned,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def ab_results_json(results: ABResults) -> dict[str, Any]:
    """The answer of ``GET /v1/ab-tests/{id}/results``."""
    primary = results.comparisons[results.primary_metric]
    sample_ratio, power = results.sample_ratio, results.power
    return {
        "id": results.id,
        "name": results.name,
        "status": results.status,
        "start_unix_nano": results.start_unix_nano,
        "end_unix_nano": results.end_unix_nano,
        "elapsed_days": results.elapsed_days,
        "config": results.config.as_json(),
        "model_a": _arm_json(results.model_a),
        "model_b": _arm_json(results.model_b),
        "primary_metric": results.primary_metric,
        "p_value": _finite(results.p_value),
        "p_value_method": results.p_value_method,
        "p_value_fixed_horizon": _finite(primary.p_value_fixed_horizon),
        "p_values_corrected": {m: _corrected(p) for m, p in results.p_values_corrected.items()},
        "comparisons": {m: _comparison_json(c) for m, c in results.comparisons.items()},
        "verdict": results.verdict,
        "verdict_reason": results.verdict_reason,
        "valid": results.valid,
        "arms_by": results.arms_by,
        "sample_ratio": {
            "expected_from": sample_ratio.expected_from,
            "configured": sample_ratio.configured,
            "observed": _finite(sample_ratio.observed),
            "chi2": _finite(sample_ratio.chi2),
            "p_value": _finite(sample_ratio.p_value),
            "mismatch": sample_ratio.mismatch,
        },
        "power": {
            "metric": power.metric,
            "minimum_detectable_effect": _finite(power.minimum_detectable_effect),
            "min_effect": power.min_effect,
            "observed_difference": _finite(power.observed_difference),
            "projected_days_to_decision": power.projected_days_to_decision,
        },
    }


def _corrected(p: float | None) -> float | None:
    return None if p is None else _finite(p)


def _arm_json(arm: ArmSummary) -> dict[str, Any]:
    latency = arm.latency_ms
    return {
        "model_id": arm.model_id,
        "model_version": arm.model_version,
        "images": arm.images,
        "detections": arm.detections,
        "avg_confidence": _finite(arm.avg_confidence),
        "confidence_sd": _finite(arm.confidence_sd),
        "latency_ms": {
            "mean": _finite(latency.mean),
            "p50": _finite(latency.p50),
            "p95": _finite(latency.p95),
            "p99": _finite(latency.p99),
            "count": latency.count,
        },
        "detections_per_image": _finite(arm.detections_per_image),
        "empty_image_rate": _finite(arm.empty_image_rate),
        "feedback_score": _finite(arm.feedback_score),
        "feedback_count": arm.feedback_count,
        "feedback": dict(arm.feedback),
        "class_mix": dict(arm.class_mix),
    }


def _comparison_json(c: Comparison) -> dict[str, Any]:
    return {
        "in_family": c.in_family,
        "difference": _finite(c.difference),
        "ci_low": _finite(c.ci_low),
        "ci_high": _finite(c.ci_high),
        "confidence_sequence": [_finite(c.confidence_sequence[0]), _finite(c.confidence_sequence[1])],
        "p_value_always_valid": _finite(c.p_value_always_valid),
        "p_value_fixed_horizon": _finite(c.p_value_fixed_horizon),
        "fixed_horizon_method": c.fixed_horizon_method,
        "min_effect": c.min_effect,
        "higher_is_better": c.higher_is_better,
        "unit": c.unit,
        "effective_sample_size": {"a": _finite(c.effective_sample_size[0]), "b": _finite(c.effective_sample_size[1])},
        "design_effect": {"a": _finite(c.design_effect[0]), "b": _finite(c.design_effect[1])},
        "variance_assumes_independence": c.variance_assumes_independence,
        "p_value_corrected": _corrected(c.p_value_corrected),
    }


def quality_json(
    quality: ModelQuality, period: str, estimated: LabelFreePrecision, recall: LabelFreeRecall
) -> dict[str, Any]:
    """The answer of ``GET /v1/models/{model_id}/quality`` (shape ``QualityReport``; NaN written null)."""
    production = quality.estimate.production
    return {
        "model_id": quality.model_id,
        "model_version": quality.model_version,
        "ab_variant": quality.ab_variant,
        "period": period,
        "since_unix_nano": quality.since_unix_nano,
        "until_unix_nano": quality.until_unix_nano,
        **_sample_json(production),
        "feedback_flagged": _sample_json(quality.estimate.feedback_flagged),
        "without_probability": quality.without_probability,
        "estimated_precision": {
            "classes": {name: _estimated_json(e) for name, e in sorted(estimated.classes.items())},
            "overall": _estimated_json(estimated.overall),
            "recall_note": RECALL_NOTE,
        },
        "label_free_recall": {
            "estimate": recall.estimate,
            "reason": recall.reason,
            "missed_object_feedback": {
                "count": recall.missed_object_feedback.count,
                "predictions": recall.missed_object_feedback.predictions,
                "rate": recall.missed_object_feedback.rate,
            },
        },
    }


RECALL_NOTE = (
    "recall has no label-free estimate: a detector's output says nothing of the objects it missed;"
    " recall is the labelled figure above"
)


def _estimated_json(e: EstimatedPrecision) -> dict[str, Any]:
    return {
        "estimate": _finite(e.estimate),
        "ci": [_finite(e.ci[0]), _finite(e.ci[1])],
        "expected_false_positives": _finite(e.expected_false_positives),
        "detections": e.detections,
        "trusted": e.trusted,
        "reason": e.reason,
        "n_images": e.n_images,
    }


def _sample_json(sample: SampleEstimate) -> dict[str, Any]:
    return {
        "status": sample.status,
        "n_images": sample.n_images,
        "classes": {name: _metrics_json(m) for name, m in sorted(sample.classes.items())},
        "overall": _metrics_json(sample.overall),
    }


def _metrics_json(metrics: MetricSet) -> dict[str, Any]:
    return {name: _metric_json(getattr(metrics, name)) for name in ("precision", "recall", "ap50", "ap")}


def _metric_json(metric: Metric) -> dict[str, Any]:
    return {
        "estimate": _finite(metric.estimate),
        "ci": [_finite(metric.ci[0]), _finite(metric.ci[1])],
        "n_images": metric.n_images,
    }
