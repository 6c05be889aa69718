"""One chi-square test of homogeneity, for the class mix of drift reports and A/B tests.

Two-sample: both rows are samples, the expected counts come from the pooled margins
(not from the reference taken as truth, the goodness-of-fit mistake that raises false
alarms). Categories with an expected count below :data:`MIN_EXPECTED` in either row are
pooled into one (Cochran's rule), so rare classes cannot fake significance; the
statistic is divided by ``deff`` (Rao and Scott's first-order correction for detections
clustered in images, :func:`detwatch.stats.clustered.rao_scott_deff`).

The rule for a test that cannot be computed (a row without observations): every field
is ``NaN``, and :func:`~detwatch.stats.multiple_testing.holm` leaves it out. One
category (or every category pooled into one) is no evidence of a different mix:
statistic 0, p-value 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = ["MIN_EXPECTED", "ChiSquareResult", "chi_square_homogeneity", "count_vector"]

MIN_EXPECTED = 5.0
"""Cochran's rule: the chi-square approximation needs expected counts of about 5 per cell."""


def count_vector(values: ArrayLike) -> NDArray[np.float64]:
    """``values`` as counts over bins or categories; ``ValueError`` for anything else."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (array < 0).any() or not np.isfinite(array).all():
        raise ValueError("counts must be a 1-d array of finite, non-negative numbers")
    return array


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
    p, q = count_vector(a), count_vector(b)
    if p.shape != q.shape:
        raise ValueError("both samples need the same categories")
    keep = (p + q) > 0
    p, q = p[keep], q[keep]
    n_p, n_q = p.sum(), q.sum()
    if n_p == 0 or n_q == 0:
        return ChiSquareResult(math.nan, 0, math.nan, 0)
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
