"""Reading detector outputs into the internal shape (``detwatch_instrumentation._outputs``).

Every supported format, every key alias, box layouts and normalised coordinates, label
mapping, and the rule that matters most: a bad output or a bad detection becomes an
invalid *reason*, never an exception, and the valid detections of the same image
still come through.

Frameworks: supervision is tested with the real package (a test-only dependency);
Ultralytics is too heavy (torch), so a stand-in mirrors the attribute
layout of ``ultralytics.engine.results.Results`` / ``Boxes``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from detwatch_instrumentation._outputs import (
    BoxFormat,
    Detection,
    ImageDetections,
    LabelNames,
    OutputOptions,
    _detection,
    _valid_plain_row,
    image_size_of,
    read_image_output,
)
from detwatch_instrumentation.semconv import InvalidReason

Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float64]

NAN = float("nan")
INF = float("inf")

LABELS_LIST = ["background", "person", "car", "truck"]
LABELS_DICT = {1: "person", 2: "car", 3: "truck"}

VALID_BOX: Box = (10.0, 20.0, 110.0, 220.0)


def read(output: Any, size: tuple[float, float] | None = None, **options: Any) -> ImageDetections:
    return read_image_output(output, OutputOptions(**options), size)


def triples(result: ImageDetections) -> list[tuple[str, float, Box]]:
    return [(d.class_name, d.confidence, d.box) for d in result.detections]


def assert_unrecognized(result: ImageDetections) -> None:
    assert result.invalid == {"unrecognized_format"}
    assert result.readable is False
    assert result.detections == []


# ----------------------------------------------------------------- containers
# The four generic formats, built from the same (class, confidence, box) rows, so a
# behaviour can be checked across all of them.


def as_dicts(rows: list[tuple[Any, Any, Any]]) -> Any:
    return [{"class": c, "confidence": s, "box": list(b)} for c, s, b in rows]


def as_torchvision(rows: list[tuple[Any, Any, Any]]) -> Any:
    return {
        "boxes": np.array([b for _, _, b in rows], dtype=np.float64).reshape(-1, 4),
        "scores": np.array([s for _, s, _ in rows], dtype=np.float64),
        "labels": np.array([c for c, _, _ in rows], dtype=np.int64),
    }


def as_array(rows: list[tuple[Any, Any, Any]]) -> Any:
    return np.array([[*b, s, c] for c, s, b in rows], dtype=np.float64).reshape(-1, 6)


def as_list_of_rows(rows: list[tuple[Any, Any, Any]]) -> Any:
    return [[*b, s, c] for c, s, b in rows]


CONTAINERS: dict[str, Callable[[list[tuple[Any, Any, Any]]], Any]] = {
    "list_of_dicts": as_dicts,
    "torchvision_dict": as_torchvision,
    "numpy_n_by_6": as_array,
    "list_of_rows": as_list_of_rows,
}


# ----------------------------------------------------------------- Ultralytics stand-in


class UltralyticsBoxes:
    """Mirrors ``ultralytics.engine.results.Boxes``: ``data`` is ``[N, 6]`` (xyxy, conf, cls)."""

    def __init__(self, boxes: FloatArray, orig_shape: tuple[int, ...]) -> None:
        if boxes.ndim == 1:
            boxes = boxes[None, :]
        self.data = boxes
        self.orig_shape = orig_shape
        self.is_track = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def xyxy(self) -> FloatArray:
        return self.data[:, :4]

    @property
    def conf(self) -> FloatArray:
        return self.data[:, -2]

    @property
    def cls(self) -> FloatArray:
        return self.data[:, -1]

    @property
    def id(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self.data)


class UltralyticsResults:
    """Mirrors ``ultralytics.engine.results.Results`` (``orig_shape`` is ``(h, w)``)."""

    def __init__(
        self,
        orig_img: npt.NDArray[np.uint8],
        path: str,
        names: dict[int, str],
        boxes: FloatArray | None = None,
        probs: FloatArray | None = None,
    ) -> None:
        self.orig_img = orig_img
        self.orig_shape: tuple[int, ...] = orig_img.shape[:2]
        self.boxes = UltralyticsBoxes(boxes, self.orig_shape) if boxes is not None else None
        self.masks = None
        self.probs = probs
        self.keypoints = None
        self.obb = None
        self.speed: dict[str, float | None] = {"preprocess": None, "inference": None, "postprocess": None}
        self.names = names
        self.path = path
        self.save_dir = None
        self._keys = ("boxes", "masks", "probs", "keypoints", "obb")


COCO_NAMES = {0: "person", 1: "bicycle", 2: "car"}


def ultralytics_result(boxes: FloatArray | None, height: int = 480, width: int = 640) -> UltralyticsResults:
    return UltralyticsResults(np.zeros((height, width, 3), dtype=np.uint8), "frame.jpg", COCO_NAMES, boxes=boxes)


@pytest.fixture
def sv() -> Any:
    """The real supervision package."""
    import supervision

    return supervision


# ================================================================= the types


def test_output_options_defaults_read_absolute_xyxy_without_names_or_adapter() -> None:
    options = OutputOptions()
    assert options.box_format == "xyxy"
    assert options.normalized_boxes is False
    assert options.label_names is None
    assert options.adapter is None


def test_output_options_are_frozen() -> None:
    options = OutputOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.box_format = "xywh"  # type: ignore[misc]


def test_detection_is_a_frozen_value_with_class_confidence_and_box() -> None:
    detection = Detection("car", 0.5, VALID_BOX)
    assert detection == Detection("car", 0.5, VALID_BOX)
    assert (detection.class_name, detection.confidence, detection.box) == ("car", 0.5, VALID_BOX)
    with pytest.raises(AttributeError):
        detection.confidence = 0.9  # type: ignore[misc]


# ================================================================= list of dicts


@pytest.mark.parametrize("class_key", ["class", "label", "class_name", "name", "category"])
@pytest.mark.parametrize("score_key", ["confidence", "score", "conf"])
@pytest.mark.parametrize("box_key", ["box", "bbox", "xyxy"])
def test_list_of_dicts_accepts_every_key_alias(class_key: str, score_key: str, box_key: str) -> None:
    output = [{class_key: "car", score_key: 0.75, box_key: [10, 20, 110, 220]}]

    result = read(output)

    assert triples(result) == [("car", 0.75, VALID_BOX)]
    assert result.invalid == set()
    assert result.readable is True


def test_list_of_dicts_keeps_order_and_ignores_extra_keys() -> None:
    output = [
        {"label": "person", "score": 0.5, "bbox": [0, 0, 10, 10], "track_id": 7},
        {"label": "car", "score": 0.25, "bbox": (1.5, 2.5, 3.5, 4.5), "mask": None},
    ]

    assert triples(read(output)) == [
        ("person", 0.5, (0.0, 0.0, 10.0, 10.0)),
        ("car", 0.25, (1.5, 2.5, 3.5, 4.5)),
    ]


def test_list_of_dicts_accepts_numpy_boxes_and_scores() -> None:
    output = [{"label": "car", "score": np.float64(0.5), "box": np.array([10.0, 20.0, 110.0, 220.0])}]

    result = read(output)

    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert all(type(v) is float for v in result.detections[0].box)
    assert type(result.detections[0].confidence) is float


@pytest.mark.parametrize(
    ("class_id", "label_names", "expected"),
    [
        (2, None, "2"),
        (2, LABELS_DICT, "car"),
        (2, LABELS_LIST, "car"),
        (0, LABELS_LIST, "background"),
        (0, LABELS_DICT, "0"),  # not in the dict: the id itself
        (9, LABELS_LIST, "9"),  # past the end of the list
        (-1, LABELS_LIST, "-1"),  # never indexes from the end
        (2.0, LABELS_LIST, "car"),  # integral float
        (2.5, LABELS_LIST, "2.5"),  # non-integral float stays as written
        ("car", LABELS_LIST, "car"),  # names pass through
    ],
)
def test_list_of_dicts_maps_int_class_ids_through_label_names(
    class_id: Any, label_names: LabelNames | None, expected: str
) -> None:
    output = [{"class": class_id, "confidence": 0.5, "box": [10, 20, 110, 220]}]

    assert triples(read(output, label_names=label_names)) == [(expected, 0.5, VALID_BOX)]


@pytest.mark.parametrize(
    "class_id",
    [np.int64(2), np.int32(2), np.uint8(2), np.float32(2.0), np.float64(2.0), np.array(2)],
    ids=["int64", "int32", "uint8", "float32", "float64", "0d-array"],
)
def test_numpy_scalar_class_ids_in_dicts_map_through_label_names(class_id: Any) -> None:
    # A list of dicts built by iterating over numpy arrays carries numpy scalars, not ints.
    output = [{"label": class_id, "score": 0.5, "box": [10, 20, 110, 220]}]

    assert triples(read(output, label_names=LABELS_LIST)) == [("car", 0.5, VALID_BOX)]
    assert triples(read(output, label_names=LABELS_DICT)) == [("car", 0.5, VALID_BOX)]


# ================================================================= box formats and normalisation


# One box, 100 x 200 pixels at (10, 20), in an image of 640 x 480, in every layout.
@pytest.mark.parametrize(
    ("box_format", "normalized", "raw", "size", "expected"),
    [
        ("xyxy", False, (10, 20, 110, 220), None, (10.0, 20.0, 110.0, 220.0)),
        ("xywh", False, (10, 20, 100, 200), None, (10.0, 20.0, 110.0, 220.0)),
        ("cxcywh", False, (60, 120, 100, 200), None, (10.0, 20.0, 110.0, 220.0)),
        # Normalised: 0.25 * 640 = 160, 0.5 * 480 = 240, 0.75 * 640 = 480, 1.0 * 480 = 480.
        ("xyxy", True, (0.25, 0.5, 0.75, 1.0), (640.0, 480.0), (160.0, 240.0, 480.0, 480.0)),
        ("xywh", True, (0.25, 0.5, 0.5, 0.5), (640.0, 480.0), (160.0, 240.0, 480.0, 480.0)),
        ("cxcywh", True, (0.5, 0.75, 0.5, 0.5), (640.0, 480.0), (160.0, 240.0, 480.0, 480.0)),
        # Normalised with the image size unknown: stays in [0, 1] units, as xyxy.
        ("xyxy", True, (0.25, 0.5, 0.75, 1.0), None, (0.25, 0.5, 0.75, 1.0)),
        ("xywh", True, (0.25, 0.5, 0.5, 0.5), None, (0.25, 0.5, 0.75, 1.0)),
        ("cxcywh", True, (0.5, 0.75, 0.5, 0.5), None, (0.25, 0.5, 0.75, 1.0)),
    ],
)
@pytest.mark.parametrize("container", list(CONTAINERS))
def test_boxes_are_converted_to_xyxy_pixels_in_every_generic_format(
    *,
    container: str,
    box_format: BoxFormat,
    normalized: bool,
    raw: tuple[float, float, float, float],
    size: tuple[float, float] | None,
    expected: Box,
) -> None:
    output = CONTAINERS[container]([(1, 0.5, raw)])

    result = read(output, size, box_format=box_format, normalized_boxes=normalized)

    assert [d.box for d in result.detections] == [expected]
    assert result.invalid == set()
    assert result.relative is (normalized and size is None)


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
def test_normalised_boxes_of_random_layouts_round_trip_to_pixels(box_format: BoxFormat) -> None:
    rng = np.random.default_rng(7)
    width, height = 1280.0, 720.0
    x1 = rng.uniform(0, 600, 20)
    y1 = rng.uniform(0, 300, 20)
    w = rng.uniform(1, 600, 20)
    h = rng.uniform(1, 400, 20)
    xyxy_px = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    scale = np.array([width, height, width, height])
    if box_format == "xyxy":
        raw = xyxy_px / scale
    elif box_format == "xywh":
        raw = np.stack([x1, y1, w, h], axis=1) / scale
    else:
        raw = np.stack([x1 + w / 2, y1 + h / 2, w, h], axis=1) / scale
    output = [{"label": "car", "score": 0.5, "box": row} for row in raw]

    result = read(output, (width, height), box_format=box_format, normalized_boxes=True)

    assert result.invalid == set()
    got = np.array([d.box for d in result.detections])
    np.testing.assert_allclose(got, xyxy_px, rtol=1e-12, atol=1e-9)


def test_image_size_is_reported_on_the_result() -> None:
    result = read([], (640.0, 480.0))
    assert (result.width, result.height) == (640.0, 480.0)
    assert read([]).width is None
    assert read([]).height is None


# ================================================================= torchvision dicts


def test_torchvision_dict_maps_label_ids_through_label_names() -> None:
    output = {
        "boxes": np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 5.0, 5.0]]),
        "scores": np.array([0.75, 0.5]),
        "labels": np.array([2, 1]),
    }

    assert triples(read(output, label_names=LABELS_LIST)) == [
        ("car", 0.75, VALID_BOX),
        ("person", 0.5, (0.0, 0.0, 5.0, 5.0)),
    ]
    assert triples(read(output, label_names=LABELS_DICT)) == [
        ("car", 0.75, VALID_BOX),
        ("person", 0.5, (0.0, 0.0, 5.0, 5.0)),
    ]
    assert [d.class_name for d in read(output).detections] == ["2", "1"]


def test_torchvision_dict_accepts_plain_lists_and_string_labels() -> None:
    output = {"boxes": [[10, 20, 110, 220]], "scores": [0.5], "labels": ["car"]}

    assert triples(read(output, label_names=LABELS_LIST)) == [("car", 0.5, VALID_BOX)]


def test_torchvision_dict_with_mismatched_lengths_is_unrecognized() -> None:
    output = {
        "boxes": np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 5.0, 5.0]]),
        "scores": np.array([0.75]),
        "labels": np.array([2, 1]),
    }

    assert_unrecognized(read(output))


def test_torchvision_dict_without_labels_reports_class_missing() -> None:
    output = {"boxes": np.array([[10.0, 20.0, 110.0, 220.0]]), "scores": np.array([0.5])}

    result = read(output)

    assert result.detections == []
    assert result.invalid == {"class_missing"}
    assert result.readable is True


def test_torchvision_dict_without_scores_reports_confidence_missing() -> None:
    output = {"boxes": np.array([[10.0, 20.0, 110.0, 220.0]]), "labels": np.array([2])}

    result = read(output)

    assert result.detections == []
    assert result.invalid == {"confidence_missing"}


@pytest.mark.parametrize(
    "output",
    [
        pytest.param({"boxes": None}, id="boxes-None"),
        pytest.param({"boxes": 5}, id="boxes-int"),
        pytest.param({"boxes": [[10, 20, 110, 220]], "scores": 0.5, "labels": [2]}, id="scores-scalar"),
        pytest.param(
            SimpleNamespace(boxes=np.zeros((0, 4)), names={0: "person"}),
            id="boxes-and-names-but-not-ultralytics",
        ),
        pytest.param(SimpleNamespace(xyxy=np.zeros((0, 4)), class_id=None), id="xyxy-and-class_id-but-not-supervision"),
    ],
)
def test_lookalike_outputs_are_unrecognized_instead_of_raising(output: Any) -> None:
    # Duck typing picks a reader by one or two attributes or keys; when the rest of
    # the object does not fit, the output is unreadable, not an exception in the caller.
    assert_unrecognized(read(output))


# ================================================================= [N, 6] arrays


@pytest.mark.parametrize(
    ("label_names", "expected"),
    [(None, ["2", "0"]), (LABELS_LIST, ["car", "background"]), (LABELS_DICT, ["car", "0"])],
)
def test_numpy_n_by_6_float_class_ids_become_ids_or_mapped_names(
    label_names: LabelNames | None, expected: list[str]
) -> None:
    output = np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0], [0.0, 0.0, 5.0, 5.0, 0.5, 0.0]])

    result = read(output, label_names=label_names)

    assert triples(result) == [
        (expected[0], 0.75, VALID_BOX),
        (expected[1], 0.5, (0.0, 0.0, 5.0, 5.0)),
    ]


def test_numpy_n_by_6_of_float32_reads_the_float32_values() -> None:
    output = np.array([[10.0, 20.0, 110.0, 220.0, 0.3, 2.0]], dtype=np.float32)

    assert triples(read(output, label_names=LABELS_LIST)) == [("car", float(np.float32(0.3)), VALID_BOX)]


def test_list_of_six_number_rows_reads_like_an_array() -> None:
    output = [(10, 20, 110, 220, 0.75, 2), [0, 0, 5, 5, 0.5, 1.0]]

    assert triples(read(output, label_names=LABELS_LIST)) == [
        ("car", 0.75, VALID_BOX),
        ("person", 0.5, (0.0, 0.0, 5.0, 5.0)),
    ]


# ================================================================= empty outputs


@pytest.mark.parametrize(
    "output",
    [
        pytest.param([], id="empty-list"),
        pytest.param((), id="empty-tuple"),
        pytest.param(np.zeros((0, 6)), id="array-0x6"),
        pytest.param(np.zeros((0,)), id="array-0"),
        pytest.param(
            {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, dtype=np.int64)}, id="tv"
        ),
        pytest.param({"boxes": [], "scores": [], "labels": []}, id="torchvision-lists"),
    ],
)
def test_empty_outputs_are_readable_with_zero_detections(output: Any) -> None:
    result = read(output, (640.0, 480.0))

    assert result.detections == []
    assert result.invalid == set()
    assert result.readable is True


# ================================================================= invalid detections


@pytest.mark.parametrize(
    ("confidence", "reason"),
    [
        (NAN, "confidence_not_finite"),
        (INF, "confidence_not_finite"),
        (-INF, "confidence_not_finite"),
        (None, "confidence_missing"),
        ("high", "confidence_not_finite"),
        (-0.1, "confidence_out_of_range"),
        (-1e-9, "confidence_out_of_range"),
        (1.5, "confidence_out_of_range"),
        (1.0000001, "confidence_out_of_range"),
        (75, "confidence_out_of_range"),  # a percentage
    ],
)
def test_invalid_confidences_are_reasons_and_valid_detections_still_come_through(
    confidence: Any, reason: InvalidReason
) -> None:
    output = [
        {"label": "person", "score": 0.5, "box": [0, 0, 5, 5]},
        {"label": "car", "score": confidence, "box": [10, 20, 110, 220]},
        {"label": "truck", "score": 0.25, "box": [10, 20, 110, 220]},
    ]

    result = read(output)

    assert triples(result) == [("person", 0.5, (0.0, 0.0, 5.0, 5.0)), ("truck", 0.25, VALID_BOX)]
    assert result.invalid == {reason}
    assert result.readable is True


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1, 0])
def test_confidences_at_the_bounds_are_valid(confidence: float) -> None:
    result = read([{"label": "car", "score": confidence, "box": [10, 20, 110, 220]}])

    assert triples(result) == [("car", float(confidence), VALID_BOX)]
    assert result.invalid == set()


@pytest.mark.parametrize("container", ["torchvision_dict", "numpy_n_by_6", "list_of_rows"])
@pytest.mark.parametrize(
    ("confidence", "reason"),
    [
        (NAN, "confidence_not_finite"),
        (INF, "confidence_not_finite"),
        (-0.5, "confidence_out_of_range"),
        (2.0, "confidence_out_of_range"),
    ],
)
def test_invalid_confidences_in_array_formats_are_reasons(
    container: str, confidence: float, reason: InvalidReason
) -> None:
    output = CONTAINERS[container]([(2, confidence, (0, 0, 5, 5)), (1, 0.5, (10, 20, 110, 220))])

    result = read(output, label_names=LABELS_LIST)

    assert triples(result) == [("person", 0.5, VALID_BOX)]
    assert result.invalid == {reason}


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ([NAN, 20, 110, 220], "box_not_finite"),
        ([10, 20, INF, 220], "box_not_finite"),
        ([10, -INF, 110, 220], "box_not_finite"),
        ([10, 20, 110, NAN], "box_not_finite"),
        ([110, 20, 10, 220], "box_degenerate"),  # x2 < x1
        ([10, 20, 10, 220], "box_degenerate"),  # x2 == x1
        ([10, 220, 110, 20], "box_degenerate"),  # y2 < y1
        ([10, 20, 110, 20], "box_degenerate"),  # y2 == y1
        ([10, 20, 110], "box_malformed"),
        ([10, 20, 110, 220, 5], "box_malformed"),
        ([], "box_malformed"),
        (None, "box_malformed"),
        (5, "box_malformed"),
        (["a", "b", "c", "d"], "box_malformed"),
        ([[10, 20], [110, 220]], "box_malformed"),
    ],
)
def test_invalid_boxes_are_reasons_and_valid_detections_still_come_through(box: Any, reason: InvalidReason) -> None:
    output = [
        {"label": "car", "score": 0.5, "box": box},
        {"label": "person", "score": 0.75, "box": [10, 20, 110, 220]},
    ]

    result = read(output)

    assert triples(result) == [("person", 0.75, VALID_BOX)]
    assert result.invalid == {reason}
    assert result.readable is True


@pytest.mark.parametrize(
    ("box_format", "box"),
    [
        ("xywh", (10, 20, 0, 200)),
        ("xywh", (10, 20, 100, -1)),
        ("cxcywh", (60, 120, 0, 0)),
        ("cxcywh", (60, 120, -5, 10)),
    ],
)
def test_zero_or_negative_sizes_are_degenerate_after_conversion(box_format: BoxFormat, box: Box) -> None:
    result = read([{"label": "car", "score": 0.5, "box": box}], box_format=box_format)

    assert result.detections == []
    assert result.invalid == {"box_degenerate"}


def test_invalid_boxes_in_an_array_are_reasons() -> None:
    output = np.array(
        [
            [NAN, 0.0, 5.0, 5.0, 0.5, 1.0],
            [5.0, 0.0, 5.0, 5.0, 0.5, 1.0],
            [10.0, 20.0, 110.0, 220.0, 0.5, 2.0],
        ]
    )

    result = read(output, label_names=LABELS_LIST)

    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert result.invalid == {"box_not_finite", "box_degenerate"}


@pytest.mark.parametrize(
    "item",
    [
        {"score": 0.5, "box": [0, 0, 5, 5]},
        {"class": None, "score": 0.5, "box": [0, 0, 5, 5]},
        {"classes": "car", "score": 0.5, "box": [0, 0, 5, 5]},
    ],
    ids=["no-class-key", "class-None", "unknown-class-key"],
)
def test_missing_class_is_a_reason(item: dict[str, Any]) -> None:
    result = read([item, {"label": "car", "score": 0.5, "box": [10, 20, 110, 220]}])

    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert result.invalid == {"class_missing"}


def test_each_kind_of_invalid_detection_is_one_reason_per_image() -> None:
    output = [
        {"label": "a", "score": NAN, "box": [0, 0, 5, 5]},
        {"label": "b", "score": NAN, "box": [0, 0, 5, 5]},
        {"label": "c", "score": 1.5, "box": [0, 0, 5, 5]},
        {"label": "d", "score": 0.5, "box": [0, 0, 5]},
        {"label": "e", "score": 0.5, "box": [5, 0, 0, 5]},
        {"label": "f", "score": 0.5, "box": [0, 0, INF, 5]},
        {"score": 0.5, "box": [0, 0, 5, 5]},
        {"label": "ok", "score": 0.5, "box": [10, 20, 110, 220]},
    ]

    result = read(output)

    assert triples(result) == [("ok", 0.5, VALID_BOX)]
    assert result.invalid == {
        "confidence_not_finite",
        "confidence_out_of_range",
        "box_malformed",
        "box_degenerate",
        "box_not_finite",
        "class_missing",
    }
    assert result.readable is True


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"label": "car", "score": 10**400, "box": [0, 0, 5, 5]}, "confidence_out_of_range"),
        ({"label": "car", "score": 0.5, "box": [0, 0, 10**400, 5]}, "box_not_finite"),
    ],
    ids=["confidence", "box"],
)
def test_integers_too_large_for_a_float_are_reasons_not_exceptions(item: dict[str, Any], reason: InvalidReason) -> None:
    result = read([item, {"label": "ok", "score": 0.5, "box": [10, 20, 110, 220]}])

    assert triples(result) == [("ok", 0.5, VALID_BOX)]
    assert result.invalid == {reason}


# ================================================================= unreadable outputs


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("car 0.9 10 20 110 220", id="string"),
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param(0.5, id="float"),
        pytest.param(object(), id="object"),
        pytest.param({"detections": []}, id="dict-without-boxes"),
        pytest.param({}, id="empty-dict"),
        pytest.param(np.zeros((1, 3, 6)), id="3d-array"),
        pytest.param(np.zeros((3, 5)), id="n-by-5-array"),
        pytest.param(np.zeros(6), id="1d-array"),
        pytest.param([{"label": "car", "score": 0.5, "box": [0, 0, 5, 5]}, "car"], id="dicts-and-a-string"),
        pytest.param([[0, 0, 5, 5, 0.5]], id="rows-of-5"),
        pytest.param(["car", "person"], id="list-of-strings"),
        pytest.param([None], id="list-of-None"),
        pytest.param([Detection("car", 0.5, VALID_BOX), {"label": "car"}], id="detections-and-a-dict"),
    ],
)
def test_unknown_objects_are_unrecognized_format_and_unreadable(output: Any) -> None:
    assert_unrecognized(read(output, (640.0, 480.0)))


# ================================================================= Detection lists and adapters


def test_list_of_detections_passes_through() -> None:
    detections = [Detection("car", 0.5, VALID_BOX), Detection("person", 0.25, (0.0, 0.0, 5.0, 5.0))]

    result = read(detections)

    assert result.detections == detections
    assert result.invalid == set()


def test_list_of_detections_is_validated_like_any_output() -> None:
    detections = [Detection("car", NAN, VALID_BOX), Detection("person", 0.25, (5.0, 0.0, 5.0, 5.0))]

    result = read(detections)

    assert result.detections == []
    assert result.invalid == {"confidence_not_finite", "box_degenerate"}


@pytest.mark.parametrize("box_format", ["xywh", "cxcywh"])
def test_detection_boxes_stay_xyxy_whatever_the_box_format_option(box_format: BoxFormat) -> None:
    # Detection is the internal shape: its box is documented as xyxy, so an adapter
    # returning Detections must not have them reinterpreted as xywh/cxcywh.
    result = read([Detection("car", 0.5, VALID_BOX)], box_format=box_format)

    assert triples(result) == [("car", 0.5, VALID_BOX)]


def test_adapter_receives_the_raw_output_and_may_return_dicts() -> None:
    seen: list[Any] = []

    def adapter(raw: Any) -> Any:
        seen.append(raw)
        return [{"name": n, "conf": c, "bbox": b} for n, c, b in raw["hits"]]

    raw = {"hits": [("car", 0.5, (10, 20, 110, 220))]}
    result = read(raw, adapter=adapter)

    assert seen == [raw]
    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert result.invalid == set()


def test_adapter_may_return_detections() -> None:
    def adapter(raw: Any) -> Any:
        return [Detection(str(c), float(s), tuple(float(v) for v in b)) for c, s, b in raw]  # type: ignore[arg-type]

    assert triples(read([("car", 0.5, (10, 20, 110, 220))], adapter=adapter)) == [("car", 0.5, VALID_BOX)]


def test_adapter_output_gets_box_format_and_label_names() -> None:
    def adapter(raw: Any) -> Any:
        return {"boxes": [raw["xywh"]], "scores": [raw["p"]], "labels": [raw["k"]]}

    result = read(
        {"xywh": [10, 20, 100, 200], "p": 0.5, "k": 2}, adapter=adapter, box_format="xywh", label_names=LABELS_LIST
    )

    assert triples(result) == [("car", 0.5, VALID_BOX)]


def test_adapter_raising_is_adapter_error_and_unreadable() -> None:
    def adapter(raw: Any) -> Any:
        raise KeyError("no such field")

    result = read([{"label": "car", "score": 0.5, "box": [10, 20, 110, 220]}], adapter=adapter)

    assert result.invalid == {"adapter_error"}
    assert result.readable is False
    assert result.detections == []


def test_adapter_returning_an_unknown_object_is_unrecognized_format() -> None:
    assert_unrecognized(read([], adapter=lambda raw: "nothing"))


# ================================================================= Ultralytics (duck-typed)


def test_ultralytics_results_map_cls_through_names_and_take_size_from_orig_shape() -> None:
    boxes = np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0], [0.0, 0.0, 5.0, 5.0, 0.5, 0.0]])
    results = ultralytics_result(boxes, height=480, width=640)

    result = read(results)

    assert triples(result) == [("car", 0.75, VALID_BOX), ("person", 0.5, (0.0, 0.0, 5.0, 5.0))]
    assert (result.width, result.height) == (640.0, 480.0)
    assert result.invalid == set()
    assert result.relative is False


def test_ultralytics_results_names_win_over_label_names() -> None:
    results = ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 1.0]]))

    assert [d.class_name for d in read(results, label_names=LABELS_LIST).detections] == ["bicycle"]


def test_ultralytics_results_without_names_fall_back_to_label_names() -> None:
    results = ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 1.0]]))
    results.names = {}

    assert [d.class_name for d in read(results, label_names=LABELS_LIST).detections] == ["person"]


def test_ultralytics_size_argument_wins_over_orig_shape() -> None:
    results = ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0]]), height=480, width=640)

    result = read(results, (1920.0, 1080.0))

    assert (result.width, result.height) == (1920.0, 1080.0)
    assert triples(result) == [("car", 0.75, VALID_BOX)]


def test_ultralytics_boxes_are_pixel_xyxy_whatever_the_options() -> None:
    results = ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0]]))

    result = read(results, box_format="cxcywh", normalized_boxes=True)

    assert triples(result) == [("car", 0.75, VALID_BOX)]
    assert result.relative is False


def test_one_element_list_of_ultralytics_results_reads_its_element() -> None:
    results = [ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0]]), height=720, width=1280)]

    result = read(results)

    assert triples(result) == [("car", 0.75, VALID_BOX)]
    assert (result.width, result.height) == (1280.0, 720.0)


def test_two_ultralytics_results_for_one_image_are_unrecognized() -> None:
    one = ultralytics_result(np.array([[10.0, 20.0, 110.0, 220.0, 0.75, 2.0]]))

    assert_unrecognized(read([one, one]))


def test_ultralytics_results_with_no_detections_are_readable() -> None:
    result = read(ultralytics_result(np.zeros((0, 6))))

    assert result.detections == []
    assert result.invalid == set()
    assert result.readable is True
    assert (result.width, result.height) == (640.0, 480.0)


def test_ultralytics_classification_results_without_boxes_are_unrecognized() -> None:
    results = UltralyticsResults(
        np.zeros((224, 224, 3), dtype=np.uint8), "cat.jpg", COCO_NAMES, probs=np.array([0.1, 0.2, 0.7])
    )
    assert results.boxes is None

    assert_unrecognized(read(results))
    assert_unrecognized(read([results]))


def test_ultralytics_invalid_detections_are_reasons() -> None:
    boxes = np.array(
        [
            [10.0, 20.0, 110.0, 220.0, NAN, 2.0],
            [110.0, 20.0, 10.0, 220.0, 0.5, 2.0],
            [10.0, 20.0, 110.0, 220.0, 0.5, 0.0],
        ]
    )

    result = read(ultralytics_result(boxes))

    assert triples(result) == [("person", 0.5, VALID_BOX)]
    assert result.invalid == {"confidence_not_finite", "box_degenerate"}


# ================================================================= supervision (real package)


def test_supervision_detections_use_class_name_data(sv: Any) -> None:
    detections = sv.Detections(
        xyxy=np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 5.0, 5.0]]),
        confidence=np.array([0.75, 0.5]),
        class_id=np.array([2, 1]),
        data={"class_name": np.array(["automobile", "pedestrian"])},
    )

    result = read(detections, label_names=LABELS_LIST)

    assert triples(result) == [("automobile", 0.75, VALID_BOX), ("pedestrian", 0.5, (0.0, 0.0, 5.0, 5.0))]
    assert result.invalid == set()
    assert all(type(d.class_name) is str for d in result.detections)


@pytest.mark.parametrize(
    ("label_names", "expected"),
    [(LABELS_LIST, ["car", "person"]), (LABELS_DICT, ["car", "person"]), (None, ["2", "1"])],
)
def test_supervision_detections_without_class_name_use_label_names(
    sv: Any, label_names: LabelNames | None, expected: list[str]
) -> None:
    detections = sv.Detections(
        xyxy=np.array([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 5.0, 5.0]]),
        confidence=np.array([0.75, 0.5]),
        class_id=np.array([2, 1]),
    )

    result = read(detections, label_names=label_names)

    assert triples(result) == [(expected[0], 0.75, VALID_BOX), (expected[1], 0.5, (0.0, 0.0, 5.0, 5.0))]


def test_supervision_detections_without_confidence_are_confidence_missing(sv: Any) -> None:
    detections = sv.Detections(xyxy=np.array([[10.0, 20.0, 110.0, 220.0]]), confidence=None, class_id=np.array([2]))

    result = read(detections, label_names=LABELS_LIST)

    assert result.detections == []
    assert result.invalid == {"confidence_missing"}
    assert result.readable is True


def test_supervision_detections_without_class_are_class_missing(sv: Any) -> None:
    detections = sv.Detections(xyxy=np.array([[10.0, 20.0, 110.0, 220.0]]), confidence=np.array([0.5]))

    result = read(detections)

    assert result.detections == []
    assert result.invalid == {"class_missing"}


def test_supervision_empty_detections_are_readable(sv: Any) -> None:
    result = read(sv.Detections.empty(), (640.0, 480.0))

    assert result.detections == []
    assert result.invalid == set()
    assert result.readable is True


def test_supervision_boxes_are_pixel_xyxy_whatever_the_options(sv: Any) -> None:
    detections = sv.Detections(
        xyxy=np.array([[10.0, 20.0, 110.0, 220.0]]), confidence=np.array([0.5]), class_id=np.array([2])
    )

    result = read(detections, (640.0, 480.0), box_format="xywh", normalized_boxes=True, label_names=LABELS_LIST)

    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert result.relative is False


def test_supervision_invalid_detections_are_reasons(sv: Any) -> None:
    detections = sv.Detections(
        xyxy=np.array([[10.0, 20.0, 110.0, 220.0], [10.0, 20.0, 110.0, 220.0], [10.0, 20.0, 10.0, 220.0]]),
        confidence=np.array([0.5, 1.5, 0.5]),
        class_id=np.array([2, 2, 2]),
    )

    result = read(detections, label_names=LABELS_LIST)

    assert triples(result) == [("car", 0.5, VALID_BOX)]
    assert result.invalid == {"confidence_out_of_range", "box_degenerate"}


# ================================================================= image_size_of


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((480, 640), (640.0, 480.0)),  # HW
        ((480, 640, 3), (640.0, 480.0)),  # HWC
        ((480, 640, 1), (640.0, 480.0)),
        ((480, 640, 4), (640.0, 480.0)),
        ((3, 480, 640), (640.0, 480.0)),  # CHW
        ((1, 28, 28), (28.0, 28.0)),
        ((4, 100, 200), (200.0, 100.0)),
        ((3, 10, 3), (10.0, 3.0)),  # both ends look like channels: HWC
        ((1, 3, 480, 640), None),  # a batch: not one image
        ((640,), None),
        ((), None),
    ],
)
def test_image_size_of_arrays_is_width_height(shape: tuple[int, ...], expected: tuple[float, float] | None) -> None:
    assert image_size_of(np.zeros(shape, dtype=np.uint8)) == expected


def test_image_size_of_reads_any_shape_attribute() -> None:
    # torch tensors: shape is a torch.Size (a tuple subclass) of ints.
    assert image_size_of(SimpleNamespace(shape=(3, 720, 1280))) == (1280.0, 720.0)
    assert image_size_of(SimpleNamespace(shape=5)) is None
    assert image_size_of(SimpleNamespace(shape=("h", "w"))) is None


def test_image_size_of_pil_like_object_uses_size() -> None:
    assert image_size_of(SimpleNamespace(size=(640, 480))) == (640.0, 480.0)


def test_image_size_of_real_pil_image() -> None:
    assert image_size_of(Image.new("RGB", (640, 480))) == (640.0, 480.0)
    assert image_size_of(Image.new("L", (33, 17))) == (33.0, 17.0)


@pytest.mark.parametrize(
    "image",
    [
        pytest.param("frame.jpg", id="path"),
        pytest.param(b"\xff\xd8\xff", id="bytes"),
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param([[0, 0], [0, 0]], id="nested-list"),
        pytest.param(object(), id="object"),
        pytest.param(SimpleNamespace(size=307200), id="int-size"),
        pytest.param(SimpleNamespace(size=(640, 480, 3)), id="three-tuple-size"),
        pytest.param(SimpleNamespace(size=("w", "h")), id="non-numeric-size"),
    ],
)
def test_image_size_of_objects_without_a_shape_is_none(image: Any) -> None:
    assert image_size_of(image) is None


def test_image_size_of_result_is_floats() -> None:
    size = image_size_of(np.zeros((480, 640, 3), dtype=np.uint8))
    assert size is not None
    assert all(type(v) is float and math.isfinite(v) for v in size)


def test_label_names_mapping_type_is_accepted() -> None:
    # Any Mapping works, not only dict.
    class Names(Mapping[int, str]):
        def __getitem__(self, key: int) -> str:
            return {2: "car"}[key]

        def __iter__(self) -> Any:
            return iter([2])

        def __len__(self) -> int:
            return 1

    result = read([{"label": 2, "score": 0.5, "box": [10, 20, 110, 220]}], label_names=Names())

    assert triples(result) == [("car", 0.5, VALID_BOX)]


def test_what_the_companion_would_refuse_is_left_out_and_counted() -> None:
    """An empty class and a coordinate beyond 1e7 px made the companion reject the image's whole event."""
    from detwatch.contract.predictions import MAX_COORDINATE, PredictionError, parse_prediction

    good = {"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
    result = read([good, {**good, "class": ""}, {**good, "box": [1.0, 2.0, 2 * MAX_COORDINATE, 40.0]}])
    assert triples(result) == [("car", 0.9, (1.0, 2.0, 30.0, 40.0))]
    assert result.invalid == {"class_missing", "box_out_of_range"}
    # The companion's own parser takes what is left.
    body = {"model_id": "m", "time": "2024-02-01T12:00:00Z",
            "detections": [{"class": d.class_name, "confidence": d.confidence, "box": list(d.box)}
                           for d in result.detections]}  # fmt: skip
    assert len(parse_prediction(body).detections) == 1
    with pytest.raises(PredictionError):
        parse_prediction({**body, "detections": [{**good, "class": ""}]})


def test_more_detections_than_the_companion_takes_are_cut_and_counted() -> None:
    """100k rows held the GIL ~50 ms in tolist() and made a 13 MB event the companion refused."""
    from detwatch.contract.predictions import MAX_DETECTIONS

    rows = np.tile(np.array([[1.0, 2.0, 30.0, 40.0, 0.9, 0.0]], dtype=np.float32), (100_000, 1))
    result = read(rows, label_names=["car"])
    assert len(result.detections) == MAX_DETECTIONS
    assert result.invalid == {"too_many_detections"}


def test_a_label_or_score_that_raises_is_counted_and_the_rest_kept() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Unconvertible:
        def __float__(self) -> float:
            raise RuntimeError("no")

    good = {"class": "car", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
    result = read([{**good, "class": Unprintable()}, {**good, "confidence": Unconvertible()}, good])
    assert triples(result) == [("car", 0.9, (1.0, 2.0, 30.0, 40.0))]
    assert result.invalid == {"unrecognized_format"}


def test_the_common_row_shortcut_accepts_exactly_what_the_full_reader_accepts() -> None:
    """``_valid_plain_row`` (the recorder's shortcut for tolist()'d rows) never disagrees with ``_detection``."""
    rng = np.random.default_rng(11)
    odd = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 1.5, -0.2, 2e7, -2e7, 1e-300]
    labels: list[Any] = [0, 1, 2, 7, -1, "car", "", True, 3.0, None]
    names_options: list[Any] = [None, {0: "car", 1: "bus", 2: ""}, ["car", "bus"]]
    checked = accepted = 0
    for _ in range(20_000):
        label = labels[rng.integers(len(labels))]
        score: Any = float(rng.uniform(-0.1, 1.1)) if rng.random() < 0.8 else odd[rng.integers(len(odd))]
        box: Any = [float(v) for v in rng.uniform(-50, 700, 4)]
        if rng.random() < 0.3:
            box[rng.integers(4)] = odd[rng.integers(len(odd))]
        if rng.random() < 0.05:
            box = box[:3] if rng.random() < 0.5 else tuple(box)
        if rng.random() < 0.05:
            score = int(rng.integers(0, 2))
        names = names_options[rng.integers(len(names_options))]
        fast = _valid_plain_row(label, score, box, names)
        invalid: set[Any] = set()
        full = _detection(label, score, box, names=names, fmt="xyxy", scale_to=None, invalid=invalid)
        checked += 1
        if fast is not None:
            accepted += 1
            assert full == fast and not invalid
            assert type(full.confidence) is type(fast.confidence)
    assert checked == 20_000 and 1_000 < accepted < 19_000  # both outcomes are exercised
