"""The Label Studio routes' paths in the OpenAPI document (merged by :func:`detwatch.api.openapi.openapi_document`)."""

from __future__ import annotations

from typing import Any

from detwatch.api._openapi_paths import BODY_ERRORS, NOT_FOUND, READ_ERRORS, answer, operation, path_id
from detwatch.contract.shapes import (
    Error,
    LabelStudioImport,
    LabelStudioImportResult,
    LabelStudioTaskPage,
    LabelStudioWebhook,
    LabelStudioWebhookResult,
)
from detwatch.contract.shapes.label_studio import MAX_TASK_PAGE, SECRET_HEADER
from detwatch.contract.shapes.review import ITEM_STATUSES
from detwatch.contract.textfields import NO_NUL_PATTERN
from detwatch.review import CURSOR_PATTERN

__all__ = ["paths"]


def paths() -> dict[str, Any]:
    """Tasks out, annotations in, the webhook."""
    dataset = path_id("dataset_id")
    return {
        "/v1/datasets/{dataset_id}/label-studio/tasks": {
            "get": operation(
                "The review queue as Label Studio tasks (export_label_studio_tasks)",
                {
                    "200": answer("one page of tasks and their labeling config", LabelStudioTaskPage),
                    "400": answer("bad parameter; the error names it", Error),
                    **NOT_FOUND,
                    **READ_ERRORS,
                },
                parameters=[
                    dataset,
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": [*ITEM_STATUSES, "all"]}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TASK_PAGE}},
                    {"name": "cursor", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": f"^{CURSOR_PATTERN.pattern}$"}},
                ],
                description="data.image is a URL a browser opens: the item's http(s) URI, or the companion's image "
                "route under DETWATCH_PUBLIC_URL when the image lies in the images root.",
            )
        },
        "/v1/datasets/{dataset_id}/label-studio/annotations": {
            "post": operation(
                "Label the items of Label Studio's JSON export (import_label_studio_annotations)",
                {"200": answer("one outcome per task", LabelStudioImportResult), **NOT_FOUND, **BODY_ERRORS},
                request=LabelStudioImport,
                parameters=[dataset],
                description="A task that fails gets its own error in the answer; the others are labelled. "
                "Idempotent: an annotation equal to the item's label changes nothing.",
            )
        },
        "/v1/datasets/{dataset_id}/label-studio/webhook": {
            "post": operation(
                "Label Studio's webhook: ANNOTATION_CREATED and ANNOTATION_UPDATED label the task's item",
                {
                    "200": answer("labelled, unchanged or ignored", LabelStudioWebhookResult),
                    "409": answer("the item's state does not allow it", Error),
                    **NOT_FOUND,
                    **BODY_ERRORS,
                },
                request=LabelStudioWebhook,
                parameters=[
                    dataset,
                    {"name": "secret", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": NO_NUL_PATTERN},
                     "description": f"DETWATCH_LABEL_STUDIO_SECRET (or in the {SECRET_HEADER} header)"},
                ],
            )
        },
    }  # fmt: skip
