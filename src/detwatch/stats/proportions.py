"""One test of two proportions, for drift (a class's share, a rate of empty images) and A/B tests.

The pooled z-test (identical to the chi-square test of the 2 x 2 table without
continuity correction) when every expected count is at least
:data:`~detwatch.stats.contingency.MIN_EXPECTED`; Fisher's exact test otherwise, where the
normal approximation fails; and beyond :data:`FISHER_MAX_N` trials, where Fisher's cost
grows with n (a quarter second at ten million) and a small expected count means rare
outcomes whose counts are Poisson, the conditional binomial test of the rare outcome
(the first sample's share of them is binomial with p = n1 / (n1 + n2)). Counts may be
effective counts (divided by a design effect); Fisher's and the binomial test round them.

The rule for a test that cannot be computed (a sample without trials): every field is
``NaN``, and :func:`~detwatch.stats.multiple_testing.holm` leaves it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from detwatch.stats.contingency import MIN_EXPECTED

__all__ = ["FISHER_MAX_N", "ProportionTest", "two_proportion_test"]

FISHER_MAX_N = 100_000
"""Above this many trials, rare outcomes are tested with the conditional binomial instead of Fisher."""


@dataclass(frozen=True)
class ProportionTest:
    """Which test ran, its statistic (z; Fisher's odds ratio; the binomial's share) and the two-sided p-value."""

    method: Literal["two_proportion_z", "fisher_exact", "conditional_binomial"]
    statistic: float
    p_value: float


def two_proportion_test(x1: float, n1: float, x2: float, n2: float) -> ProportionTest:
    """Equal proportions ``x1/n1`` and ``x2/n2``? ``z`` is signed as ``x2/n2 - x1/n1``."""
    if not (n1 > 0 and n2 > 0):
        return ProportionTest("two_proportion_z", math.nan, math.nan)
    pooled = (x1 + x2) / (n1 + n2)
    expected = min(n1, n2) * min(pooled, 1.0 - pooled)
    if expected >= MIN_EXPECTED:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x2 / n2 - x1 / n1) / se
        return ProportionTest("two_proportion_z", z, float(2.0 * stats.norm.sf(abs(z))))
    if n1 + n2 <= FISHER_MAX_N:
        table = [[round(x1), round(n1 - x1)], [round(x2), round(n2 - x2)]]
        odds, p = stats.fisher_exact(table)
        return ProportionTest("fisher_exact", float(odds), float(p))
    rare1, rare2 = (x1, x2) if x1 + x2 <= (n1 - x1) + (n2 - x2) else (n1 - x1, n2 - x2)
    k, total = round(rare1), round(rare1) + round(rare2)
    if total == 0:
        return ProportionTest("conditional_binomial", math.nan, 1.0)
    return ProportionTest("conditional_binomial", k / total, float(stats.binomtest(k, total, n1 / (n1 + n2)).pvalue))
