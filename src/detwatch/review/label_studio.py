"""Label Studio's formats, both ways: flagged items as tasks, annotations as detwatch labels (no Flask, no I/O).

Export (:func:`to_task`): one Label Studio task per flagged item, ready for its import::

    {"data": {"image": "<a URL a browser opens>", "detwatch_item_id": "..."},
     "meta": {"detwatch_item_id": "...", "detwatch_dataset_id": "...", "detwatch_prediction_id": "...",
              "detwatch_model_id": "...", "detwatch_reasons": [...]},
     "predictions": [{"model_version": "v2", "score": 0.41, "result": [
         {"id": "d0", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
          "original_width": 640, "original_height": 480, "image_rotation": 0, "score": 0.41,
          "value": {"x": 15.625, "y": 20.0, "width": 12.5, "height": 10.0, "rotation": 0,
                    "rectanglelabels": ["car"]}}]}]}

for the labeling config :func:`~detwatch.contract.label_studio.labeling_config` writes (``RectangleLabels`` named
``label`` on an ``Image`` named ``image``). The item id is in ``meta`` (what the issue
asks) and in ``data`` too: Label Studio's JSON export and its webhooks always carry
``data``, so an annotation finds its item whichever way it comes back. ``score`` of the
prediction is its least confident box: Label Studio sorts and filters tasks by it, and
a reviewer wants the doubtful images first.

Import (:func:`annotation_boxes`): a Label Studio annotation's ``rectanglelabels``
results become detwatch label boxes ``{"class", "box": [x1, y1, x2, y2]}`` in absolute
pixels of the item's image (its size as the prediction gave it; Label Studio's
``original_width``/``original_height`` where the item has none).

Why the round trip is exact
---------------------------
Label Studio keeps boxes in percent of the image. pixels -> percent -> pixels through
double-precision floats cannot give back every double: where the percent doubles are
sparser than the pixel doubles they map from (their spacing differs by up to a factor
of two, with the binade each falls in), two neighbouring pixel values share a percent
value, and no inverse can tell them apart. So the representation is chosen so that
the two directions never meet that limit:

- a box coming back from Label Studio is read on a grid of :data:`PIXEL_DECIMALS`
  decimals of a pixel (a thousandth: far below what anyone draws, far above the
  float error of the conversion, about 1e-16 of the coordinate). ``x1 = round(x * W /
  100, 3)``; any pixel box on that grid (within the companion's coordinate bound)
  gives back exactly the same floats after :func:`box_to_percent` and
  :func:`percent_to_box`, because the conversion's error is millions of times smaller
  than half a grid step and ``round`` returns the double nearest the decimal;
- a prediction box the reviewer kept unchanged (its result values are exactly the
  percent values exported) comes back as the model's own box, whatever its floats:
  :func:`annotation_boxes` matches the percent values against the item's detections
  before rounding to the grid, so accepting the model's box is a no-op, not a
  thousandth-of-a-pixel move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from detwatch.contract.label_studio import FROM_NAME, TO_NAME, labeling_config
from detwatch.contract.predictions import PredictionError, parse_box
from detwatch.contract.textfields import name_problem
from detwatch.storage.records import FlaggedItemRecord

__all__ = [
    "FROM_NAME",
    "PIXEL_DECIMALS",
    "TO_NAME",
    "LabelStudioError",
    "annotation_boxes",
    "box_to_percent",
    "chosen_annotation",
    "item_id_of",
    "labeling_config",
    "percent_to_box",
    "to_task",
]

PIXEL_DECIMALS: Final = 3
"""Decimals of a pixel a box from Label Studio is read to (see the module docstring)."""
ITEM_KEY: Final = "detwatch_item_id"


class LabelStudioError(ValueError):
    """A task or annotation detwatch cannot read; ``field`` is where in the task, ``message`` what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def box_to_percent(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """``[x1, y1, x2, y2]`` pixels as Label Studio's ``(x, y, width, height)`` percent of the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * 100 / width, y1 * 100 / height, (x2 - x1) * 100 / width, (y2 - y1) * 100 / height)


def percent_to_box(value: Sequence[float], width: float, height: float) -> list[float]:
    """Label Studio's ``(x, y, width, height)`` percent as ``[x1, y1, x2, y2]`` pixels, on the grid (see above)."""
    x, y, w, h = (float(v) for v in value)
    return [
        round(x * width / 100, PIXEL_DECIMALS),
        round(y * height / 100, PIXEL_DECIMALS),
        round((x + w) * width / 100, PIXEL_DECIMALS),
        round((y + h) * height / 100, PIXEL_DECIMALS),
    ]


def _result(index: int, detection: Mapping[str, Any], width: int, height: int) -> dict[str, Any]:
    x, y, w, h = box_to_percent(detection["box"], width, height)
    out: dict[str, Any] = {
        "id": f"d{index}",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [detection["class"]]},
    }
    if detection.get("confidence") is not None:
        out["score"] = float(detection["confidence"])
    return out


def to_task(item: FlaggedItemRecord, *, image_url: str | None) -> dict[str, Any]:
    """The Label Studio task of a flagged item; ``image_url``: where a browser opens its image (``None``: unknown).

    Without a URL a browser can open, ``data.image`` is the item's URI as it is and
    ``meta.detwatch_image_note`` says why; without the image's size there are no
    predictions (percent needs it), and the note says so too.
    """
    notes = []
    if image_url is None:
        notes.append("no URL a browser can open: the image URI is outside the images root or no public URL is set")
    meta: dict[str, Any] = {
        ITEM_KEY: item.id,
        "detwatch_dataset_id": item.dataset_id,
        "detwatch_prediction_id": item.prediction_id,
        "detwatch_model_id": item.model_id,
        "detwatch_reasons": list(item.reasons),
    }
    task: dict[str, Any] = {
        "data": {"image": image_url or item.image.uri or item.image.key or "", ITEM_KEY: item.id},
        "meta": meta,
    }
    width, height = item.image.width, item.image.height
    if width and height:
        results = [_result(i, d, width, height) for i, d in enumerate(item.detections)]
        prediction: dict[str, Any] = {"model_version": item.model_version or item.model_id, "result": results}
        scores = [r["score"] for r in results if "score" in r]
        if scores:
            prediction["score"] = min(scores)
        task["predictions"] = [prediction]
    else:
        notes.append("no image size on the prediction: its boxes cannot be given in percent")
    if notes:
        meta["detwatch_image_note"] = "; ".join(notes)
    return task


def item_id_of(task: Mapping[str, Any]) -> str:
    """The detwatch item id a Label Studio task carries (``meta``, else ``data``); :class:`LabelStudioError` if none."""
    for where in ("meta", "data"):
        part = task.get(where)
        if isinstance(part, Mapping) and isinstance(part.get(ITEM_KEY), str) and part[ITEM_KEY]:
            return str(part[ITEM_KEY])
    raise LabelStudioError("meta.detwatch_item_id", "the task names no detwatch item (not exported by detwatch?)")


def chosen_annotation(task: Mapping[str, Any]) -> Mapping[str, Any]:
    """The annotation of an exported task that counts: the latest one not cancelled (skipped)."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        raise LabelStudioError("annotations", "must be a list (Label Studio's JSON export)")
    usable = [a for a in annotations if isinstance(a, Mapping) and not a.get("was_cancelled")]
    if not usable:
        raise LabelStudioError("annotations", "no annotation that was not cancelled")
    # ISO 8601 times of one server compare as text; the id breaks ties (and orders those without times).
    return max(usable, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), _int(a.get("id"))))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabelStudioError(field, "must be a finite number")
    return float(value)


def _size(result: Mapping[str, Any], width: int | None, height: int | None, field: str) -> tuple[float, float]:
    if width and height:
        return float(width), float(height)
    w, h = result.get("original_width"), result.get("original_height")
    if w is None or h is None:
        raise LabelStudioError(field, "neither the item nor the result gives the image size")
    w, h = _number(w, f"{field}.original_width"), _number(h, f"{field}.original_height")
    if w <= 0 or h <= 0:
        raise LabelStudioError(field, "original_width and original_height must be positive")
    return w, h


def annotation_boxes(
    annotation: Mapping[str, Any],
    *,
    width: int | None,
    height: int | None,
    detections: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The detwatch label of a Label Studio annotation: ``[{"class", "box"}]`` in pixels (module docstring).

    ``width``/``height``: the item's image size (``None``: the results' ``original_*``).
    ``detections``: the item's, so that a kept prediction comes back as the model's box.
    Results that are not ``rectanglelabels`` (choices, text) are not boxes and are left
    out; a rotated box, a box with no or several labels, or one outside the companion's
    bounds raises :class:`LabelStudioError` naming the result.
    """
    results = annotation.get("result")
    if not isinstance(results, list):
        raise LabelStudioError("result", "must be a list of results")
    exported: dict[tuple[float, ...], list[float]] = {}
    if width and height:
        for d in detections:
            exported.setdefault(box_to_percent(d["box"], width, height), [float(v) for v in d["box"]])
    out: list[dict[str, Any]] = []
    for i, result in enumerate(results):
        field = f"result[{i}]"
        if not isinstance(result, Mapping):
            raise LabelStudioError(field, "must be an object")
        if result.get("type") != "rectanglelabels":
            continue
        value = result.get("value")
        if not isinstance(value, Mapping):
            raise LabelStudioError(f"{field}.value", "must be an object")
        rotation = _number(value.get("rotation", 0), f"{field}.value.rotation")
        if rotation % 360 != 0:
            raise LabelStudioError(f"{field}.value.rotation", "a rotated box has no [x1, y1, x2, y2]; straighten it")
        labels = value.get("rectanglelabels")
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str) or not labels[0]:
            raise LabelStudioError(f"{field}.value.rectanglelabels", "must hold exactly one class name")
        problem = name_problem(labels[0]) if len(labels[0]) <= 256 else "must be at most 256 characters"
        if problem is not None:
            raise LabelStudioError(f"{field}.value.rectanglelabels", problem)
        percent = tuple(_number(value.get(k), f"{field}.value.{k}") for k in ("x", "y", "width", "height"))
        kept = exported.get(percent)
        box = kept if kept is not None else percent_to_box(percent, *_size(result, width, height, field))
        try:
            parse_box(box, f"{field}.value")
        except PredictionError as exc:
            raise LabelStudioError(exc.field, exc.message) from None
        out.append({"class": labels[0], "box": box})
    return out
