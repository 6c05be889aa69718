"""The binned two-sample Kolmogorov-Smirnov test: drift's distribution test, shared.

Drift compares two periods' stored confidence histograms with it; the label-free
quality estimate asks the same question (has the period's confidence distribution
left the one the calibration was fitted on?), so the test has one home here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .class_mix import count_vector as _counts

__all__ = ["kolmogorov_smirnov"]


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
