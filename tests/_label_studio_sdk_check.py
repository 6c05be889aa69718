"""Validate Label Studio tasks with label-studio-sdk's own models: run apart, with the SDK first on the path.

Reads ``{"config": ..., "tasks": [...]}`` on stdin and prints, per task, what the SDK
says: the task through ``TaskValue`` (pydantic), each prediction through
``LabelInterface.validate_prediction`` and each annotation through ``AnnotationValue``
and ``LabelInterface.validate_annotation``, and whether the object tags' data is there.
(``LabelInterface.validate_task`` itself cannot be used: 2.1.2 calls
``validate_prediction()`` without its argument for any task with predictions.)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from label_studio_sdk.label_interface import LabelInterface  # type: ignore[import-not-found]
from label_studio_sdk.label_interface.objects import (  # type: ignore[import-not-found]
    AnnotationValue,
    PredictionValue,
    TaskValue,
)


def check(interface: Any, task: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    try:
        TaskValue.model_validate(task)
    except Exception as exc:  # noqa: BLE001 - the SDK's message is the answer
        errors.append(f"task: {exc}")
    for obj in interface.objects:
        if obj.value_is_variable and task.get("data", {}).get(obj.value_name) is None:
            errors.append(f"data.{obj.value_name} missing")
    for i, prediction in enumerate(task.get("predictions", [])):
        PredictionValue.model_validate(prediction)
        errors.extend(f"predictions[{i}]: {e}" for e in interface.validate_prediction(prediction, return_errors=True))
    for i, annotation in enumerate(task.get("annotations", [])):
        try:
            AnnotationValue.model_validate(annotation)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"annotations[{i}]: {exc}")
        if not interface.validate_annotation(annotation):
            errors.append(f"annotations[{i}]: refused by validate_annotation")
    return {"errors": errors}


def main() -> None:
    document = json.load(sys.stdin)
    interface = LabelInterface(document["config"])
    json.dump([check(interface, task) for task in document["tasks"]], sys.stdout)


if __name__ == "__main__":
    main()
