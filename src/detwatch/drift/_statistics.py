"""Two-sample statistics on binned and categorical counts (numpy and scipy only).

Every function takes the two samples as count vectors over the same bins (or
categories), because that is all the companion keeps: per-hour fixed-bin cells.
Each answers a distance with a stated scale and, where it is a test, a p-value that
is valid for binned data. ``deff`` arguments are design effects (>= 1): the factor by
which clustering of detections within images inflates the variance, so that the
test sees ``n / deff`` effective observations (Kish's effective sample size).
The tests the A/B results run too (two proportions, rates, the class mix, Holm)
live in :mod:`detwatch.stats`, as does the binned KS (the label-free quality estimate
runs it too; imported here so drift keeps one place to name its statistics); here are
the distribution distances only drift uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detwatch.stats.binned_ks import kolmogorov_smirnov
from detwatch.stats.class_mix import count_vector as _counts

__all__ = [
    "PSI_PSEUDOCOUNT",
    "cohen_h",
    "jensen_shannon_distance",
    "jensen_shannon_terms",
    "kolmogorov_smirnov",
    "population_stability_index",
    "wasserstein",
]

PSI_PSEUDOCOUNT = 0.5
"""Added to every bin before PSI's logarithms (Jeffreys' prior): an empty bin would make PSI infinite."""


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
