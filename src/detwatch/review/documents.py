"""The JSON documents of the data engine's records, as the HTTP API answers them.

Storage returns frozen records; the routes (:mod:`detwatch.api.review`) turn them into
these documents at the edge. The key order is the API's (the app keeps insertion order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, cast

from detwatch.storage.records import DatasetSnapshotRecord, FlaggedItemRecord, ItemFeedback, TrainingJobRecord

__all__ = ["item_json", "job_json", "suggested_label", "version_json"]


def _box(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values]


def suggested_label(detections: Sequence[Mapping[str, Any]], feedback: Sequence[ItemFeedback]) -> list[dict[str, Any]]:
    """The label a reviewer starts from: the detections with the feedback's corrections applied.

    ``wrong_label`` changes the class of the detection it names, ``wrong_box`` its box,
    ``false_positive`` removes it, ``missed_object`` adds the corrected box and class;
    feedback that names no detection changes nothing but is shown beside the item.
    Applied in feedback time order; the latest correction of a detection wins.
    """
    boxes: list[dict[str, Any] | None] = [{"class": d["class"], "box": _box(d["box"])} for d in detections]
    added: list[dict[str, Any]] = []
    for f in sorted(feedback, key=lambda f: (f.time_unix_nano, f.id)):
        index = f.detection_index
        kind = f.type
        if kind == "missed_object" and f.corrected_box and f.corrected_class:
            added.append({"class": f.corrected_class, "box": _box(f.corrected_box)})
            continue
        if index is None or not 0 <= index < len(boxes) or boxes[index] is None:
            continue
        current = cast(dict[str, Any], boxes[index])
        if kind == "false_positive":
            boxes[index] = None
        elif kind == "wrong_label" and f.corrected_class:
            current["class"] = f.corrected_class
            if f.corrected_box:
                current["box"] = _box(f.corrected_box)
        elif kind == "wrong_box" and f.corrected_box:
            current["box"] = _box(f.corrected_box)
            if f.corrected_class:
                current["class"] = f.corrected_class
    return [b for b in boxes if b is not None] + added


def _feedback_json(f: ItemFeedback) -> dict[str, Any]:
    return {
        "id": f.id,
        "type": f.type,
        "detection_index": f.detection_index,
        "corrected_class": f.corrected_class,
        "corrected_box": f.corrected_box,
        "reviewer": f.reviewer,
        "comment": f.comment,
        "time_unix_nano": f.time_unix_nano,
    }


def item_json(item: FlaggedItemRecord) -> dict[str, Any]:
    """A flagged item with the feedback on its prediction and the label a reviewer starts from."""
    return {
        "id": item.id,
        "dataset_id": item.dataset_id,
        "prediction_id": item.prediction_id,
        "model_id": item.model_id,
        "model_version": item.model_version,
        "time_unix_nano": item.time_unix_nano,
        "reasons": item.reasons,
        "detections": item.detections,
        "image": {"key": item.image.key, "uri": item.image.uri, "width": item.image.width, "height": item.image.height},
        "status": item.status,
        "assignee": item.assignee,
        "claimed_unix_nano": item.claimed_unix_nano,
        "label": item.label,
        "reviewer": item.reviewer,
        "feedback": [_feedback_json(f) for f in item.feedback],
        "suggested_label": suggested_label(item.detections, item.feedback),
        "created_unix_nano": item.created_unix_nano,
        "updated_unix_nano": item.updated_unix_nano,
        "ab_variant": item.ab_variant,
        "inclusion_probability": item.inclusion_probability,
    }


def version_json(version: DatasetSnapshotRecord) -> dict[str, Any]:
    """A dataset version: its content hash, counts and the diff from its parent."""
    return asdict(version)


def job_json(job: TrainingJobRecord, *, secret: bool = False) -> dict[str, Any]:
    """A training job; ``secret`` adds what only its trainer may see (the callback URL and token)."""
    out: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "dataset_id": job.dataset_id,
        "version_id": job.version_id,
        "base_model_id": job.base_model_id,
        "options": job.options,
        "status": job.status,
        "attempts": job.attempts,
        "handed_off": job.handed_off,
        "last_error": job.last_error,
        "model_version": job.model_version,
        "history": job.history,
        "created_unix_nano": job.created_unix_nano,
        "updated_unix_nano": job.updated_unix_nano,
        "gate": job.gate,
        "gate_result": job.gate_result,
    }
    if secret:
        out["callback_url"] = job.callback_url
        out["callback_token"] = job.callback_token
    return out
