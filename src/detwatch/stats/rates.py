"""Two proportions and two rates per image, the tests both analyses run on counts.

- :func:`two_proportion_test`: equal proportions ``x1/n1`` and ``x2/n2`` (the drift
  report's class shares and empty-image rate, the A/B empty-image rate and feedback
  score). The pooled z-test, identical to the chi-square test of the 2 x 2 table
  without continuity correction, when every expected count is at least 5 (Cochran);
  Fisher's exact test below, where the normal approximation fails; beyond
  ``FISHER_MAX_N`` trials, the conditional binomial test of the rare outcome (Fisher's
  limit, at a fraction of its cost). The clustered variant: ``deff1``/``deff2`` are
  design effects (:mod:`detwatch.stats.clustered`), each sample's counts are divided
  by its own so the test sees its effective sample size (Kish); counts are rounded
  for the exact tests.
- :func:`poisson_rate_test`: equal rates of events per image, quasi-Poisson.

NaN rule (:mod:`detwatch.stats`): a sample without trials gives NaN statistic and
p-value: there is nothing to test, and Holm leaves it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

__all__ = ["FISHER_MAX_N", "MIN_EXPECTED", "ProportionTest", "poisson_rate_test", "two_proportion_test"]

FISHER_MAX_N = 100_000
"""Above this many trials, rare outcomes are tested with the conditional binomial instead of Fisher."""

MIN_EXPECTED = 5.0
"""Cochran's rule: the normal (chi-square) approximation needs expected counts of about 5 per cell."""


@dataclass(frozen=True)
class ProportionTest:
    """The outcome of :func:`two_proportion_test` on the (effective) counts.

    ``statistic`` is z of ``p2 - p1`` for the z-test, the odds ratio for Fisher's test,
    the rare outcome's count in the first sample for the binomial one; ``p1``/``p2``
    are the proportions of the effective counts and ``n1``/``n2`` those counts' trials.
    """

    method: Literal["two_proportion_z", "fisher_exact", "binomial"]
    statistic: float
    p_value: float
    p1: float
    p2: float
    n1: float
    n2: float


def two_proportion_test(
    x1: float, n1: float, x2: float, n2: float, *, deff1: float = 1.0, deff2: float = 1.0
) -> ProportionTest:
    """Two-sided test of equal proportions ``x1/n1`` and ``x2/n2`` (see the module)."""
    if not n1 > 0 or not n2 > 0:
        return ProportionTest("two_proportion_z", math.nan, math.nan, math.nan, math.nan, n1, n2)
    if deff1 > 1.0 or deff2 > 1.0:
        deff1, deff2 = max(deff1, 1.0), max(deff2, 1.0)
        x1, n1, x2, n2 = x1 / deff1, n1 / deff1, x2 / deff2, n2 / deff2
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    expected = min(n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled))
    if expected >= MIN_EXPECTED:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (p2 - p1) / se
        return ProportionTest("two_proportion_z", z, float(2.0 * stats.norm.sf(abs(z))), p1, p2, n1, n2)
    if n1 + n2 <= FISHER_MAX_N:
        table = [[round(x1), round(n1 - x1)], [round(x2), round(n2 - x2)]]
        odds, p = stats.fisher_exact(table)
        return ProportionTest("fisher_exact", float(odds), float(p), p1, p2, n1, n2)
    # Fisher's cost grows with n (a quarter second at ten million). With so many trials
    # a small expected count means rare outcomes, whose counts are Poisson: conditional
    # on their total, the first sample's share is binomial with p = n1 / (n1 + n2).
    rare1, rare2 = (x1, x2) if x1 + x2 <= (n1 - x1) + (n2 - x2) else (n1 - x1, n2 - x2)
    k, total = round(rare1), round(rare1) + round(rare2)
    p = 1.0 if total == 0 else float(stats.binomtest(k, total, n1 / (n1 + n2)).pvalue)
    return ProportionTest("binomial", float(k), p, p1, p2, n1, n2)


def poisson_rate_test(x1: float, n1: float, x2: float, n2: float, *, dispersion: float = 1.0) -> tuple[float, float]:
    """Equal rates of events per image ``x1/n1`` and ``x2/n2``: ``(z, two-sided p)``.

    Counts per image are Poisson-like but often overdispersed (crowded and empty
    scenes in one stream): the variance of a total is ``dispersion`` times its mean
    (the variance-to-mean ratio of events per image, at least 1), the quasi-Poisson
    model; it is the clustered variant, the image being the unit already. The pooled
    rate estimates both under the null. No events at all: z 0 and p 1 (both rates are
    exactly 0); no images on a side: NaN.
    """
    if not n1 > 0 or not n2 > 0:
        return math.nan, math.nan
    pooled = (x1 + x2) / (n1 + n2)
    if pooled == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(max(dispersion, 1.0) * pooled * (1 / n1 + 1 / n2))
    return z, float(2.0 * stats.norm.sf(abs(z)))
