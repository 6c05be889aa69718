"""Shapes of ``GET /v1/models/{model_id}/quality/compare``: two versions on the same labelled images.

Each figure is each version's (``a``, ``b``), the paired difference ``b - a`` and its
95 % paired bootstrap interval over images. A figure that cannot be computed is null.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

import msgspec

from detwatch.contract.shapes.quality import QualityStatus

__all__ = ["VersionComparisonReport", "VersionDifference", "VersionDifferences"]

_Share = Annotated[float, msgspec.Meta(ge=0, le=1)] | None
_Delta = Annotated[float, msgspec.Meta(ge=-1, le=1)] | None


class VersionDifference(TypedDict):
    """One figure of version A and of version B, ``b - a``, and the paired interval of the difference."""

    a: _Share
    b: _Share
    difference: _Delta
    ci: Annotated[list[_Delta], msgspec.Meta(min_length=2, max_length=2, description="[low, high]")]


class VersionDifferences(TypedDict):
    """Precision and recall at IoU 0.5, AP50, and AP averaged over IoU .50:.95, compared."""

    precision: VersionDifference
    recall: VersionDifference
    ap50: VersionDifference
    ap: VersionDifference


class VersionComparisonReport(TypedDict):
    """Version B against version A on the dataset's labelled images both predicted (found by image key)."""

    model_id: str
    version_a: str
    version_b: str
    dataset_id: str
    status: QualityStatus
    n_images: Annotated[int, msgspec.Meta(ge=0, description="labelled images both versions predicted")]
    labelled_images: Annotated[int, msgspec.Meta(ge=0, description="the dataset's labelled images of the model")]
    classes: dict[str, VersionDifferences]
    overall: VersionDifferences
