"""Face mosaics whose every face box is known: real images for scoring the demo's real detector.

Each mosaic is a crop of one of the demo's real photographs
(:func:`detwatch.demo.sample_detector.sample_scenes`, in gray) with a few of
scikit-image's ``lfw_subset`` crops pasted at random, non-overlapping places and sizes
(the first 100 crops are faces, the rest background patches of the same photographs;
randomly mirrored). A face's ground-truth box is the square it was pasted into, so
the truth is exact, not drawn by a reviewer. The photographs behind give the Haar
cascade something to be wrong about (coins, gravel, a clock face: low-confidence false
positives), so that precision is below 1 as in production, not a constant to check.

:func:`detect` runs the demo's detector (:class:`HaarFaceDetector` with its defaults,
as :mod:`detwatch.demo.loop` builds it) on a stream, after one of the degradations
the drift tests use, with boxes scaled back to the mosaic's pixels for a downscaled one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import cv2
import numpy as np
import skimage.data
from numpy.typing import NDArray

from detwatch.demo.sample_detector import HaarFaceDetector, blur, darken, downscale, sample_scenes

__all__ = ["DEGRADATIONS", "SIDE", "Detected", "Mosaic", "detect", "face_mosaics"]

SIDE: Final = 256
"""A mosaic's side in pixels."""
TILES: Final = 6
"""Crops pasted per mosaic (fewer where no free place is found)."""
FACE_SHARE: Final = 0.6
"""The chance a pasted crop is a face."""
GAP: Final = 3
"""Least distance between two pasted crops, so that the cascade never merges two faces."""

Box = tuple[float, float, float, float]
Detections = list[dict[str, Any]]

DEGRADATIONS: Final[dict[str, tuple[Callable[[NDArray[np.uint8]], NDArray[np.uint8]], float]]] = {
    "original": (lambda image: image, 1.0),
    "darkened": (lambda image: darken(image, 0.25), 1.0),
    "blurred": (lambda image: blur(image, 4.0), 1.0),
    "downscaled": (lambda image: downscale(image, 0.5), 0.5),
}
"""Per stream: the degradation and the scale of its image (boxes are divided by it)."""


@dataclass(frozen=True)
class Mosaic:
    """One image and the boxes of the faces pasted on it (xyxy pixels)."""

    image: NDArray[np.uint8]
    faces: tuple[Box, ...]


@dataclass(frozen=True)
class Detected:
    """The detector's output on one mosaic (boxes in the mosaic's pixels) and the mosaic's faces."""

    detections: Detections
    faces: tuple[Box, ...]


@functools.cache
def _sources() -> tuple[NDArray[np.uint8], tuple[NDArray[np.uint8], ...]]:
    """The 200 ``lfw_subset`` crops as uint8, and the demo's photographs in gray (at least ``SIDE`` px)."""
    loader = cast("Callable[[], NDArray[Any]]", skimage.data.lfw_subset)  # unannotated in scikit-image
    crops = np.rint(np.clip(np.asarray(loader()), 0.0, 1.0) * 255).astype(np.uint8)
    scenes = []
    for image in sample_scenes().values():
        gray = image if image.ndim == 2 else np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        if min(gray.shape) >= SIDE:
            scenes.append(gray)
    return crops, tuple(scenes)


def _mosaic(rng: np.random.Generator) -> Mosaic:
    crops, scenes = _sources()
    scene = scenes[int(rng.integers(len(scenes)))]
    top, left = int(rng.integers(0, scene.shape[0] - SIDE + 1)), int(rng.integers(0, scene.shape[1] - SIDE + 1))
    canvas = scene[top : top + SIDE, left : left + SIDE].copy()
    placed: list[tuple[int, int, int]] = []
    faces: list[Box] = []
    for _ in range(TILES):
        face = bool(rng.random() < FACE_SHARE)
        crop = crops[int(rng.integers(0, 100)) if face else int(rng.integers(100, 200))]
        size = int(rng.integers(40, 80))
        for _attempt in range(50):
            x, y = int(rng.integers(0, SIDE - size)), int(rng.integers(0, SIDE - size))
            if all(
                x + size + GAP <= px or px + ps + GAP <= x or y + size + GAP <= py or py + ps + GAP <= y
                for px, py, ps in placed
            ):
                break
        else:
            continue
        placed.append((x, y, size))
        tile = np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        canvas[y : y + size, x : x + size] = tile[:, ::-1] if rng.random() < 0.5 else tile
        if face:
            faces.append((float(x), float(y), float(x + size), float(y + size)))
    return Mosaic(canvas, tuple(faces))


def face_mosaics(seed: int, count: int) -> list[Mosaic]:
    """``count`` mosaics; the same seed gives the same ones."""
    rng = np.random.default_rng(seed)
    return [_mosaic(rng) for _ in range(count)]


def detect(mosaics: list[Mosaic], stream: str = "original") -> list[Detected]:
    """The demo's detector on each mosaic degraded as ``stream`` (a key of :data:`DEGRADATIONS`)."""
    degrade, scale = DEGRADATIONS[stream]
    detector = HaarFaceDetector()
    result = []
    for mosaic in mosaics:
        found: Detections = [dict(d) for d in detector(degrade(mosaic.image))]
        for d in found:
            d["box"] = [float(v) / scale for v in d["box"]]
        result.append(Detected(found, mosaic.faces))
    return result
