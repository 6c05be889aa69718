"""Reading model outputs: many detector formats in, one internal shape out.

Detectors disagree on everything: list of dicts with ``class``/``label`` and
``confidence``/``score``; torchvision's dict of tensors; YOLO-style ``[N, 6]`` arrays;
supervision ``Detections``; Ultralytics ``Results``. Frameworks are recognised by
duck typing and never imported, so the instrumentation stays dependency-free and a
framework's absence costs nothing.

The rule that matters most: reading an output never raises into the caller. An
output that cannot be read, or detections that are not valid (NaN or out-of-range
confidence, malformed or degenerate boxes), become *reasons* that the recorder
counts in ``objdet.invalid_outputs``; the valid detections of the same image are
still recorded.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .semconv import InvalidReason

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
"""How a box's four numbers are laid out: corners, top-left + size, or centre + size."""

LabelNames = Mapping[int, str] | Sequence[str]
"""Maps integer class ids to names: a dict, or a list indexed by id."""

Box = tuple[float, float, float, float]


class Detection(NamedTuple):
    """One detection in the internal shape: class name, confidence, xyxy box.

    The box is in absolute pixels, unless the model gave normalised coordinates
    and the image size is unknown (then it stays in ``[0, 1]`` units).
    An adapter function may return a list of these. A named tuple rather than a
    frozen dataclass: it is built once per detection on the recording thread, and a
    tuple is several times cheaper to build.
    """

    class_name: str
    confidence: float
    box: Box


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """How to read a model's output; fixed at decoration time."""

    box_format: BoxFormat = "xyxy"
    normalized_boxes: bool = False
    label_names: LabelNames | None = None
    adapter: Callable[[Any], Any] | None = None


@dataclass(slots=True)
class ImageDetections:
    """The valid detections of one image, and why anything was left out."""

    detections: list[Detection] = field(default_factory=list)
    invalid: set[InvalidReason] = field(default_factory=set)
    width: float | None = None
    height: float | None = None
    readable: bool = True
    relative: bool = False
    """Boxes are in normalised ``[0, 1]`` units (normalised input, image size unknown)."""


MAX_DETECTIONS = 10_000
"""Detections read per image (the companion's limit per event): more are left out and counted."""
MAX_COORDINATE = 1e7
"""Largest box coordinate magnitude in pixels, as the companion accepts (beyond any image)."""


def _tolist(value: Any) -> list[Any]:
    # numpy arrays and torch tensors both offer tolist(); it is the one cheap,
    # framework-neutral way to get plain floats (and it copies off a GPU). Only one row
    # past MAX_DETECTIONS is converted: 100k rows held the GIL for ~50 ms.
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) >= 1 and shape[0] > MAX_DETECTIONS + 1:
        with contextlib.suppress(Exception):
            value = value[: MAX_DETECTIONS + 1]
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        result = tolist()
        return result if isinstance(result, list) else [result]
    return list(value)


def _class_name(value: Any, names: LabelNames | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if not isinstance(value, (int, float)):
        # numpy / torch scalars (np.int64, np.float32, a 0-d tensor) become plain
        # Python numbers, so that label_names applies to them as to ints.
        item = getattr(value, "item", None)
        if callable(item):
            try:
                value = item()
            except Exception:  # noqa: BLE001 - an odd scalar is a missing class, not a crash
                return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            value = int(value)
    if isinstance(value, int) and names is not None:
        if isinstance(names, Mapping):
            name = names.get(value)
        else:
            name = names[value] if 0 <= value < len(names) else None
        if name is not None:
            return str(name)
    return str(value)


_CLASS_KEYS = ("class", "label", "class_name", "name", "category", "class_id", "category_id")
_SCORE_KEYS = ("confidence", "score", "conf")
_BOX_KEYS = ("box", "bbox", "xyxy")


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


Rows = tuple[list[Any], list[Any], list[Any]]
"""Parallel lists: class values, confidences, boxes."""


def _rows_from_dicts(items: Sequence[Any]) -> Rows | None:
    classes: list[Any] = []
    scores: list[Any] = []
    boxes: list[Any] = []
    for item in items:
        if not isinstance(item, Mapping):
            return None
        classes.append(_first(item, _CLASS_KEYS))
        scores.append(_first(item, _SCORE_KEYS))
        boxes.append(_first(item, _BOX_KEYS))
    return classes, scores, boxes


def _rows_from_matrix(rows: list[Any]) -> Rows | None:
    # YOLO-style rows: x1, y1, x2, y2, confidence, class id.
    classes: list[Any] = []
    scores: list[Any] = []
    boxes: list[Any] = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 6:
            return None
        boxes.append(row[0:4])
        scores.append(row[4])
        classes.append(row[5])
    return classes, scores, boxes


@dataclass(slots=True)
class _Read:
    rows: Rows
    names: LabelNames | None
    # Boxes already in xyxy (frameworks, Detection objects), whatever box_format says.
    xyxy: bool = False
    # Boxes in absolute pixels (frameworks), whatever normalized_boxes says.
    pixels: bool = False
    size: tuple[float, float] | None = None


def _read(output: Any, options: OutputOptions) -> _Read | None:
    names = options.label_names
    if isinstance(output, Mapping):
        if "boxes" in output:  # torchvision: boxes, scores, labels
            boxes = _tolist(output["boxes"])
            scores = _tolist(output["scores"]) if "scores" in output else [None] * len(boxes)
            labels = _tolist(output["labels"]) if "labels" in output else [None] * len(boxes)
            return _Read((labels, scores, boxes), names)
        return None
    if hasattr(output, "boxes") and hasattr(output, "names"):  # Ultralytics Results
        boxes_obj = output.boxes
        if boxes_obj is None:
            return None
        size = None
        orig = getattr(output, "orig_shape", None)
        if orig is not None and len(orig) >= 2:
            size = (float(orig[1]), float(orig[0]))
        result_names = output.names if output.names else names
        rows = (_tolist(boxes_obj.cls), _tolist(boxes_obj.conf), _tolist(boxes_obj.xyxy))
        return _Read(rows, result_names, xyxy=True, pixels=True, size=size)
    if hasattr(output, "xyxy") and hasattr(output, "class_id") and hasattr(output, "confidence"):  # supervision
        boxes = _tolist(output.xyxy)
        conf = output.confidence
        scores = _tolist(conf) if conf is not None else [None] * len(boxes)
        data = getattr(output, "data", None)
        class_names = data.get("class_name") if isinstance(data, Mapping) else None
        if class_names is not None:
            labels = _tolist(class_names)
        elif output.class_id is not None:
            labels = _tolist(output.class_id)
        else:
            labels = [None] * len(boxes)
        return _Read((labels, scores, boxes), names, xyxy=True, pixels=True)
    shape = getattr(output, "shape", None)
    if shape is not None and hasattr(output, "tolist"):  # numpy / torch [N, 6]
        if len(shape) == 2 and shape[1] == 6:
            matrix = _rows_from_matrix(_tolist(output))
            return _Read(matrix, names) if matrix is not None else None
        if len(shape) >= 1 and shape[0] == 0:
            return _Read(([], [], []), names)
        return None
    if isinstance(output, (list, tuple)):
        if not output:
            return _Read(([], [], []), names)
        first = output[0]
        if isinstance(first, Detection):
            if not all(isinstance(d, Detection) for d in output):
                return None
            return _Read(
                ([d.class_name for d in output], [d.confidence for d in output], [d.box for d in output]),
                names,
                xyxy=True,
            )
        if isinstance(first, Mapping):
            dict_rows = _rows_from_dicts(output)
            return _Read(dict_rows, names) if dict_rows is not None else None
        if isinstance(first, (list, tuple)):
            matrix = _rows_from_matrix(list(output))
            return _Read(matrix, names) if matrix is not None else None
        if len(output) == 1:
            # Ultralytics returns a one-element list of Results for one image.
            return _read(first, options)
    return None


def _to_xyxy(raw: Any, fmt: BoxFormat) -> Box | None:
    if isinstance(raw, (str, bytes)):
        return None
    try:
        if len(raw) != 4:
            return None
        r0, r1, r2, r3 = raw
        a, b, c, d = float(r0), float(r1), float(r2), float(r3)
    except OverflowError:
        return (math.inf, math.inf, math.inf, math.inf)
    except (TypeError, ValueError):
        return None
    if fmt == "xyxy":
        return a, b, c, d
    if fmt == "xywh":
        return a, b, a + c, b + d
    return a - c / 2.0, b - d / 2.0, a + c / 2.0, b + d / 2.0


def read_image_output(output: Any, options: OutputOptions, size: tuple[float, float] | None) -> ImageDetections:
    """Read one image's output into valid detections plus invalid reasons.

    ``size`` is the image's ``(width, height)`` in pixels when known; boxes given in
    normalised coordinates are scaled to pixels with it.
    """
    result = ImageDetections()
    if options.adapter is not None:
        try:
            output = options.adapter(output)
        except Exception:  # noqa: BLE001 - a user adapter's failure is counted, not raised
            result.invalid.add("adapter_error")
            result.readable = False
            return result
    try:
        read = _read(output, options)
    except Exception:  # noqa: BLE001 - a look-alike of a known format is unreadable, not fatal
        read = None
    if read is None:
        result.invalid.add("unrecognized_format")
        result.readable = False
        return result
    if size is None and read.size is not None:
        size = read.size
    if size is not None:
        result.width, result.height = size
    fmt: BoxFormat = "xyxy" if read.xyxy else options.box_format
    normalized = options.normalized_boxes and not read.pixels
    scale = normalized and size is not None
    result.relative = normalized and size is None
    labels, scores, boxes = read.rows
    if not (len(labels) == len(scores) == len(boxes)):
        result.invalid.add("unrecognized_format")
        result.readable = False
        return result
    out = result.detections
    invalid = result.invalid
    if len(labels) > MAX_DETECTIONS:
        invalid.add("too_many_detections")
        labels, scores, boxes = labels[:MAX_DETECTIONS], scores[:MAX_DETECTIONS], boxes[:MAX_DETECTIONS]
    plain_rows = fmt == "xyxy" and not scale
    names = read.names
    for label, score, raw_box in zip(labels, scores, boxes, strict=False):
        if plain_rows:
            detection = _valid_plain_row(label, score, raw_box, names)
            if detection is not None:
                out.append(detection)
                continue
        try:
            detection = _detection(
                label, score, raw_box, names=read.names, fmt=fmt, scale_to=size if scale else None, invalid=invalid
            )
        except Exception:  # noqa: BLE001 - a label's __str__ or a score's __float__ may raise anything
            invalid.add("unrecognized_format")
            continue
        if detection is not None:
            out.append(detection)
    return result


def _valid_plain_row(label: Any, score: Any, raw_box: Any, names: LabelNames | None) -> Detection | None:
    """The row as :func:`_detection` reads it, when it is the common case and valid; else ``None`` (let it decide).

    The common case is what ``tolist()`` makes of a detector's arrays: an ``int`` or
    ``str`` label, a ``float`` score, a list of four ``float`` xyxy coordinates. Only a
    row that passes every check of :func:`_detection` is accepted here, with the same
    values, so any other row (and every reason a row is invalid) is still decided there.
    """
    if type(score) is not float or type(raw_box) is not list or len(raw_box) != 4:
        return None
    x1, y1, x2, y2 = raw_box
    if not (type(x1) is float and type(y1) is float and type(x2) is float and type(y2) is float):
        return None
    if type(label) is not str and type(label) is not int:
        return None
    name = _class_name(label, names)
    if not name or not (0.0 <= score <= 1.0) or not (x2 > x1 and y2 > y1):  # NaN fails these comparisons
        return None
    if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)):
        return None
    if max(abs(x1), abs(y1), abs(x2), abs(y2)) > MAX_COORDINATE:
        return None
    return Detection(name, score, (x1, y1, x2, y2))


def _detection(
    label: Any,
    score: Any,
    raw_box: Any,
    *,
    names: LabelNames | None,
    fmt: BoxFormat,
    scale_to: tuple[float, float] | None,
    invalid: set[InvalidReason],
) -> Detection | None:
    """One row as a detection, or ``None`` with the reason added to ``invalid``."""
    name = _class_name(label, names)
    if not name:  # None, or "" (the companion refuses an empty class)
        invalid.add("class_missing")
        return None
    if score is None:
        invalid.add("confidence_missing")
        return None
    try:
        confidence = float(score)
    except OverflowError:
        invalid.add("confidence_out_of_range")
        return None
    except (TypeError, ValueError):
        invalid.add("confidence_not_finite")
        return None
    if not math.isfinite(confidence):
        invalid.add("confidence_not_finite")
        return None
    if confidence < 0.0 or confidence > 1.0:
        invalid.add("confidence_out_of_range")
        return None
    box = _to_xyxy(raw_box, fmt)
    if box is None:
        invalid.add("box_malformed")
        return None
    x1, y1, x2, y2 = box
    if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)):
        invalid.add("box_not_finite")
        return None
    if x2 <= x1 or y2 <= y1:
        invalid.add("box_degenerate")
        return None
    if scale_to is not None:
        w, h = scale_to
        x1, y1, x2, y2 = box = (x1 * w, y1 * h, x2 * w, y2 * h)
    if max(abs(x1), abs(y1), abs(x2), abs(y2)) > MAX_COORDINATE:
        invalid.add("box_out_of_range")
        return None
    return Detection(name, confidence, box)


def image_size_of(image: Any) -> tuple[float, float] | None:
    """``(width, height)`` of an image-like input, or ``None`` when it cannot tell.

    Arrays and tensors: ``(H, W)``, ``(H, W, C)``, or ``(C, H, W)`` when the first
    axis looks like channels and the last does not. PIL images: ``.size``.
    """
    shape = getattr(image, "shape", None)
    if shape is not None:
        try:
            dims = tuple(map(int, shape))
        except (TypeError, ValueError):
            return None
        if len(dims) == 2:
            return float(dims[1]), float(dims[0])
        if len(dims) == 3:
            if dims[0] in (1, 3, 4) and dims[2] not in (1, 3, 4):
                return float(dims[2]), float(dims[1])
            return float(dims[1]), float(dims[0])
        return None
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        try:
            return float(size[0]), float(size[1])
        except (TypeError, ValueError):
            return None
    return None
