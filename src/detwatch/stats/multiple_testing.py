"""Holm's step-down correction, the one both the drift report and the A/B results use.

Holm, not Benjamini-Hochberg: both analyses ask family-wise questions ("is anything
drifting?", "which metrics differ?"), and Holm bounds the chance of any false
rejection by alpha under any dependence between the tests (their data overlap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["holm"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: reject where adjusted <= alpha.

    NaN rule (see :mod:`detwatch.stats`): a NaN p-value is a test that could not be
    computed; it is left out of the family (``m`` counts the finite p-values only) and
    its adjusted p-value is NaN, which no ``<= alpha`` accepts. Ties keep their order.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
