"""Label Studio and the review queue: exporting items as tasks, labelling items from annotations.

The formats are :mod:`.label_studio`'s; this module reads and writes the review queue
through :class:`~detwatch.review.DataEngineStore`, so that an item labelled in Label
Studio is labelled exactly as through ``POST .../items/{id}/label`` (the same state
rules: a rejected item stays rejected, an item another reviewer holds is theirs).

- Import is per task: a task that cannot be read, names no item, or whose item's
  state forbids the label gets its own error in the answer, and every other task is
  labelled all the same.
- Idempotent: an annotation whose boxes equal the item's current label changes
  nothing (``unchanged``), so a retried webhook, an ``ANNOTATION_CREATED`` delivered
  twice, or a JSON export imported again labels once; an annotation with other boxes
  (``ANNOTATION_UPDATED``, a re-export after a correction) relabels the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from detwatch.review._store import DataEngineStore
from detwatch.review.images import browser_url
from detwatch.review.label_studio import (
    LabelStudioError,
    annotation_boxes,
    chosen_annotation,
    item_id_of,
    labeling_config,
    to_task,
)
from detwatch.storage.records import ConflictError, FlaggedItemRecord

__all__ = [
    "DEFAULT_REVIEWER",
    "WEBHOOK_ACTIONS",
    "TaskOutcome",
    "TaskPage",
    "export_tasks",
    "import_annotation",
    "import_tasks",
]

DEFAULT_REVIEWER: Final = "label-studio"
"""The reviewer an item labelled from Label Studio is recorded with, unless the caller names one."""
WEBHOOK_ACTIONS: Final = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})
"""Label Studio webhook actions that label an item; others are acknowledged and ignored."""

Outcome = Literal["labeled", "unchanged", "failed"]


@dataclass(frozen=True)
class TaskOutcome:
    """What importing one task did; ``code``/``message``/``field`` say why it failed."""

    index: int
    item_id: str | None
    status: Outcome
    code: str | None = None
    message: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks, the labeling config they are made for, and the cursor of the next page."""

    tasks: list[dict[str, Any]]
    label_config: str
    next_cursor: str | None


def export_tasks(
    engine: DataEngineStore,
    dataset_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: tuple[int, str] | None,
    images_root: Path,
    public_url: str | None,
    signing_key: str | None = None,
) -> TaskPage:
    """One page of the dataset's items (``status``; ``None``: all) as Label Studio tasks.

    ``signing_key`` (the API token) signs the image URLs of files the companion serves, so
    that Label Studio's browser loads them without the token (:func:`.images.image_signature`).
    """
    items, next_cursor = engine.list_items(dataset_id, status=status, limit=limit, cursor=cursor)
    tasks = []
    classes: set[str] = set()
    for item in items:
        url = browser_url(
            item.image.uri,
            dataset_id=item.dataset_id,
            item_id=item.id,
            root=images_root,
            public_url=public_url,
            signing_key=signing_key,
        )
        tasks.append(to_task(item, image_url=url))
        classes.update(str(d["class"]) for d in item.detections)
        classes.update(str(a["class"]) for a in item.label or ())
    return TaskPage(tasks, labeling_config(classes), next_cursor)


def _same_label(item: FlaggedItemRecord, boxes: Sequence[Mapping[str, Any]]) -> bool:
    def key(annotations: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[float]]]:
        return sorted((str(a["class"]), [float(v) for v in a["box"]]) for a in annotations)

    return item.status == "labeled" and item.label is not None and key(item.label) == key(boxes)


def import_annotation(
    engine: DataEngineStore,
    dataset_id: str,
    task: Mapping[str, Any],
    annotation: Mapping[str, Any],
    *,
    reviewer: str = DEFAULT_REVIEWER,
    index: int = 0,
) -> TaskOutcome:
    """Label the item ``task`` names with ``annotation``'s boxes (unless they are its label already)."""
    try:
        item_id = item_id_of(task)
    except LabelStudioError as exc:
        return TaskOutcome(index, None, "failed", "invalid_task", exc.message, exc.field)
    item = engine.get_item(dataset_id, item_id)
    if item is None:
        message = f"no item {item_id!r} in dataset {dataset_id!r}"
        return TaskOutcome(index, item_id, "failed", "item_not_found", message, "meta.detwatch_item_id")
    try:
        boxes = annotation_boxes(
            annotation, width=item.image.width, height=item.image.height, detections=item.detections
        )
    except LabelStudioError as exc:
        return TaskOutcome(index, item_id, "failed", "invalid_annotation", exc.message, f"annotation.{exc.field}")
    if _same_label(item, boxes):
        return TaskOutcome(index, item_id, "unchanged")
    try:
        labelled = engine.review_item(dataset_id, item_id, outcome="labeled", annotations=boxes, reviewer=reviewer)
    except ConflictError as exc:
        return TaskOutcome(index, item_id, "failed", "conflict", str(exc), exc.field)
    if labelled is None:  # deleted between the read and the write
        message = f"no item {item_id!r} in dataset {dataset_id!r}"
        return TaskOutcome(index, item_id, "failed", "item_not_found", message, "meta.detwatch_item_id")
    return TaskOutcome(index, item_id, "labeled")


def import_tasks(
    engine: DataEngineStore, dataset_id: str, tasks: Sequence[Any], *, reviewer: str = DEFAULT_REVIEWER
) -> list[TaskOutcome]:
    """Label the items of Label Studio's JSON export (tasks with ``annotations``), one outcome per task."""
    outcomes = []
    for index, task in enumerate(tasks):
        if not isinstance(task, Mapping):
            outcomes.append(TaskOutcome(index, None, "failed", "invalid_task", "must be an object", "task"))
            continue
        try:
            annotation = chosen_annotation(task)
        except LabelStudioError as exc:
            item = _item_id_or_none(task)
            outcomes.append(TaskOutcome(index, item, "failed", "invalid_task", exc.message, exc.field))
            continue
        outcomes.append(import_annotation(engine, dataset_id, task, annotation, reviewer=reviewer, index=index))
    return outcomes


def _item_id_or_none(task: Mapping[str, Any]) -> str | None:
    try:
        return item_id_of(task)
    except LabelStudioError:
        return None
