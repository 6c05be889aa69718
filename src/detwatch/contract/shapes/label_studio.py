"""Shapes of the Label Studio routes: tasks out, annotations in, and Label Studio's webhook.

A task is Label Studio's own JSON (its import and export format); the fields detwatch
writes and reads are declared, the rest passes as Label Studio keeps it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from detwatch.contract.shapes._common import ErrorDetail, Object
from detwatch.contract.textfields import NAME_PATTERN

__all__ = [
    "CROSS_FIELD",
    "MAX_IMPORT_TASKS",
    "MAX_TASK_PAGE",
    "SECRET_HEADER",
    "LabelStudioImport",
    "LabelStudioImportResult",
    "LabelStudioTask",
    "LabelStudioTaskData",
    "LabelStudioTaskOutcome",
    "LabelStudioTaskPage",
    "LabelStudioWebhook",
    "LabelStudioWebhookResult",
]

MAX_IMPORT_TASKS: Final = 1000
"""Most tasks one import takes (a larger export is sent in parts)."""
MAX_TASK_PAGE: Final = 1000
"""Most tasks one page of the export holds."""
SECRET_HEADER: Final = "X-Detwatch-Secret"
"""The header Label Studio's webhook carries ``DETWATCH_LABEL_STUDIO_SECRET`` in (or ``?secret=`` in its URL)."""

_ReviewName = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NAME_PATTERN, description="not blank")]


class LabelStudioTaskData(TypedDict):
    """What Label Studio's Image tag reads, and the item the task is of."""

    image: Annotated[str, msgspec.Meta(description="a URL a browser opens (or the item's URI where there is none)")]
    detwatch_item_id: str


class LabelStudioTask(TypedDict):
    """A Label Studio task (its import format): the item's image, the model's boxes as predictions, the item id."""

    data: LabelStudioTaskData
    meta: Annotated[Object, msgspec.Meta(description="detwatch_item_id, detwatch_dataset_id, ... and any note")]
    predictions: NotRequired[
        Annotated[
            list[Object],
            msgspec.Meta(description="model_version, score and rectanglelabels results in percent of the image"),
        ]
    ]


class LabelStudioTaskPage(TypedDict):
    """One page of tasks, the labeling config they are made for, and the cursor of the next page."""

    tasks: list[LabelStudioTask]
    label_config: Annotated[str, msgspec.Meta(description="Label Studio's labeling config XML for these tasks")]
    next_cursor: str | None


class LabelStudioImport(TypedDict):
    """Label Studio's JSON export: tasks with their annotations (the latest one not cancelled counts)."""

    tasks: Annotated[
        list[Any],
        msgspec.Meta(
            max_length=MAX_IMPORT_TASKS,
            description="Label Studio tasks (objects); one that is not readable fails alone, in the answer",
        ),
    ]
    reviewer: NotRequired[_ReviewName]


class LabelStudioTaskOutcome(TypedDict):
    """What importing one task did; a task that failed says why, and costs the others nothing."""

    index: Annotated[int, msgspec.Meta(description="the task's position in the request")]
    item_id: str | None
    status: Literal["labeled", "unchanged", "failed"]
    error: NotRequired[ErrorDetail]


class LabelStudioImportResult(TypedDict):
    """One outcome per task, and the counts of each."""

    results: list[LabelStudioTaskOutcome]
    labeled: int
    unchanged: int
    failed: int


class LabelStudioWebhook(TypedDict):
    """Label Studio's webhook body; ANNOTATION_CREATED and ANNOTATION_UPDATED label the task's item."""

    action: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    annotation: NotRequired[Object]
    task: NotRequired[Object]
    project: NotRequired[Object]


class LabelStudioWebhookResult(TypedDict):
    """What the webhook did: labelled the item, found its label unchanged, or ignored the action."""

    action: str
    status: Literal["labeled", "unchanged", "ignored"]
    item_id: str | None


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "LabelStudioWebhook": {
        # What a TypedDict cannot say: the two actions that label an item carry the task and its annotation.
        "if": {"properties": {"action": {"enum": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]}}},
        "then": {"required": ["action", "annotation", "task"]},
    }
}
