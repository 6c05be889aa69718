"""The data engine's part of the OpenAPI document (merged by :func:`detwatch.api.openapi.openapi_document`).

Request schemas say exactly what the routes accept (the fuzz test holds them to it);
response schemas name the fields clients read.
"""

from __future__ import annotations

from typing import Any

from detwatch.contract.predictions import MAX_COORDINATE, MAX_DETECTIONS, MAX_ID_LENGTH
from detwatch.contract.textfields import NAME_PATTERN
from detwatch.review import CURSOR_PATTERN, ITEM_STATUSES, JOB_STATUSES
from detwatch_instrumentation.flagging import EDGE_CONDITIONS

__all__ = ["paths", "schemas"]

JSON = "application/json"
_NAME = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NAME_PATTERN, "description": "not blank"}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}
_PATH_ID = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}}


def _strict(properties: dict[str, Any], description: str = "", required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if description:
        out["description"] = description
    if required:
        out["required"] = required
    return out


_POLICY = _strict(
    {
        "low_confidence": _strict(
            {
                "enabled": {"type": "boolean"},
                "threshold": _RATE,
                "sample_rate": _RATE,
                "mode": {"type": "string", "enum": ["any", "max"]},
            },
            "an image with a detection below threshold (mode any; max: its best one), sampled at sample_rate",
        ),
        "edge_cases": _strict(
            {
                "enabled": {"type": "boolean"},
                "conditions": {"type": "array", "items": {"type": "string", "enum": list(EDGE_CONDITIONS)}},
                "sample_rate": _RATE,
                "high_density": _strict(
                    {
                        "min_detections": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                        "iou_threshold": _RATE,
                        "min_overlapping": {"type": "integer", "minimum": 2, "maximum": 1_000_000},
                    }
                ),
                "unusual_size": _strict(
                    {
                        "min_area": _RATE,
                        "max_area": {"type": "number", "minimum": 0},
                        "learn": {"type": "boolean"},
                        "quantile": {"type": "number", "minimum": 0, "maximum": 0.5},
                        "min_samples": {"type": "integer", "minimum": 1, "maximum": 2**62},
                    }
                ),
            }
        ),
        "random_sample": _strict({"enabled": {"type": "boolean"}, "rate": _RATE}),
    },
    "The user guide's data-engine config; semantics in detwatch_instrumentation.flagging",
)

_ANNOTATION = {
    "type": "object",
    "required": ["class", "box"],
    "properties": {
        "class": _NAME,
        "box": {
            "type": "array",
            "items": {"type": "number", "minimum": -MAX_COORDINATE, "maximum": MAX_COORDINATE},
            "minItems": 4,
            "maxItems": 4,
            "description": "[x1, y1, x2, y2] in pixels, x2 > x1 and y2 > y1",
        },
    },
}


def schemas() -> dict[str, Any]:
    return {
        "DataEngineConfig": _strict(
            {
                "config": _POLICY,
                "target_dataset_id": _NAME,
                "since": {
                    "type": "string",
                    "anyOf": [
                        {"pattern": "^[0-9]{1,6} *(m|min|h|d|w)$"},
                        {"format": "date-time"},
                        {"const": "none"},
                    ],
                    "default": "24h",
                    "description": "apply the policy to the retained predictions since then: a duration back from "
                    'now ("24h", "30m", "7d"), an RFC 3339 time, or "none"',
                },
            },
            "A model's flagging policy and the dataset its flagged items go to",
            ["config", "target_dataset_id"],
        ),
        "DataEngine": {
            "type": "object",
            "required": ["id", "model_id", "config", "target_dataset_id"],
            "properties": {
                "id": {"type": "string"},
                "model_id": {"type": "string"},
                "config": {"type": "object"},
                "policy": {"type": "object", "description": "the effective policy, with learned size ranges"},
                "target_dataset_id": {"type": "string"},
                "updated_unix_nano": {"type": "integer"},
                "backfill": {
                    "type": "object",
                    "description": "PUT only: the policy applied to the retained predictions of a window",
                    "properties": {
                        "since": {"type": ["string", "null"]},
                        "until": {"type": "string"},
                        "examined": {"type": "integer", "description": "predictions evaluated"},
                        "flagged": {"type": "integer", "description": "items added to the review queue"},
                        "complete": {
                            "type": "boolean",
                            "description": "false when cut at the most predictions one change evaluates (newest "
                            "first); since then says where it stopped",
                        },
                    },
                },
            },
        },
        "FlaggedItem": {
            "type": "object",
            "required": ["id", "dataset_id", "prediction_id", "reasons", "detections", "image", "status"],
            "properties": {
                "id": {"type": "string"},
                "dataset_id": {"type": "string"},
                "prediction_id": {"type": "string"},
                "model_id": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "detections": {"type": "array"},
                "image": {"type": "object"},
                "status": {"type": "string", "enum": list(ITEM_STATUSES)},
                "feedback": {"type": "array"},
                "suggested_label": {"type": "array"},
                "label": {"type": ["array", "null"]},
            },
        },
        "FlaggedItemPage": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/FlaggedItem"}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Claim": {
            "type": "object",
            "required": ["reviewer"],
            "properties": {
                "reviewer": _NAME,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "lease_s": {"type": "number", "minimum": 1, "maximum": 604800},
            },
        },
        "Label": {
            "type": "object",
            "required": ["annotations"],
            "properties": {
                "annotations": {"type": "array", "maxItems": MAX_DETECTIONS, "items": _ANNOTATION},
                "reviewer": _NAME,
            },
        },
        "Reject": {"type": "object", "properties": {"reviewer": _NAME}},
        "TrainingJobCreate": {
            "type": "object",
            "additionalProperties": False,  # the trainer's own settings go in options
            "required": ["name", "dataset_id", "version_id"],
            "properties": {
                "name": _NAME,
                "dataset_id": _NAME,
                "version_id": _NAME,
                "base_model_id": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": NAME_PATTERN,
                },
                "options": {"type": ["object", "null"]},
            },
        },
        "TrainingJob": {
            "type": "object",
            "required": ["id", "name", "dataset_id", "version_id", "status", "history"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "dataset_id": {"type": "string"},
                "version_id": {"type": "string"},
                "base_model_id": {"type": ["string", "null"]},
                "status": {"type": "string", "enum": list(JOB_STATUSES)},
                "attempts": {"type": "integer"},
                "model_version": {"type": ["string", "null"]},
                "history": {"type": "array"},
                "trainer": {
                    "type": "string",
                    "description": "where the job goes: 'webhook URL', 'command ...' or 'none'",
                },
                "warning": {
                    "type": ["string", "null"],
                    "description": "why the job cannot progress (no trainer configured), null otherwise",
                },
            },
        },
        "TrainingJobStatus": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": list(JOB_STATUSES)},
                "model_version": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": NAME_PATTERN,
                },
                "message": {"type": ["string", "null"], "maxLength": 4096},
                "metrics": {"type": ["object", "null"]},
            },
        },
    }


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


def paths(body_errors: dict[str, Any], read_errors: dict[str, Any]) -> dict[str, Any]:
    """The data engine's paths; ``body_errors``/``read_errors`` are the document's common answers."""
    not_found = {"404": _answer("unknown", "Error")}
    conflict = {"409": _answer("the item's or job's state does not allow it", "Error")}
    dataset = {"name": "dataset_id", **_PATH_ID}
    item = {"name": "item_id", **_PATH_ID}
    version = {"name": "version_id", **_PATH_ID}
    job = {"name": "job_id", **_PATH_ID}
    export_format = {"name": "format", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["coco", "yolo"]}}  # fmt: skip
    export_answer = {
        "description": "COCO detection JSON, or the YOLO layout zipped",
        "content": {
            JSON: {"schema": {"type": "object"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return {
        "/v1/models/{model_id}/data-engine": {
            "put": {
                "summary": "Configure the model's data engine (configure_data_engine)",
                "parameters": [{"name": "model_id", **_PATH_ID}],
                "requestBody": _body("DataEngineConfig"),
                "responses": {"200": _answer("the stored policy", "DataEngine"), **not_found, **body_errors},
            },
            "get": {
                "summary": "The model's data-engine policy (polled by the decorator's DataEngine)",
                "parameters": [{"name": "model_id", **_PATH_ID}],
                "responses": {"200": _answer("the policy", "DataEngine"), **not_found, **read_errors},
            },
        },
        "/v1/datasets/{dataset_id}/items": {
            "get": {
                "summary": "The review queue, oldest first (get_flagged_items)",
                "parameters": [
                    dataset,
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": [*ITEM_STATUSES, "all"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": f"^{CURSOR_PATTERN.pattern}$"},
                        "description": "next_cursor of the previous page (opaque)",
                    },
                ],
                "responses": {
                    "200": _answer("one page", "FlaggedItemPage"),
                    "400": _answer("bad parameter; the error names it", "Error"),
                    **not_found,
                    **read_errors,
                },
            }
        },
        "/v1/datasets/{dataset_id}/items/{item_id}": {
            "get": {
                "summary": "One flagged item",
                "parameters": [dataset, item],
                "responses": {"200": _answer("the item", "FlaggedItem"), **not_found, **read_errors},
            }
        },
        "/v1/datasets/{dataset_id}/claims": {
            "post": {
                "summary": "Claim items for one reviewer (never given to another)",
                "parameters": [dataset],
                "requestBody": _body("Claim"),
                "responses": {"200": _answer("the claimed items", "FlaggedItemPage"), **not_found, **body_errors},
            }
        },
        "/v1/datasets/{dataset_id}/items/{item_id}/label": {
            "post": {
                "summary": "Label an item with corrected boxes and classes",
                "parameters": [dataset, item],
                "requestBody": _body("Label"),
                "responses": {
                    "200": _answer("the item", "FlaggedItem"),
                    **not_found,
                    **conflict,
                    **body_errors,
                },
            }
        },
        "/v1/datasets/{dataset_id}/items/{item_id}/reject": {
            "post": {
                "summary": "Reject an item (it enters no dataset version)",
                "parameters": [dataset, item],
                "requestBody": _body("Reject"),
                "responses": {
                    "200": _answer("the item", "FlaggedItem"),
                    **not_found,
                    **conflict,
                    **body_errors,
                },
            }
        },
        "/v1/datasets/{dataset_id}/versions/{version_id}": {
            "get": {
                "summary": "A dataset version: content hash, per-class counts, diff against its parent",
                "parameters": [dataset, version],
                "responses": {"200": _answer("the version", "DatasetVersion"), **not_found, **read_errors},
            }
        },
        "/v1/datasets/{dataset_id}/versions/{version_id}/export": {
            "get": {
                "summary": "Export a dataset version as COCO JSON or a YOLO zip",
                "parameters": [dataset, version, export_format],
                "responses": {
                    "200": export_answer,
                    "400": _answer("bad format", "Error"),
                    **not_found,
                    **read_errors,
                },
            }
        },
        "/v1/training-jobs": {
            "post": {
                "summary": "Record a training job and hand it to the trainer (create_training_job)",
                "description": "Every URL the trainer is given starts with the configured public URL "
                "(DETWATCH_PUBLIC_URL), never with the request's Host; with a trainer configured and no public "
                "URL the job is not recorded (503 public_url_not_configured).",
                "requestBody": _body("TrainingJobCreate"),
                "responses": {"201": _answer("the job", "TrainingJob"), **not_found, **body_errors},
            }
        },
        "/v1/training-jobs/{job_id}": {
            "get": {
                "summary": "One training job with its history",
                "parameters": [job],
                "responses": {"200": _answer("the job", "TrainingJob"), **not_found, **read_errors},
            }
        },
        "/v1/training-jobs/{job_id}/dataset": {
            "get": {
                "summary": "The job's dataset version, for its trainer (the job's callback token until the job "
                "has finished, or the API token)",
                "parameters": [job],
                "responses": {
                    "200": _answer("the version", "DatasetVersion"),
                    "403": _answer("the job has finished: its callback token reads nothing more", "Error"),
                    **not_found,
                    **read_errors,
                },
            }
        },
        "/v1/training-jobs/{job_id}/dataset/export": {
            "get": {
                "summary": "The job's dataset version as COCO JSON or a YOLO zip, for its trainer (as above)",
                "parameters": [job, export_format],
                "responses": {
                    "200": export_answer,
                    "400": _answer("bad format", "Error"),
                    "403": _answer("the job has finished: its callback token reads nothing more", "Error"),
                    **not_found,
                    **read_errors,
                },
            }
        },
        "/v1/training-jobs/{job_id}/status": {
            "post": {
                "summary": "The trainer's status callback (the job's callback token, or the API token)",
                "parameters": [job],
                "requestBody": _body("TrainingJobStatus"),
                "responses": {
                    "200": _answer("the job", "TrainingJob"),
                    **not_found,
                    **conflict,
                    **body_errors,
                },
            }
        },
    }
