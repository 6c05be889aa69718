"""The registry: ``/v1/models`` (what the companion knows of each model) and ``/v1/datasets``.

Models appear by registration or by their first prediction event; datasets hold
immutable, content-addressed versions built by the data engine (:mod:`detwatch.review`).
``GET /v1/status`` (counts and version) lives here too: it reads the same registry.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response, jsonify

from detwatch.api._context import get_storage, review_store
from detwatch.api._request import check_shape, object_body, require_token, string_field
from detwatch.api.errors import APIError
from detwatch.contract.shapes import (
    Dataset,
    DatasetCreate,
    DatasetVersion,
    DatasetVersionCreate,
    Model,
    ModelList,
    ModelRegistration,
    ReviewProgress,
    Status,
)
from detwatch.contract.textfields import NUL_MESSAGE, holds_nul
from detwatch.storage import DatasetRecord, DatasetVersionRecord, ModelRecord
from detwatch.storage import ReviewProgress as ReviewProgressRecord
from detwatch.version import __version__

__all__ = ["bp"]

bp = Blueprint("registry", __name__, url_prefix="/v1")
bp.before_request(require_token)


def _model_json(model: ModelRecord) -> Model:
    return Model(
        id=model.id,
        model_id=model.id,
        versions=list(model.versions),
        metadata=dict(model.metadata),
        first_seen_unix_nano=model.first_seen_unix_nano,
        last_seen_unix_nano=model.last_seen_unix_nano,
    )


def _version_json(version: DatasetVersionRecord) -> DatasetVersion:
    return DatasetVersion(
        id=version.id,
        dataset_id=version.dataset_id,
        name=version.name,
        parent_version_id=version.parent_version_id,
        created_unix_nano=version.created_unix_nano,
    )


def _dataset_json(dataset: DatasetRecord, progress: ReviewProgressRecord | None = None) -> Dataset:
    body = Dataset(
        id=dataset.id,
        name=dataset.name,
        description=dataset.description,
        created_unix_nano=dataset.created_unix_nano,
        versions=[_version_json(v) for v in dataset.versions],
        version=_version_json(dataset.version),
    )
    if progress is not None:
        body["review"] = progress_json(progress)
    return body


def progress_json(progress: ReviewProgressRecord) -> ReviewProgress:
    """The review queue's progress as the API and the review page show it."""
    by = progress.by_status
    return ReviewProgress(
        waiting=by.get("needs_review", 0),
        claimed=by.get("in_review", 0),
        labeled=by.get("labeled", 0),
        rejected=by.get("rejected", 0),
        by_reviewer={
            name: {"claimed" if s == "in_review" else s: n for s, n in counts.items() if s != "needs_review"}
            for name, counts in progress.by_reviewer.items()
        },
    )


@bp.post("/models")
def register_model() -> tuple[Response, int]:
    data = object_body()
    model_id = string_field(data, "model_id", required=True)
    assert model_id is not None
    version = string_field(data, "version", required=False)
    check_shape(data, ModelRegistration)  # metadata: an object or null
    model = get_storage().register_model(model_id, version, dict(data.get("metadata") or {}))
    return jsonify(_model_json(model)), 201


@bp.get("/models")
def list_models() -> Response:
    return jsonify(ModelList(models=[_model_json(m) for m in get_storage().list_models()]))


@bp.get("/models/<model_id>")
def get_model(model_id: str) -> Response:
    model = get_storage().get_model(model_id)
    if model is None:
        raise APIError(404, "model_not_found", f"no model {model_id!r} (register it or send its telemetry)", "model_id")
    return jsonify(_model_json(model))


@bp.post("/datasets")
def create_dataset() -> tuple[Response, int]:
    data = object_body()
    name = string_field(data, "name", required=True)
    assert name is not None
    check_shape(data, DatasetCreate)  # description: text of at most MAX_TEXT characters
    description = str(data.get("description", ""))
    if holds_nul(description):
        raise APIError(400, "invalid_field", NUL_MESSAGE, "description")
    return jsonify(_dataset_json(get_storage().create_dataset(name, description))), 201


@bp.get("/datasets/<dataset_id>")
def get_dataset(dataset_id: str) -> Response:
    storage = get_storage()
    dataset = storage.get_dataset(dataset_id)
    if dataset is None:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id")
    return jsonify(_dataset_json(dataset, storage.review_progress(dataset_id)))


@bp.post("/datasets/<dataset_id>/versions")
def create_dataset_version(dataset_id: str) -> tuple[Response, int]:
    data = object_body()
    check_shape(data, DatasetVersionCreate)
    name = string_field(data, "name", required=True)
    assert name is not None
    parent = string_field(data, "parent_version_id", required=False)
    storage = get_storage()
    dataset = storage.get_dataset(dataset_id)
    if dataset is None:
        raise APIError(404, "dataset_not_found", f"no dataset {dataset_id!r}", "dataset_id")
    if parent is not None and parent not in {v.id for v in dataset.versions}:
        raise APIError(400, "invalid_field", f"not a version of dataset {dataset_id!r}", "parent_version_id")
    # An immutable, content-addressed snapshot of the parent's items plus the labelled ones.
    return jsonify(cast(DatasetVersion, review_store().create_version(dataset_id, name, parent))), 201


@bp.get("/status")
def status() -> Response:
    storage = get_storage()
    url = storage.url.split("@")[-1] if "@" in storage.url else storage.url  # no credentials
    return jsonify(Status(version=__version__, database=url, counts=dict(storage.counts())))
