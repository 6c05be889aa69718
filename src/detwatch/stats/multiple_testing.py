"""Holm's correction, one for every analysis that reports several tests at once.

Drift reports test the overall confidence, each class's share and each class's rate
together; an A/B test compares several metrics. Holm's step-down adjustment controls
the family-wise error under any dependence between the tests (they share data).

The rule for a test that could not be computed (``NaN``, e.g. an arm without
images): it is left out of the family, so it neither rejects nor makes the others
harder to reject, and its adjusted p-value is ``NaN``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["holm"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: reject where adjusted <= alpha.

    Non-finite p-values are left out of the family and adjusted to ``NaN``.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
