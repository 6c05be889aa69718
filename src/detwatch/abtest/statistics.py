"""The statistics of an A/B test, from mergeable sufficient statistics (numpy/scipy only).

Results are computed from per-hour aggregate cells (counts, sums, sums of squares,
fixed-bin histograms), never from raw events, so that a test's results cost the same
after a day or a month. Each function here takes such summaries; the tests check
every one against SciPy run on the raw data the summaries were made from.

Detections of one image are not independent (a dark frame lowers all its
confidences): the per-detection metrics (mean confidence, class mix) take the image
as the unit of evidence. Their variances are the cluster-robust ones of
:mod:`detwatch.stats.clustered`, computed from per-image sums stored in the cells, in
Welch's test (degrees of freedom from the images), in the mSPRT's variance and its
confidence sequence; the class mix's chi-square is divided by Rao and Scott's design
effect. Image-level metrics (detections per image, empty-image rate, latency) have
the image as their unit already. Results report each comparison's effective sample
size (``N / design effect``).

Fixed-horizon tests (valid when read once, at the planned end):

- means (confidence, latency, detections per image): Welch's t-test from
  ``(n, sum, sum of squares)``, the same numbers as ``scipy.stats.ttest_ind(...,
  equal_var=False)``; Mann-Whitney U from histograms (ties within a bin, with SciPy's
  tie correction and continuity correction) for skewed quantities such as latency;
- rates (empty images, feedback score): the two-proportion z-test (equal to
  ``chi2_contingency(..., correction=False)`` on the 2x2 table), or Fisher's exact
  test when an expected cell count is below 5;
- class mix: the chi-square test of homogeneity on the 2xK table.

Peeking-safe inference: people open results every day, and a fixed-horizon p-value
read daily over seven days declares a false winner several times more often than its
alpha. The mixture sequential probability ratio test (mSPRT) of Johari, Koomen,
Pekelis and Walsh ("Peeking at A/B tests", KDD 2017; "Always valid inference",
Operations Research 2022) gives an always-valid p-value and a confidence sequence:
with the difference estimate ``d`` at a look and its variance ``V`` (``var_a/n_a +
var_b/n_b``) and a normal mixing distribution of variance ``tau2`` over the true
difference,

    Lambda = sqrt(V / (V + tau2)) * exp(d**2 * tau2 / (2 * V * (V + tau2)))

and the always-valid p-value after looks 1..k is ``min(1, min_j 1 / Lambda_j)``. The
confidence sequence at a look is ``d +- sqrt(V * (V + tau2) / tau2 * (log((V + tau2)
/ V) - 2 log(alpha)))``. Both hold at any data-dependent stopping time, so the
verdict may be read whenever. ``tau2`` only moves power between small and large
effects: the default mixes over effects of the size of the metric's
minimum-effect-of-interest (``tau = min_effect``), which is where the test is
most powerful.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from detwatch.stats.contingency import chi_square_homogeneity
from detwatch.stats.proportions import two_proportion_test

__all__ = [
    "Moments",
    "SequentialResult",
    "TestResult",
    "class_mix_test",
    "mann_whitney_binned",
    "minimum_detectable_effect",
    "msprt",
    "quantile_from_bins",
    "rate_test",
    "sample_ratio_mismatch",
    "welch_from_variances",
    "welch_test",
]

Method = Literal["welch_t", "mann_whitney_u", "two_proportion_z", "fisher_exact", "conditional_binomial", "chi_square"]


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of a sample: its mean and variance merge by addition."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The unbiased sample variance (``ddof=1``); NaN below two observations."""
        if self.n < 2:
            return math.nan
        # Clamp the round-off of sum-of-squares arithmetic: a variance is never negative.
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)


@dataclass(frozen=True)
class TestResult:
    """A fixed-horizon two-sample test: B - A with its interval, and the p-value."""

    method: Method
    statistic: float
    p_value: float
    difference: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class SequentialResult:
    """The mSPRT at the last look: always-valid p-value and confidence sequence."""

    p_value: float
    ci_low: float
    ci_high: float
    looks: int


def welch_test(a: Moments, b: Moments, alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test of mean(B) - mean(A), with its (1 - alpha) interval."""
    diff = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        return TestResult("welch_t", math.nan, math.nan, diff, math.nan, math.nan)
    return welch_from_variances(diff, a.variance / a.n, b.variance / b.n, df_a=a.n - 1, df_b=b.n - 1, alpha=alpha)


def welch_from_variances(
    diff: float, va: float, vb: float, *, df_a: float, df_b: float, alpha: float = 0.05
) -> TestResult:
    """Welch's t-test of ``diff`` given each arm's variance of its mean and their degrees of freedom.

    With independent observations these are ``s^2 / n`` and ``n - 1``; with detections
    clustered in images, the cluster-robust variance (:mod:`detwatch.stats.clustered`) and
    ``images - 1``: the Welch-Satterthwaite degrees of freedom then count images.
    """
    if not (math.isfinite(va) and math.isfinite(vb)) or df_a < 1 or df_b < 1:
        return TestResult("welch_t", math.nan, math.nan, diff, math.nan, math.nan)
    se2 = va + vb
    if se2 <= 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        return TestResult("welch_t", math.copysign(math.inf, diff) if diff else 0.0, p, diff, diff, diff)
    se = math.sqrt(se2)
    df = se2 * se2 / (va * va / df_a + vb * vb / df_b)
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    return TestResult("welch_t", t, p, diff, diff - half, diff + half)


def mann_whitney_binned(counts_a: Sequence[int], counts_b: Sequence[int]) -> TestResult:
    """Mann-Whitney U of two histograms over the same bins (values in one bin are ties).

    Asymptotic normal p-value with tie and continuity corrections, as
    ``scipy.stats.mannwhitneyu(x, y, method="asymptotic")`` computes it on the bin
    indices. ``statistic`` is U of A; ``difference`` is the common-language effect
    P(B > A) + P(B = A) / 2 - 1/2 (0 when the arms do not differ), in [-0.5, 0.5].
    """
    ca = np.asarray(counts_a, dtype=np.float64)
    cb = np.asarray(counts_b, dtype=np.float64)
    if ca.shape != cb.shape:
        raise ValueError("counts_b: must have as many bins as counts_a")
    n1, n2 = float(ca.sum()), float(cb.sum())
    if n1 == 0 or n2 == 0:
        return TestResult("mann_whitney_u", math.nan, math.nan, math.nan, math.nan, math.nan)
    below_b = np.cumsum(cb) - cb  # B's values strictly below each bin
    u_a = float(np.sum(ca * (below_b + 0.5 * cb)))  # pairs where A > B, ties count half
    n = n1 + n2
    t = ca + cb
    tie_term = float(np.sum(t**3 - t))
    mu = n1 * n2 / 2.0
    sigma2 = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))
    effect = 0.5 - u_a / (n1 * n2)  # P(B > A) + P(tie)/2 - 1/2
    if sigma2 <= 0.0:
        return TestResult("mann_whitney_u", u_a, 1.0, effect, math.nan, math.nan)
    u = max(u_a, n1 * n2 - u_a)
    z = (u - mu - 0.5) / math.sqrt(sigma2)
    p = min(1.0, float(2.0 * stats.norm.sf(z)))
    return TestResult("mann_whitney_u", u_a, p, effect, math.nan, math.nan)


def rate_test(
    x_a: float, n_a: float, x_b: float, n_b: float, alpha: float = 0.05, *, deff_a: float = 1.0, deff_b: float = 1.0
) -> TestResult:
    """Rate B - rate A: the shared two-proportion test (:mod:`detwatch.stats.proportions`) and Wald's interval.

    The interval is Wald's (Newcombe's would be tighter near 0 and 1; the sequential
    interval beside it is the one to act on). ``deff_a``/``deff_b`` are design effects
    (:mod:`detwatch.stats.clustered`): each arm's counts are divided by its own, so the test
    sees its effective sample. An arm without trials gives ``NaN`` everywhere.
    """
    if n_a <= 0 or n_b <= 0:
        return TestResult("two_proportion_z", math.nan, math.nan, math.nan, math.nan, math.nan)
    if deff_a > 1.0 or deff_b > 1.0:
        deff_a, deff_b = max(deff_a, 1.0), max(deff_b, 1.0)
        x_a, n_a, x_b, n_b = x_a / deff_a, n_a / deff_a, x_b / deff_b, n_b / deff_b
    pa, pb = x_a / n_a, x_b / n_b
    diff = pb - pa
    se_unpooled = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    half = float(stats.norm.ppf(1.0 - alpha / 2.0)) * se_unpooled
    test = two_proportion_test(x_a, n_a, x_b, n_b)
    return TestResult(test.method, test.statistic, test.p_value, diff, diff - half, diff + half)


def class_mix_test(counts_a: dict[str, int], counts_b: dict[str, int], deff: float = 1.0) -> TestResult:
    """The shared chi-square test of homogeneity of the class mix (:mod:`detwatch.stats.contingency`).

    Classes seen in either arm; rare ones pooled by Cochran's rule, as drift pools them.
    ``difference`` is the total variation distance between the two class shares. ``deff``
    is Rao and Scott's mean design effect (:func:`detwatch.stats.clustered.rao_scott_deff`).
    """
    classes = sorted(set(counts_a) | set(counts_b))
    a = np.array([counts_a.get(c, 0) for c in classes], dtype=float)
    b = np.array([counts_b.get(c, 0) for c in classes], dtype=float)
    chi = chi_square_homogeneity(a, b, deff=deff)
    if not a.sum() or not b.sum():
        return TestResult("chi_square", chi.statistic, chi.p_value, math.nan, math.nan, math.nan)
    tvd = 0.5 * float(np.abs(a / a.sum() - b / b.sum()).sum())
    return TestResult("chi_square", chi.statistic, chi.p_value, tvd, math.nan, math.nan)


def msprt(looks: Sequence[tuple[float, float]], tau2: float, alpha: float = 0.05) -> SequentialResult:
    """The always-valid p-value and confidence sequence after ``looks`` of ``(difference, variance)``.

    Each look is the cumulative estimate of B - A and its variance at that time; looks
    with an undefined or zero variance (too little data yet) are skipped.
    """
    if tau2 <= 0.0:
        raise ValueError("tau2: must be positive")
    p = 1.0
    used = 0
    low, high = -math.inf, math.inf
    for diff, var in looks:
        if not (math.isfinite(diff) and math.isfinite(var)) or var <= 0.0:
            continue
        used += 1
        s = var + tau2
        log_lambda = 0.5 * math.log(var / s) + diff * diff * tau2 / (2.0 * var * s)
        p = min(p, math.exp(-log_lambda) if log_lambda > -700 else 1.0)
        half = math.sqrt(var * s / tau2 * (math.log(s / var) - 2.0 * math.log(alpha)))
        # The running intersection is also a valid confidence sequence, and never widens.
        low, high = max(low, diff - half), min(high, diff + half)
    if used == 0:
        return SequentialResult(math.nan, math.nan, math.nan, 0)
    if low > high:  # only possible at alpha-level bad luck; report the last interval's centre
        low = high = (low + high) / 2.0
    return SequentialResult(min(1.0, p), low, high, used)


def sample_ratio_mismatch(n_a: int, n_b: int, traffic_split: float) -> tuple[float, float]:
    """Chi-square goodness of fit of the observed split to the configured one: ``(chi2, p)``.

    Here goodness of fit is the right test: the expected split is known exactly, not
    estimated from a reference sample.
    """
    n = n_a + n_b
    if n == 0 or traffic_split in (0.0, 1.0):
        return math.nan, math.nan
    chi2, p = stats.chisquare([n_a, n_b], f_exp=[n * (1.0 - traffic_split), n * traffic_split])
    return float(chi2), float(p)


def minimum_detectable_effect(variance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a fixed-horizon test at this variance detects with ``power``."""
    if not math.isfinite(variance) or variance <= 0.0:
        return math.nan
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    return z * math.sqrt(variance)


def quantile_from_bins(counts: Sequence[int], edges: Sequence[float], q: float) -> float:
    """The ``q`` quantile of a histogram, interpolating linearly within the bin (as Prometheus does)."""
    c = np.asarray(counts, dtype=np.float64)
    total = float(c.sum())
    if total <= 0:
        return math.nan
    if len(edges) != len(c) + 1:
        raise ValueError("edges: need one more edge than bins")
    rank = q * total
    cumulative = np.cumsum(c)
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, len(c) - 1)
    before = float(cumulative[i] - c[i])
    within = (rank - before) / c[i] if c[i] > 0 else 0.0
    return float(edges[i] + (edges[i + 1] - edges[i]) * within)
