"""The data engine's paths in the OpenAPI document (merged by :func:`detwatch.api.openapi.openapi_document`).

Request and answer schemas are the shapes of :mod:`detwatch.contract.shapes.review`;
this module only says which route takes and answers which.
"""

from __future__ import annotations

from typing import Any, Final

from detwatch.api._openapi_paths import BODY_ERRORS, JSON, NOT_FOUND, READ_ERRORS, answer, operation, path_id
from detwatch.contract.shapes import (
    CandidatePredictions,
    CandidateResult,
    Claim,
    DataEngine,
    DataEngineConfig,
    DatasetVersion,
    Error,
    FlaggedItem,
    FlaggedItemPage,
    Label,
    Reject,
    TrainingJob,
    TrainingJobCreate,
    TrainingJobStatus,
)
from detwatch.contract.shapes.review import ITEM_STATUSES
from detwatch.review import CURSOR_PATTERN

__all__ = ["paths"]

_CONFLICT: Final = {"409": answer("the item's or job's state does not allow it", Error)}
_FINISHED: Final = {"403": answer("the job has finished: its callback token reads nothing more", Error)}
_DATASET: Final = path_id("dataset_id")
_ITEM: Final = path_id("item_id")
_VERSION: Final = path_id("version_id")
_JOB: Final = path_id("job_id")
_EXPORT_FORMAT: Final = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["coco", "yolo"]},
}
_EXPORT_ANSWER: Final = {
    "description": "COCO detection JSON, or the YOLO layout zipped",
    "content": {
        JSON: {"schema": {"type": "object"}},
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
    },
}


def paths() -> dict[str, Any]:
    """The data engine's paths."""
    return {**_data_engine_paths(), **_queue_paths(), **_version_paths(), **_training_paths()}


def _data_engine_paths() -> dict[str, Any]:
    model = [path_id("model_id")]
    return {
        "/v1/models/{model_id}/data-engine": {
            "put": operation(
                "Configure the model's data engine (configure_data_engine)",
                {"200": answer("the stored policy", DataEngine), **NOT_FOUND, **BODY_ERRORS},
                request=DataEngineConfig,
                parameters=model,
            ),
            "get": operation(
                "The model's data-engine policy (polled by the decorator's DataEngine)",
                {"200": answer("the policy", DataEngine), **NOT_FOUND, **READ_ERRORS},
                parameters=model,
            ),
        },
    }


def _queue_parameters() -> list[dict[str, Any]]:
    return [
        _DATASET,
        {"name": "status", "in": "query", "required": False,
         "schema": {"type": "string", "enum": [*ITEM_STATUSES, "all"]}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "cursor", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": f"^{CURSOR_PATTERN.pattern}$"},
         "description": "next_cursor of the previous page (opaque)"},
    ]  # fmt: skip


def _queue_paths() -> dict[str, Any]:
    item = [_DATASET, _ITEM]
    changed = {"200": answer("the item", FlaggedItem), **NOT_FOUND, **_CONFLICT, **BODY_ERRORS}
    return {
        "/v1/datasets/{dataset_id}/items": {
            "get": operation(
                "The review queue, oldest first (get_flagged_items)",
                {
                    "200": answer("one page", FlaggedItemPage),
                    "400": answer("bad parameter; the error names it", Error),
                    **NOT_FOUND,
                    **READ_ERRORS,
                },
                parameters=_queue_parameters(),
            )
        },
        "/v1/datasets/{dataset_id}/items/{item_id}": {
            "get": operation(
                "One flagged item",
                {"200": answer("the item", FlaggedItem), **NOT_FOUND, **READ_ERRORS},
                parameters=item,
            )
        },
        "/v1/datasets/{dataset_id}/claims": {
            "post": operation(
                "Claim items for one reviewer (never given to another)",
                {"200": answer("the claimed items", FlaggedItemPage), **NOT_FOUND, **BODY_ERRORS},
                request=Claim,
                parameters=[_DATASET],
            )
        },
        "/v1/datasets/{dataset_id}/items/{item_id}/label": {
            "post": operation("Label an item with corrected boxes and classes", changed, request=Label, parameters=item)
        },
        "/v1/datasets/{dataset_id}/items/{item_id}/reject": {
            "post": operation("Reject an item (it enters no dataset version)", changed, request=Reject, parameters=item)
        },
    }


def _version_paths() -> dict[str, Any]:
    version = [_DATASET, _VERSION]
    return {
        "/v1/datasets/{dataset_id}/versions/{version_id}": {
            "get": operation(
                "A dataset version: content hash, per-class counts, diff against its parent",
                {"200": answer("the version", DatasetVersion), **NOT_FOUND, **READ_ERRORS},
                parameters=version,
            )
        },
        "/v1/datasets/{dataset_id}/versions/{version_id}/export": {
            "get": operation(
                "Export a dataset version as COCO JSON or a YOLO zip",
                {"200": _EXPORT_ANSWER, "400": answer("bad format", Error), **NOT_FOUND, **READ_ERRORS},
                parameters=[*version, _EXPORT_FORMAT],
            )
        },
    }


def _training_paths() -> dict[str, Any]:
    return {
        "/v1/training-jobs": {
            "post": operation(
                "Record a training job and hand it to the trainer (create_training_job)",
                {"201": answer("the job", TrainingJob), **NOT_FOUND, **BODY_ERRORS},
                request=TrainingJobCreate,
                description="Every URL the trainer is given starts with the configured public URL "
                "(DETWATCH_PUBLIC_URL), never with the request's Host; with a trainer configured and no public "
                "URL the job is not recorded (503 public_url_not_configured).",
            )
        },
        "/v1/training-jobs/{job_id}": {
            "get": operation(
                "One training job with its history",
                {"200": answer("the job", TrainingJob), **NOT_FOUND, **READ_ERRORS},
                parameters=[_JOB],
            )
        },
        **_trainer_paths(),
    }


def _trainer_paths() -> dict[str, Any]:
    """What a job's trainer calls, with the job's callback token."""
    return {
        "/v1/training-jobs/{job_id}/dataset": {
            "get": operation(
                "The job's dataset version, for its trainer (the job's callback token until the job "
                "has finished, or the API token)",
                {"200": answer("the version", DatasetVersion), **_FINISHED, **NOT_FOUND, **READ_ERRORS},
                parameters=[_JOB],
            )
        },
        "/v1/training-jobs/{job_id}/dataset/export": {
            "get": operation(
                "The job's dataset version as COCO JSON or a YOLO zip, for its trainer (as above)",
                {"200": _EXPORT_ANSWER, "400": answer("bad format", Error), **_FINISHED, **NOT_FOUND, **READ_ERRORS},
                parameters=[_JOB, _EXPORT_FORMAT],
            )
        },
        "/v1/training-jobs/{job_id}/status": {
            "post": operation(
                "The trainer's status callback (the job's callback token, or the API token)",
                {"200": answer("the job", TrainingJob), **NOT_FOUND, **_CONFLICT, **BODY_ERRORS},
                request=TrainingJobStatus,
                parameters=[_JOB],
                description="A reported success of a job with a gate is judged first: a candidate worse than its "
                "base by more than gate.max_drop ends the job gated (gate_result says why) and registers no version.",
            )
        },
        "/v1/training-jobs/{job_id}/predictions": {
            "post": operation(
                "A gated job's candidate detections on the base model's labelled images, by image key (the job's "
                "callback token until the job has finished, or the API token)",
                {
                    "200": answer("what was stored and what was rejected", CandidateResult),
                    **_FINISHED,
                    **NOT_FOUND,
                    **_CONFLICT,
                    **BODY_ERRORS,
                },
                request=CandidatePredictions,
                parameters=[_JOB],
                description="Kept apart from production predictions: no aggregates, no flagging, no version. An "
                "image key that is not a labelled image of the base model in the job's dataset is rejected.",
            )
        },
    }
