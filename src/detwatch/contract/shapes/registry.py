"""Shapes of the registry routes: models, datasets and dataset versions, and ``/v1/status``."""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

import msgspec

from detwatch.contract.shapes._common import Name, Object
from detwatch.contract.textfields import MAX_TEXT

__all__ = [
    "Dataset",
    "DatasetCreate",
    "DatasetVersion",
    "DatasetVersionCreate",
    "Model",
    "ModelList",
    "ModelRegistration",
    "ReviewProgress",
    "Status",
]


class ModelRegistration(TypedDict):
    """A model (and, optionally, one of its versions) to register; registering again adds the version."""

    model_id: Name
    version: NotRequired[Name | None]
    metadata: NotRequired[Object | None]


class Model(TypedDict):
    """A model registered or seen in telemetry (``id`` and ``model_id`` are the same)."""

    id: str
    model_id: str
    versions: list[str]
    metadata: Object
    first_seen_unix_nano: NotRequired[int]
    last_seen_unix_nano: NotRequired[int]


class ModelList(TypedDict):
    """Every model."""

    models: list[Model]


class DatasetCreate(TypedDict):
    """A dataset to create (with its first, empty version)."""

    name: Name
    description: NotRequired[Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]]


class DatasetVersionCreate(TypedDict):
    """A version to create, derived from ``parent_version_id`` when given."""

    name: Name
    parent_version_id: NotRequired[
        Annotated[Name | None, msgspec.Meta(description="a version of the same dataset (400 otherwise)")]
    ]


class DatasetVersion(TypedDict):
    """A dataset version; a snapshot (``POST .../versions``) also has its content hash, counts and diff."""

    id: str
    dataset_id: str
    name: str
    parent_version_id: str | None
    created_unix_nano: NotRequired[int]
    content_hash: NotRequired[Annotated[str, msgspec.Meta(description="sha256 of the snapshot's canonical content")]]
    item_count: NotRequired[int]
    class_counts: NotRequired[dict[str, int]]
    diff: NotRequired[
        Annotated[Object, msgspec.Meta(description="added, removed, changed items and class count deltas")]
    ]


class ReviewProgress(TypedDict):
    """How far the dataset's review queue is (GET /v1/datasets/{id}, and the review page)."""

    waiting: Annotated[int, msgspec.Meta(ge=0, description="needs_review: in the queue, not claimed")]
    claimed: Annotated[int, msgspec.Meta(ge=0, description="in_review: held by a reviewer")]
    labeled: Annotated[int, msgspec.Meta(ge=0)]
    rejected: Annotated[int, msgspec.Meta(ge=0)]
    by_reviewer: Annotated[
        dict[str, dict[str, int]],
        msgspec.Meta(description="per reviewer: claimed, labeled and rejected items they hold or reviewed"),
    ]


class Dataset(TypedDict):
    """A dataset with its versions (``version`` is the latest) and its review progress."""

    id: str
    name: str
    description: NotRequired[str]
    created_unix_nano: NotRequired[int]
    versions: list[DatasetVersion]
    version: DatasetVersion
    review: NotRequired[ReviewProgress]


class Status(TypedDict):
    """Counts and version."""

    version: str
    database: Annotated[str, msgspec.Meta(description="the database URL without credentials")]
    counts: dict[str, int]
