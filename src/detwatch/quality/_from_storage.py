"""A model's quality over a period, read through the storage protocol (no SQL here)."""

from __future__ import annotations

from dataclasses import dataclass

from detwatch.storage.protocols import QualityStorage

from ._estimates import MIN_IMAGES, RESAMPLES, QualityEstimate, estimate_quality
from ._records import labelled_images

__all__ = ["ModelQuality", "model_quality"]


@dataclass(frozen=True)
class ModelQuality:
    """What :func:`model_quality` found for one model, version and window."""

    model_id: str
    model_version: str | None
    since_unix_nano: int
    until_unix_nano: int
    estimate: QualityEstimate
    without_probability: int
    """Labelled items flagged before inclusion probabilities were kept: left out of both samples."""
    ab_variant: str | None = None
    """The A/B arm the items were read for (``None``: every item, routed or not)."""


def model_quality(
    storage: QualityStorage,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None = None,
    ab_variant: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
) -> ModelQuality:
    """Production estimates from the model's labelled items predicted in ``[since, until)``.

    ``ab_variant`` (``"a"``/``"b"``) reads only the items whose prediction was routed to
    that arm: each arm's figures rest on its own items. ``seed`` fixes the bootstrap:
    the same items give the same intervals on every replica and every call.
    """
    records = storage.labelled_items(
        model_id,
        since_unix_nano=since_unix_nano,
        until_unix_nano=until_unix_nano,
        model_version=model_version,
        ab_variant=ab_variant,
    )
    items = labelled_images(records)
    estimate = estimate_quality(
        items.sampled, items.feedback_flagged, resamples=resamples, seed=seed, min_images=min_images
    )
    return ModelQuality(
        model_id, model_version, since_unix_nano, until_unix_nano, estimate, items.without_probability, ab_variant
    )
