"""The 404s and image answers that several route modules share.

A dataset, an item and an item's image are looked up the same way by the review API,
the Label Studio routes, the signed image route and the review page: one home here, so
a missing dataset or a refused image path answers with the same status, code and field
wherever it is asked for.
"""

from __future__ import annotations

from detwatch.api._context import review_store, settings
from detwatch.api.errors import APIError
from detwatch.review import DataEngineStore
from detwatch.review.images import STATUS, ImageElsewhere, ImageFile, ImageRefused, locate_image
from detwatch.storage.records import FlaggedItemRecord

__all__ = ["dataset_or_404", "image_or_error", "item_or_404"]


def dataset_or_404(dataset_id: str) -> DataEngineStore:
    """The data-engine store, once ``dataset_id`` is known to exist (else 404 naming ``dataset_id``)."""
    engine = review_store()
    if not engine.dataset_exists(dataset_id):
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id")
    return engine


def item_or_404(dataset_id: str, item_id: str) -> FlaggedItemRecord:
    """The flagged item ``item_id`` of ``dataset_id`` (else 404 naming ``item_id``)."""
    item = review_store().get_item(dataset_id, item_id)
    if item is None:
        raise APIError(404, "item_not_found", f"no item {item_id!r} in dataset {dataset_id!r}", "item_id")
    return item


def image_or_error(item: FlaggedItemRecord) -> ImageFile | ImageElsewhere:
    """Where ``item``'s image is: a file under the images root, or another server's URL.

    A path outside the root, a missing file or an unsupported scheme answers with the
    status :data:`~detwatch.review.images.STATUS` gives its refusal, naming ``image.uri``.
    """
    try:
        return locate_image(item.image.uri, settings().effective_images_root)
    except ImageRefused as exc:
        raise APIError(STATUS[exc.code], exc.code, exc.reason, "image.uri") from None
