"""The chi-square test of homogeneity of two category mixes (2 x K), for both analyses.

Two-sample: both rows are samples, the expected counts come from the pooled margins
(not from one row taken as truth, the goodness-of-fit mistake that raises false
alarms). Sparse cells: categories with an expected count below ``MIN_EXPECTED`` in
either row are pooled into one (Cochran's rule), so that rare classes cannot fake
significance; a pooled column still too thin is folded into the thinnest other one.
The clustered variant divides the statistic by ``deff``, Rao and Scott's first-order
design effect (:func:`detwatch.stats.clustered.rao_scott_deff`). Without pooling and
with ``deff`` 1 it is ``scipy.stats.chi2_contingency(table, correction=False)``.

Degenerate tables (the rule of :mod:`detwatch.stats`): a row without observations
cannot be tested, NaN statistic and p-value; a single category left (after pooling)
leaves nothing that could differ, statistic 0 and p-value 1 with 0 degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from detwatch.stats.rates import MIN_EXPECTED

__all__ = ["ChiSquareResult", "chi_square_homogeneity", "count_vector"]


@dataclass(frozen=True)
class ChiSquareResult:
    """A chi-square test: ``pooled`` categories were merged because their expected counts were below 5."""

    statistic: float
    dof: int
    p_value: float
    pooled: int


def count_vector(values: ArrayLike) -> NDArray[np.float64]:
    """``values`` as counts over bins or categories; ``ValueError`` for anything else."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (array < 0).any() or not np.isfinite(array).all():
        raise ValueError("counts must be a 1-d array of finite, non-negative numbers")
    return array


def chi_square_homogeneity(a: ArrayLike, b: ArrayLike, *, deff: float = 1.0) -> ChiSquareResult:
    """Pearson's chi-square test of homogeneity of the 2 x K table ``[a, b]`` (see the module)."""
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
