"""Two-sample statistics on binned and categorical counts (numpy and scipy only).

Every function takes the two samples as count vectors over the same bins (or
categories), because that is all the companion keeps: per-hour fixed-bin cells.
Each answers a distance with a stated scale and, where it is a test, a p-value that
is valid for binned data. ``deff`` arguments are design effects (>= 1): the factor by
which clustering of detections within images inflates the variance, so that the
test sees ``n / deff`` effective observations (Kish's effective sample size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "PSI_PSEUDOCOUNT",
    "ChiSquareResult",
    "chi_square_homogeneity",
    "cohen_h",
    "holm",
    "jensen_shannon_distance",
    "jensen_shannon_terms",
    "kolmogorov_smirnov",
    "population_stability_index",
    "rate_test",
    "two_proportion_test",
    "wasserstein",
]

PSI_PSEUDOCOUNT = 0.5
"""Added to every bin before PSI's logarithms (Jeffreys' prior): an empty bin would make PSI infinite."""

FISHER_MAX_N = 100_000
"""Above this many trials, rare outcomes are tested with the conditional binomial instead of Fisher."""

MIN_EXPECTED = 5.0
"""Cochran's rule: the chi-square approximation needs expected counts of about 5 per cell."""


def _counts(values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (array < 0).any() or not np.isfinite(array).all():
        raise ValueError("counts must be a 1-d array of finite, non-negative numbers")
    return array


def jensen_shannon_distance(a: ArrayLike, b: ArrayLike) -> float:
    """Jensen-Shannon *distance* (the square root of the divergence), base 2: 0 same, 1 disjoint.

    Base 2 bounds it by 1 whatever the number of classes, so one floor fits every
    model; it is a metric and stays finite when a class is absent on one side (a new
    or vanished class), which Kullback-Leibler and PSI do not.
    """
    p, q = _counts(a), _counts(b)
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("both samples need at least one observation")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    divergence = 0.0
    for x in (p, q):
        mask = x > 0
        divergence += 0.5 * float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))
    return math.sqrt(max(divergence, 0.0))


def jensen_shannon_terms(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Each category's term of the Jensen-Shannon divergence (bits); each is >= 0 and they sum to it."""
    p, q = _counts(a), _counts(b)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = 0.5 * np.where(p > 0, p * np.log2(p / m), 0.0) + 0.5 * np.where(q > 0, q * np.log2(q / m), 0.0)
    return np.asarray(np.maximum(terms, 0.0), dtype=np.float64)


@dataclass(frozen=True)
class ChiSquareResult:
    """A chi-square test: ``pooled`` categories were merged because their expected counts were below 5."""

    statistic: float
    dof: int
    p_value: float
    pooled: int


def chi_square_homogeneity(a: ArrayLike, b: ArrayLike, *, deff: float = 1.0) -> ChiSquareResult:
    """Pearson's chi-square test of homogeneity of the 2 x K table ``[a, b]``.

    Two-sample: both rows are samples, the expected counts come from the pooled
    margins (not from the reference taken as truth, the goodness-of-fit mistake that
    raises false alarms). Categories with an expected count below 5 in either row are
    pooled into one (Cochran's rule), so rare classes cannot fake significance; the
    statistic is divided by ``deff`` (Rao and Scott's first-order correction for
    clustered samples). Without pooling and with ``deff`` 1 it is exactly
    ``scipy.stats.chi2_contingency(table, correction=False)``.
    """
    p, q = _counts(a), _counts(b)
    if p.shape != q.shape:
        raise ValueError("both samples need the same categories")
    keep = (p + q) > 0
    p, q = p[keep], q[keep]
    n_p, n_q = p.sum(), q.sum()
    if n_p == 0 or n_q == 0:
        raise ValueError("both samples need at least one observation")
    total = p + q
    expected_min = np.minimum(total * n_p, total * n_q) / (n_p + n_q)
    rare = expected_min < MIN_EXPECTED
    pooled = int(rare.sum())
    if pooled:
        p = np.append(p[~rare], p[rare].sum())
        q = np.append(q[~rare], q[rare].sum())
        total = p + q
        # The pooled column may itself be too thin: fold it into the thinnest other one.
        if len(p) > 1 and min(total[-1] * n_p, total[-1] * n_q) / (n_p + n_q) < MIN_EXPECTED:
            target = int(np.argmin(total[:-1]))
            p[target] += p[-1]
            q[target] += q[-1]
            p, q = p[:-1], q[:-1]
    dof = len(p) - 1
    if dof < 1:
        return ChiSquareResult(0.0, 0, 1.0, pooled)
    table = np.vstack([p, q])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected)) / max(deff, 1.0)
    return ChiSquareResult(statistic, dof, float(stats.chi2.sf(statistic, dof)), pooled)


def kolmogorov_smirnov(a: ArrayLike, b: ArrayLike, *, deff_a: float = 1.0, deff_b: float = 1.0) -> tuple[float, float]:
    """Binned two-sample Kolmogorov-Smirnov: ``(D, p_value)``.

    ``D`` is the largest gap between the two cumulative distributions at the bin
    edges: the exact KS statistic of the raw data can only be larger, by at most the
    mass of the heaviest bin. The p-value is Smirnov's distribution (``kstwo`` with
    ``n = n_a n_b / (n_a + n_b)`` rounded, as ``scipy.stats.ks_2samp(method="asymp")``)
    evaluated at the binned ``D``. That is the appropriate p-value for binned data
    because it is conservative, never anti-conservative: under the null the binned
    ``D`` is the exact ``D`` of the unbinned values looked at on fewer points, hence
    stochastically smaller, so ``P(D_exact >= d) >= P(D_binned >= d)`` (Noether 1963 for
    discrete data). Sample sizes are divided by their design effects.
    """
    p, q = _counts(a), _counts(b)
    n_p, n_q = p.sum(), q.sum()
    if n_p == 0 or n_q == 0:
        raise ValueError("both samples need at least one observation")
    d = float(np.max(np.abs(np.cumsum(p) / n_p - np.cumsum(q) / n_q)))
    d = min(max(d, 0.0), 1.0)
    eff_p, eff_q = n_p / max(deff_a, 1.0), n_q / max(deff_b, 1.0)
    en = max(1, round(eff_p * eff_q / (eff_p + eff_q)))
    return d, float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


def wasserstein(a: ArrayLike, b: ArrayLike, centres: Sequence[float] | NDArray[np.float64]) -> float:
    """Earth mover's distance between the binned samples, with all mass at the bin centres.

    In the unit of ``centres`` (confidence, decades of area, ...): the mean distance
    mass must move. Placing values at centres moves each sample by at most half a bin,
    so the distance of the raw data differs by at most one bin width.
    """
    p, q = _counts(a), _counts(b)
    x = np.asarray(centres, dtype=np.float64)
    if x.shape != p.shape or p.shape != q.shape:
        raise ValueError("counts and centres need the same length")
    if (np.diff(x) < 0).any():
        raise ValueError("centres must be increasing")
    gap = np.abs(np.cumsum(p) / p.sum() - np.cumsum(q) / q.sum())[:-1]
    return float(np.sum(gap * np.diff(x)))


def population_stability_index(a: ArrayLike, b: ArrayLike) -> float:
    """PSI = sum over bins of (q - p) ln(q / p), reference ``a`` and current ``b``.

    What credit-risk and many ML-monitoring users read (rule of thumb: < 0.1 stable,
    0.1-0.25 moderate, > 0.25 major shift); it has no natural p-value and grows
    without bound as bins empty, so it is reported, never used for the verdict.
    ``PSI_PSEUDOCOUNT`` is added to every bin first.
    """
    p, q = _counts(a) + PSI_PSEUDOCOUNT, _counts(b) + PSI_PSEUDOCOUNT
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def cohen_h(p1: float, p2: float) -> float:
    """Cohen's h, the effect size of a change of proportion: 2 asin(sqrt p2) - 2 asin(sqrt p1).

    A variance-stabilised difference: going from 1 % to 4 % weighs as much as from 40 %
    to 50 % (both about 0.2, Cohen's "small").
    """
    return 2.0 * math.asin(math.sqrt(p2)) - 2.0 * math.asin(math.sqrt(p1))


def two_proportion_test(x1: float, n1: float, x2: float, n2: float) -> float:
    """Two-sided p-value for equal proportions ``x1/n1`` and ``x2/n2``.

    The pooled z-test (identical to the chi-square test of the 2 x 2 table without
    continuity correction) when every expected count is at least 5; Fisher's exact
    test otherwise, where the normal approximation fails (the conditional binomial test
    of the rare outcome beyond ``FISHER_MAX_N`` trials, its limit, at a fraction of the
    cost). Non-integer counts (effective counts after a design effect) are rounded.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one observation")
    pooled = (x1 + x2) / (n1 + n2)
    expected = min(n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled))
    if expected >= MIN_EXPECTED:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
        return float(2.0 * stats.norm.sf(abs(z)))
    if n1 + n2 <= FISHER_MAX_N:
        table = [[round(x1), round(n1 - x1)], [round(x2), round(n2 - x2)]]
        return float(stats.fisher_exact(table).pvalue)
    # Fisher's cost grows with n (a quarter second at ten million). With so many trials
    # a small expected count means rare outcomes, whose counts are Poisson: conditional
    # on their total, the first sample's share is binomial with p = n1 / (n1 + n2).
    rare1, rare2 = (x1, x2) if x1 + x2 <= (n1 - x1) + (n2 - x2) else (n1 - x1, n2 - x2)
    k, total = round(rare1), round(rare1) + round(rare2)
    if total == 0:
        return 1.0
    return float(stats.binomtest(k, total, n1 / (n1 + n2)).pvalue)


def rate_test(x1: float, n1: float, x2: float, n2: float, *, dispersion: float = 1.0) -> tuple[float, float]:
    """Equal rates of events per image ``x1/n1`` and ``x2/n2``: ``(z, two-sided p)``.

    Counts per image are Poisson-like but often overdispersed (crowded and empty
    scenes in one stream): the variance of a total is ``dispersion`` times its mean
    (the variance-to-mean ratio of detections per image, at least 1), the
    quasi-Poisson model. The pooled rate estimates both under the null.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one image")
    pooled = (x1 + x2) / (n1 + n2)
    if pooled == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(max(dispersion, 1.0) * pooled * (1 / n1 + 1 / n2))
    return z, float(2.0 * stats.norm.sf(abs(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: reject where adjusted <= alpha, family-wise error <= alpha.

    Valid under any dependence between the tests (the overall confidence test and
    the per-class ones share data).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
