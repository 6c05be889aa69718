"""What an A/B test's results are, as frozen values: computed in :mod:`.results`, serialised at the HTTP edge.

The analysis keeps every number a float (NaN where a quantity is undefined, e.g. a
mean without samples); :mod:`detwatch.api._analysis_json` writes them as the API
answers them (NaN and infinities as null). Pairs per arm are ``(a, b)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from detwatch.abtest.config import ABTestConfig

__all__ = ["ABResults", "ArmSummary", "Comparison", "LatencySummary", "PowerEstimate", "SampleRatio"]


@dataclass(frozen=True)
class LatencySummary:
    """An arm's latency: the mean of the per-image sums, the quantiles of its fixed bins."""

    mean: float
    p50: float
    p95: float
    p99: float
    count: int


@dataclass(frozen=True)
class ArmSummary:
    """One arm's metrics over the whole test (``confidence_sd`` NaN below two detections)."""

    model_id: str
    model_version: str | None
    images: int
    detections: int
    avg_confidence: float
    confidence_sd: float
    latency_ms: LatencySummary
    detections_per_image: float
    empty_image_rate: float
    feedback_score: float
    feedback_count: int
    feedback: Mapping[str, int]
    class_mix: Mapping[str, float]


@dataclass(frozen=True)
class Comparison:
    """One metric compared, B - A: fixed-horizon test, sequential test and what the evidence is worth.

    ``p_value_corrected`` is Holm's adjusted always-valid p-value within the configured
    family, None for a metric outside it. ``unit`` names what the sample sizes count.
    """

    in_family: bool
    difference: float
    ci_low: float
    ci_high: float
    confidence_sequence: tuple[float, float]
    p_value_always_valid: float
    p_value_fixed_horizon: float
    fixed_horizon_method: str
    min_effect: float
    higher_is_better: bool | None
    unit: str
    effective_sample_size: tuple[float, float]
    design_effect: tuple[float, float]
    variance_assumes_independence: bool
    p_value_corrected: float | None = None


@dataclass(frozen=True)
class SampleRatio:
    """The check of the observed split against the configured one (``observed`` NaN without images)."""

    expected_from: str
    configured: float
    observed: float
    chi2: float
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class PowerEstimate:
    """The primary metric's minimum detectable effect now, and the days until it reaches ``min_effect``."""

    metric: str
    minimum_detectable_effect: float
    min_effect: float
    observed_difference: float
    projected_days_to_decision: float | None


@dataclass(frozen=True)
class ABResults:
    """The results of one A/B test at one time (see :mod:`.results` for the verdicts).

    ``comparisons`` keeps the order the metrics were compared in: the configured family
    first, then the others; ``p_value`` is the primary metric's always-valid p-value.
    """

    id: str
    name: str
    status: str
    start_unix_nano: int
    end_unix_nano: int
    elapsed_days: float
    config: ABTestConfig
    model_a: ArmSummary
    model_b: ArmSummary
    primary_metric: str
    p_value: float
    p_value_method: str
    p_value_fixed_horizon: float
    comparisons: Mapping[str, Comparison]
    verdict: str
    verdict_reason: str
    valid: bool
    arms_by: str
    sample_ratio: SampleRatio
    power: PowerEstimate

    @property
    def p_values_corrected(self) -> dict[str, float | None]:
        """Holm's adjusted p-values of the configured family, by metric."""
        return {m: self.comparisons[m].p_value_corrected for m in self.config.metrics}
