"""Two versions of a model compared on a dataset's labelled images, read through the storage protocols.

The reviewer's label is the truth. Each version's detections on a labelled image
are found by the image's key among stored predictions (the version's newest on that
key); the flagged item's own detections are its version's, so that version needs no
stored prediction for it (it may be past retention). Only images both versions
predicted are compared (:func:`._comparison.compare_versions`); the rest are counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from detwatch.storage.protocols import QualityStorage, ReviewStorage
from detwatch.storage.records import FlaggedItemRecord

from ._comparison import PairedImage, VersionComparison, compare_versions
from ._estimates import MIN_IMAGES, RESAMPLES
from ._matching import Detection, GroundTruth
from ._records import detections_of, labels_of

__all__ = ["ModelVersionComparison", "compare_model_versions", "labelled_items_of"]

_PAGE: Final = 500


@dataclass(frozen=True)
class ModelVersionComparison:
    """What :func:`compare_model_versions` found: the comparison and the labelled images it could not pair."""

    model_id: str
    version_a: str
    version_b: str
    dataset_id: str
    comparison: VersionComparison
    labelled_images: int
    """The dataset's labelled images of the model with an image key (each key once)."""


class ComparisonStorage(QualityStorage, ReviewStorage, Protocol):
    """What the comparison reads: the dataset's labelled items and predictions by image key."""


def labelled_items_of(storage: ReviewStorage, dataset_id: str, model_id: str) -> Iterator[FlaggedItemRecord]:
    """The dataset's labelled items of ``model_id``, in queue order (paged)."""
    after: tuple[int, str] | None = None
    while True:
        page = storage.list_flagged_items(dataset_id, status="labeled", limit=_PAGE, after=after)
        yield from (item for item in page.items if item.model_id == model_id)
        if page.next_key is None:
            return
        after = page.next_key


def compare_model_versions(
    storage: ComparisonStorage,
    model_id: str,
    *,
    version_a: str,
    version_b: str,
    dataset_id: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
) -> ModelVersionComparison:
    """``version_b`` minus ``version_a`` on the labelled images of ``dataset_id`` both predicted.

    ``LookupError`` when the dataset does not exist. The first labelled item of a key
    (in queue order) is its truth; images count in the order of their keys, so that
    a report (its bootstrap) is reproducible whatever order storage pages in.
    """
    if not storage.dataset_exists(dataset_id):
        raise LookupError(dataset_id)
    truth: dict[str, tuple[GroundTruth, ...]] = {}
    own: dict[str, dict[str, tuple[Detection, ...]]] = {}
    for item in labelled_items_of(storage, dataset_id, model_id):
        key = item.image.key
        if not key or key in truth:
            continue
        truth[key] = labels_of(item)
        own[key] = {} if item.model_version is None else {item.model_version: detections_of(item.detections)}
    stored = {
        version: storage.detections_by_image_key(model_id, version, list(truth)) for version in (version_a, version_b)
    }

    def side(key: str, version: str) -> tuple[Detection, ...] | None:
        if version in own[key]:
            return own[key][version]
        found = stored[version].get(key)
        return None if found is None else detections_of(found)

    pairs: list[PairedImage] = []
    for key, labels in sorted(truth.items()):
        a, b = side(key, version_a), side(key, version_b)
        if a is not None and b is not None:
            pairs.append(PairedImage(key, labels, a, b))
    comparison = compare_versions(pairs, resamples=resamples, seed=seed, min_images=min_images)
    return ModelVersionComparison(model_id, version_a, version_b, dataset_id, comparison, len(truth))
