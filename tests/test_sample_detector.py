"""Tests of the bundled real detector (OpenCV Haar cascade on scikit-image images).

Detection on a full face mosaic costs about 0.5-0.7 s, so the detector and each
input's detections are computed once per module and shared.
"""

from __future__ import annotations

import itertools
import socket
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detwatch.demo.sample_detector import (
    CONFIDENCE_CENTRE,
    HaarFaceDetector,
    add_noise,
    blur,
    darken,
    downscale,
    face_mosaic,
    sample_scenes,
    weight_to_confidence,
)

Detections = list[dict[str, object]]

# Inputs derived from the 10x10 face mosaic, by name.
_DEGRADATIONS: dict[str, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]] = {
    "original": lambda image: image,
    "darken 0.25": lambda image: darken(image, 0.25),
    "blur 4": lambda image: blur(image, 4.0),
    "downscale 0.5": lambda image: downscale(image, 0.5),
}


@pytest.fixture(scope="module")
def detector() -> HaarFaceDetector:
    return HaarFaceDetector()


@pytest.fixture(scope="module")
def faces() -> NDArray[np.uint8]:
    return face_mosaic("faces")


@pytest.fixture(scope="module")
def nonface_detections(detector: HaarFaceDetector) -> Detections:
    return detector(face_mosaic("nonfaces"))


@pytest.fixture(scope="module")
def mosaic_detections(
    detector: HaarFaceDetector, faces: NDArray[np.uint8]
) -> Callable[[str], tuple[NDArray[np.uint8], Detections]]:
    """Detections on a (degraded) face mosaic, computed at most once per name."""
    cache: dict[str, tuple[NDArray[np.uint8], Detections]] = {}

    def get(name: str) -> tuple[NDArray[np.uint8], Detections]:
        if name not in cache:
            image = _DEGRADATIONS[name](faces)
            cache[name] = (image, detector(image))
        return cache[name]

    return get


@pytest.fixture
def astronaut() -> NDArray[np.uint8]:
    return sample_scenes()["astronaut"]


def _confidences(detections: Detections) -> list[float]:
    values = [d["confidence"] for d in detections]
    assert all(isinstance(v, float) for v in values)
    return [float(v) for v in values if isinstance(v, float)]


def _mean_confidence(detections: Detections) -> float:
    return statistics.fmean(_confidences(detections))


def _boxes(detections: Detections) -> list[list[float]]:
    boxes: list[list[float]] = []
    for detection in detections:
        box = detection["box"]
        assert isinstance(box, list) and len(box) == 4
        assert all(isinstance(v, float) for v in box)
        boxes.append([float(v) for v in box])
    return boxes


def _tiles_hit(detections: Detections, cell: int) -> set[tuple[int, int]]:
    """Mosaic cells (row, col) that contain the centre of at least one box."""
    return {(int((y1 + y2) / 2) // cell, int((x1 + x2) / 2) // cell) for x1, y1, x2, y2 in _boxes(detections)}


# The mosaic and the data set


def test_face_mosaic_tiles_upscaled_crops_in_a_gray_frame() -> None:
    mosaic = face_mosaic("faces", grid=3, tile=40, gap=2)
    assert mosaic.dtype == np.uint8
    assert mosaic.shape == (3 * 44, 3 * 44)
    assert mosaic[0, 0] == 128  # frame
    assert np.array_equal(mosaic, face_mosaic("faces", grid=3, tile=40, gap=2))
    assert not np.array_equal(mosaic, face_mosaic("nonfaces", grid=3, tile=40, gap=2))


def test_face_mosaic_rejects_more_tiles_than_crops() -> None:
    with pytest.raises(ValueError):
        face_mosaic("faces", grid=11)
    with pytest.raises(ValueError):
        face_mosaic("faces", grid=0)


def test_detector_finds_nearly_every_face_in_the_face_mosaic(
    mosaic_detections: Callable[[str], tuple[NDArray[np.uint8], Detections]],
) -> None:
    image, detections = mosaic_detections("original")
    assert image.shape == (860, 860)
    assert 90 <= len(detections) <= 110
    # One face per tile: the hits are spread over the tiles, not piled on a few.
    assert len(_tiles_hit(detections, cell=86)) >= 90
    assert _mean_confidence(detections) >= 0.75


def test_detector_finds_few_faces_in_the_nonface_mosaic(
    nonface_detections: Detections,
) -> None:
    # The last 100 lfw_subset crops are background patches, not faces.
    assert len(nonface_detections) <= 5


def test_detections_have_the_project_shape_with_valid_confidences_and_boxes(
    mosaic_detections: Callable[[str], tuple[NDArray[np.uint8], Detections]],
) -> None:
    for name in _DEGRADATIONS:
        image, detections = mosaic_detections(name)
        height, width = image.shape[:2]
        for detection in detections:
            assert set(detection) == {"class", "confidence", "box"}
            assert detection["class"] == "face"
        for confidence in _confidences(detections):
            assert 0.0 <= confidence <= 1.0
        for x1, y1, x2, y2 in _boxes(detections):
            assert 0.0 <= x1 < x2 <= width
            assert 0.0 <= y1 < y2 <= height
        confidences = _confidences(detections)
        assert confidences == sorted(confidences, reverse=True)


# Degradations move the output the way DESIGN.md reports


def test_blur_sigma_4_clearly_lowers_the_mean_confidence(
    mosaic_detections: Callable[[str], tuple[NDArray[np.uint8], Detections]],
) -> None:
    _, original = mosaic_detections("original")
    _, blurred = mosaic_detections("blur 4")
    assert _mean_confidence(blurred) <= _mean_confidence(original) - 0.15
    assert _mean_confidence(blurred) < 0.7  # below an avg_confidence alert threshold


def test_strong_darkening_loses_faces(
    mosaic_detections: Callable[[str], tuple[NDArray[np.uint8], Detections]],
) -> None:
    _, original = mosaic_detections("original")
    _, dark = mosaic_detections("darken 0.25")
    assert len(dark) <= 0.9 * len(original)


def test_half_resolution_loses_faces_and_confidence(
    mosaic_detections: Callable[[str], tuple[NDArray[np.uint8], Detections]],
) -> None:
    _, original = mosaic_detections("original")
    small, detections = mosaic_detections("downscale 0.5")
    assert small.shape == (430, 430)
    assert len(detections) < len(original)
    assert len(detections) >= 50  # still detecting: drift, not breakage
    assert _mean_confidence(detections) <= _mean_confidence(original) - 0.05


# The confidence mapping


def test_weight_to_confidence_is_monotone_bounded_and_centred() -> None:
    weights = [-1e6, -50.0, -3.0, 0.0, 2.0, CONFIDENCE_CENTRE, 6.0, 9.0, 50.0, 1e6]
    confidences = [weight_to_confidence(w) for w in weights]
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert confidences == sorted(confidences)
    # Strictly increasing where floats can tell the values apart (not at +-1e6).
    assert all(a < b for a, b in itertools.pairwise(confidences[1:-2]))
    assert weight_to_confidence(CONFIDENCE_CENTRE) == pytest.approx(0.5)


# Inputs


def test_detector_accepts_rgb_rgba_gray_and_single_channel_images(
    detector: HaarFaceDetector, astronaut: NDArray[np.uint8]
) -> None:
    gray = np.asarray(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    variants = {
        "rgb": astronaut,
        "rgba": rgba,
        "gray": gray,
        "gray (H, W, 1)": gray[:, :, None],
        "non-contiguous rgb": np.asfortranarray(astronaut),
    }
    results = {name: detector(image) for name, image in variants.items()}
    for name, detections in results.items():
        assert len(detections) == 1, name
        assert detections == results["rgb"], name
    (face,) = results["rgb"]
    assert _confidences([face])[0] > 0.7


def test_detector_rejects_non_uint8_or_oddly_shaped_images(
    detector: HaarFaceDetector,
) -> None:
    float_image: Any = np.zeros((64, 64), dtype=np.float32)  # wrong on purpose
    with pytest.raises(TypeError):
        detector(float_image)
    with pytest.raises(ValueError):
        detector(np.zeros((64, 64, 2), dtype=np.uint8))
    with pytest.raises(ValueError):
        detector(np.zeros((0, 64), dtype=np.uint8))


def test_detector_serialises_calls_from_several_threads(
    detector: HaarFaceDetector, astronaut: NDArray[np.uint8]
) -> None:
    expected = detector(astronaut)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(detector, [astronaut] * 4))
    assert all(r == expected for r in results)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test of bundled data")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.mark.usefixtures("no_network")
def test_sample_scenes_and_mosaics_load_without_network() -> None:
    scenes = sample_scenes()
    assert {"astronaut", "camera", "chelsea", "coffee", "coins", "rocket"} <= set(scenes)
    for name, image in scenes.items():
        assert image.dtype == np.uint8, name
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), name
    assert face_mosaic("nonfaces", grid=2).shape == (172, 172)


# Degradations are pure and deterministic


@pytest.mark.parametrize(
    "degrade",
    [
        lambda image: darken(image, 0.5),
        lambda image: blur(image, 1.5),
        lambda image: downscale(image, 0.3),
        lambda image: add_noise(image, 10.0, seed=7),
    ],
    ids=["darken", "blur", "downscale", "add_noise"],
)
def test_degradations_are_pure_and_deterministic(
    degrade: Callable[[NDArray[np.uint8]], NDArray[np.uint8]],
    astronaut: NDArray[np.uint8],
) -> None:
    before = astronaut.copy()
    first = degrade(astronaut)
    second = degrade(astronaut)
    assert np.array_equal(astronaut, before)
    assert first.dtype == np.uint8
    assert np.array_equal(first, second)
    assert not np.array_equal(first, astronaut) or first.shape != astronaut.shape
    assert first.ndim == astronaut.ndim and first.shape[2:] == astronaut.shape[2:]


def test_degradations_at_neutral_strength_return_an_equal_copy(
    astronaut: NDArray[np.uint8],
) -> None:
    for result in (
        darken(astronaut, 1.0),
        blur(astronaut, 0.0),
        downscale(astronaut, 1.0),
        add_noise(astronaut, 0.0, seed=1),
    ):
        assert np.array_equal(result, astronaut)
        assert result is not astronaut


def test_degradation_parameters_behave_as_named(astronaut: NDArray[np.uint8]) -> None:
    assert darken(astronaut, 0.25).mean() < 0.3 * astronaut.mean()
    assert darken(astronaut, 0.0).max() == 0
    assert downscale(astronaut, 0.5).shape == (256, 256, 3)
    gray = astronaut[:, :, 0].copy()
    assert downscale(gray, 0.1).shape == (51, 51)
    assert blur(astronaut, 4.0).astype(float).std() < astronaut.astype(float).std()
    assert not np.array_equal(add_noise(astronaut, 10.0, seed=1), add_noise(astronaut, 10.0, seed=2))


def test_degradations_reject_out_of_range_parameters(astronaut: NDArray[np.uint8]) -> None:
    with pytest.raises(ValueError):
        darken(astronaut, 1.5)
    with pytest.raises(ValueError):
        blur(astronaut, -1.0)
    with pytest.raises(ValueError):
        downscale(astronaut, 0.0)
    with pytest.raises(ValueError):
        add_noise(astronaut, -1.0, seed=0)
