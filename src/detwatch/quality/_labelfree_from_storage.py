"""A period's label-free precision, read through the storage protocols (no SQL here).

Two reads: the model's labelled items (the calibration, as the labelled quality reads
them) and the period's stored per-class confidence cells (kind ``confidence``, key
``"<class>|<bin>"``, the cells drift reads), summed over the period's hours and days
by the database (``aggregate_counts``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.storage.protocols import QualityStorage

from ._estimates import MIN_IMAGES, RESAMPLES
from ._labelfree import LabelFreePrecision, estimate_precision
from ._records import labelled_images

__all__ = ["ConfidenceCells", "period_confidence", "period_precision"]

CONFIDENCE_KIND = "confidence"


class ConfidenceCells(Protocol):
    """The one aggregate read the estimate needs (``detwatch.storage.Storage`` has it)."""

    def aggregate_counts(
        self,
        model_id: str,
        start_unix_nano: int,
        end_unix_nano: int,
        kind: str,
        *,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> dict[str, int]: ...


def period_confidence(
    cells: ConfidenceCells,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None,
    ab_variant: str | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Per class, the period's detections per confidence bin (of one version, one arm, where given).

    The database sums the period's cells per key: a month of hourly and daily cells is
    read as one row per class and bin.
    """
    counts = cells.aggregate_counts(
        model_id, since_unix_nano, until_unix_nano, CONFIDENCE_KIND, model_version=model_version, ab_variant=ab_variant
    )
    result: dict[str, NDArray[np.float64]] = {}
    for key, count in counts.items():
        name, _, index_text = key.rpartition("|")
        if not index_text.isdigit() or int(index_text) >= bins.CONFIDENCE_BINS:
            continue  # a cell of another binning is no evidence about these bins
        histogram = result.setdefault(name, np.zeros(bins.CONFIDENCE_BINS))
        histogram[int(index_text)] += count
    return result


class _Both(QualityStorage, ConfidenceCells, Protocol):
    """Storage that has both reads."""


def period_precision(
    storage: _Both,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None = None,
    ab_variant: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
) -> LabelFreePrecision:
    """The period's expected precision, calibrated on the model's labelled items of the same period.

    ``ab_variant``: one arm's detections, calibrated on that arm's labelled items.
    """
    records = storage.labelled_items(
        model_id,
        since_unix_nano=since_unix_nano,
        until_unix_nano=until_unix_nano,
        model_version=model_version,
        ab_variant=ab_variant,
    )
    histograms = period_confidence(
        storage,
        model_id,
        since_unix_nano=since_unix_nano,
        until_unix_nano=until_unix_nano,
        model_version=model_version,
        ab_variant=ab_variant,
    )
    sample = labelled_images(records).sampled
    return estimate_precision(sample, histograms, resamples=resamples, seed=seed, min_images=min_images)
