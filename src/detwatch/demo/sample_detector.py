"""A real object detector on real, bundled images: for demos and drift tests.

detwatch monitors object-detection models, so its examples, demos and drift tests
need a detector whose outputs move the way a production model's do when its input
degrades, without a model download, a GPU or network access at run time. This
module provides one, built only from data that ships inside two wheels:

* :class:`HaarFaceDetector` wraps OpenCV's ``haarcascade_frontalface_default``
  cascade (shipped in ``cv2.data.haarcascades`` by ``opencv-python-headless``) and
  returns detections in the project's list-of-dicts shape
  (``{"class": "face", "confidence": c, "box": [x1, y1, x2, y2]}``, absolute pixels,
  xyxy), with a confidence in [0, 1] derived from the cascade's final-stage weight.
* :func:`face_mosaic` tiles scikit-image's ``lfw_subset`` crops (100 faces, then
  100 non-faces) into one image: a labelled test set whose ground truth is known
  (one face per tile, or none).
* :func:`sample_scenes` returns a few real photographs from ``skimage.data`` that
  load offline.
* :func:`darken`, :func:`blur`, :func:`downscale` and :func:`add_noise` are pure,
  deterministic degradations that shift the detection count and the confidence
  distribution, i.e. simulated drift.

Measured with OpenCV 4.14 and scikit-image 0.26 (default parameters, 10x10 face
mosaic of 860 px): 100 faces at mean confidence ~0.87; blur sigma 4 lowers the mean
confidence to ~0.55; darkening to 25 % drops about a quarter of the faces;
halving the resolution loses ~8 faces and lowers the mean confidence to ~0.76; the
non-face mosaic gives no detection. Mild darkening barely registers: Haar features
are normalised by the window's contrast.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, Literal, cast

import cv2
import numpy as np
import skimage.data
from cv2.data import haarcascades
from numpy.typing import NDArray

__all__ = [
    "CONFIDENCE_CENTRE",
    "CONFIDENCE_SCALE",
    "HaarFaceDetector",
    "add_noise",
    "blur",
    "darken",
    "downscale",
    "face_mosaic",
    "sample_scenes",
    "weight_to_confidence",
]

CASCADE_FILE = "haarcascade_frontalface_default.xml"
"""The cascade used: the one whose final-stage weights separate faces best."""

CONFIDENCE_CENTRE = 4.0
"""Final-stage weight that maps to confidence 0.5 (see :func:`weight_to_confidence`)."""

CONFIDENCE_SCALE = 1.0
"""Weight units per logistic unit (see :func:`weight_to_confidence`)."""

FACE_CLASS = "face"

_LFW_CROPS_PER_KIND = 100
_LFW_CROP_SIZE = 25

SCENE_NAMES: tuple[str, ...] = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket")
"""``skimage.data`` images that ship in the scikit-image wheel (no download)."""


def weight_to_confidence(weight: float) -> float:
    """Map a final-stage cascade weight to a confidence in [0, 1].

    ``detectMultiScale3(..., outputRejectLevels=True)`` reports, per detection, the
    sum of the weak classifiers of the cascade's last stage (``levelWeights``). It
    is unbounded and cascade-specific: for ``frontalface_default`` (last stage
    threshold -2.99) true faces on the ``lfw_subset`` mosaic give weights of about
    5 to 9.5 (median ~7.5), while false positives seen on the bundled scenes (coins,
    gravel, a clock face) give about 1 to 4. ``rejectLevels`` carries no
    information (every kept window passed all stages).

    The mapping is a logistic centred between those two groups::

        confidence = 1 / (1 + exp(-(weight - CONFIDENCE_CENTRE) / CONFIDENCE_SCALE))

    with ``CONFIDENCE_CENTRE = 4`` and ``CONFIDENCE_SCALE = 1``. It is strictly
    increasing (ranking is preserved), bounded without clipping, puts a typical
    face at ~0.95 and a typical false positive below 0.5, and keeps resolution in
    the 0.5-0.9 range where the project's alert thresholds (0.5, 0.6, 0.7) lie. A
    linear ``clip(weight / 12, 0, 1)`` was rejected: it squeezes faces into
    0.4-0.75 and maps every negative weight to exactly 0.
    """
    z = (weight - CONFIDENCE_CENTRE) / CONFIDENCE_SCALE
    # Numerically stable logistic: never exponentiates a large positive number.
    if z >= 0.0:
        value = 1.0 / (1.0 + math.exp(-z))
    else:
        e = math.exp(z)
        value = e / (1.0 + e)
    return min(1.0, max(0.0, value))


def _check_uint8_image(image: NDArray[np.uint8]) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"empty image of shape {image.shape}")
        return
    raise ValueError(
        f"expected a grayscale (H, W) or (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4) image, got shape {image.shape}"
    )


def _to_gray(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Grayscale, C-contiguous copy or view of a checked uint8 image (RGB order)."""
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        else:
            code = cv2.COLOR_RGB2GRAY if channels == 3 else cv2.COLOR_RGBA2GRAY
            image = np.asarray(cv2.cvtColor(np.ascontiguousarray(image), code), dtype=np.uint8)
    return np.ascontiguousarray(image)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, returning detections as list of dicts.

    Calling the detector on a uint8 image, grayscale ``(H, W)``/``(H, W, 1)`` or
    colour in RGB order ``(H, W, 3)``/``(H, W, 4)``, returns
    ``[{"class": "face", "confidence": c, "box": [x1, y1, x2, y2]}, ...]``: boxes in
    absolute pixels (xyxy floats, inside the image), confidences in [0, 1] from
    :func:`weight_to_confidence`, sorted by decreasing confidence. The image is
    converted to gray but not equalised, so that degradations stay visible.

    Threads: an OpenCV ``CascadeClassifier`` must be used from one thread at a
    time. Calls on one detector are serialised by an internal lock; for parallel
    inference create one detector per thread. (OpenCV itself already spreads one
    call over ``cv2.getNumThreads()`` cores.)

    Args:
        scale_factor: pyramid step of ``detectMultiScale3``; 1.1 is OpenCV's default.
        min_neighbors: overlapping raw windows needed to keep a detection (3, the
            OpenCV default, finds 99 of the 100 mosaic faces and no non-face).
        min_size: smallest face searched, ``(width, height)`` in pixels. 30 px is
            below the 40 px faces of a half-size :func:`face_mosaic` and skips the
            costliest pyramid levels.
        max_size: largest face searched, or ``None`` for no limit.
    """

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: tuple[int, int] = (30, 30),
        max_size: tuple[int, int] | None = None,
    ) -> None:
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        if min_neighbors < 0:
            raise ValueError(f"min_neighbors must be >= 0, got {min_neighbors}")
        path = haarcascades + CASCADE_FILE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}")
        self._cascade = cascade
        self._lock = threading.Lock()
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_size = max_size

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, "
            f"max_size={self.max_size})"
        )

    def __call__(self, image: NDArray[np.uint8]) -> list[dict[str, object]]:
        _check_uint8_image(image)
        gray = _to_gray(image)
        height, width = gray.shape
        with self._lock:
            boxes, _levels, weights = self._cascade.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=self.min_size,
                maxSize=self.max_size if self.max_size is not None else (0, 0),
                outputRejectLevels=True,
            )
        detections: list[dict[str, object]] = []
        for (x, y, w, h), weight in zip(boxes, weights, strict=True):
            x1 = float(max(0, int(x)))
            y1 = float(max(0, int(y)))
            x2 = float(min(width, int(x) + int(w)))
            y2 = float(min(height, int(y) + int(h)))
            if x2 <= x1 or y2 <= y1:
                continue
            detections.append(
                {
                    "class": FACE_CLASS,
                    "confidence": weight_to_confidence(float(weight)),
                    "box": [x1, y1, x2, y2],
                }
            )
        detections.sort(key=_confidence_key, reverse=True)
        return detections


def _confidence_key(detection: dict[str, object]) -> float:
    confidence = detection["confidence"]
    assert isinstance(confidence, float)
    return confidence


def _lfw_crops() -> NDArray[np.uint8]:
    """The 200 ``lfw_subset`` crops as uint8 (skimage returns float64 in [0, 1])."""
    # Cast: the stub of ``lfw_subset`` is unannotated.
    loader = cast("Callable[[], NDArray[Any]]", skimage.data.lfw_subset)
    crops = np.asarray(loader())
    expected = (2 * _LFW_CROPS_PER_KIND, _LFW_CROP_SIZE, _LFW_CROP_SIZE)
    if crops.shape != expected:
        raise RuntimeError(f"unexpected lfw_subset shape {crops.shape}, expected {expected}")
    if crops.dtype == np.uint8:
        return crops.astype(np.uint8, copy=True)
    scaled = np.rint(np.clip(crops.astype(np.float64), 0.0, 1.0) * 255.0)
    return scaled.astype(np.uint8)


def face_mosaic(
    kind: Literal["faces", "nonfaces"] = "faces",
    grid: int = 10,
    *,
    tile: int = 80,
    gap: int = 3,
) -> NDArray[np.uint8]:
    """A grayscale ``grid x grid`` mosaic of ``skimage.data.lfw_subset()`` crops.

    ``lfw_subset`` holds 200 crops of 25x25 px: the first 100 are faces, the last
    100 non-faces (background patches of the same photographs). The Haar cascade's
    window is 24 px, so each crop is upscaled (bicubic) to ``tile`` px and framed
    by ``gap`` px of mid-gray (128) on each side, which keeps neighbouring crops
    from merging into one detection. The defaults give an 860 px image on which
    :class:`HaarFaceDetector` finds 100 faces (99 of the 100 tiles) for
    ``"faces"`` and none for ``"nonfaces"``. Crops are taken in dataset order,
    row by row; the same arguments always give the same image.

    Args:
        kind: ``"faces"`` (crops 0-99) or ``"nonfaces"`` (crops 100-199).
        grid: tiles per side, 1 to 10 (there are 100 crops of each kind).
        tile: side of one upscaled crop, in pixels (at least 25).
        gap: mid-gray border around each crop, in pixels.
    """
    if kind not in ("faces", "nonfaces"):
        raise ValueError(f"kind must be 'faces' or 'nonfaces', got {kind!r}")
    if not 1 <= grid <= 10:
        raise ValueError(f"grid must be between 1 and 10, got {grid}")
    if tile < _LFW_CROP_SIZE:
        raise ValueError(f"tile must be >= {_LFW_CROP_SIZE}, got {tile}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    crops = _lfw_crops()
    start = 0 if kind == "faces" else _LFW_CROPS_PER_KIND
    cell = tile + 2 * gap
    mosaic = np.full((grid * cell, grid * cell), 128, dtype=np.uint8)
    for index in range(grid * grid):
        crop = crops[start + index]
        big = np.asarray(cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        row, col = divmod(index, grid)
        top = row * cell + gap
        left = col * cell + gap
        mosaic[top : top + tile, left : left + tile] = big
    return mosaic


def sample_scenes() -> dict[str, NDArray[np.uint8]]:
    """A few real photographs from ``skimage.data`` that load without a download.

    Names: ``astronaut`` (RGB, one frontal face: found, confidence ~0.86),
    ``camera`` (gray, a man in near-profile: not found), ``chelsea`` (RGB, a cat),
    ``coffee`` (RGB), ``coins`` (gray, gives a few low-confidence false
    positives) and ``rocket`` (RGB). RGB images are ``(H, W, 3)`` in RGB order;
    grayscale ones are ``(H, W)``. Each call returns fresh arrays. Other
    ``skimage.data`` images (``skin``, ``eagle``, ``brain``, ...) need a download
    and are deliberately not used.
    """
    scenes: dict[str, NDArray[np.uint8]] = {}
    for name in SCENE_NAMES:
        loader = getattr(skimage.data, name)
        image = np.asarray(loader())
        if image.dtype != np.uint8:
            raise RuntimeError(f"skimage.data.{name} is {image.dtype}, expected uint8")
        scenes[name] = np.array(image, dtype=np.uint8, copy=True)
    return scenes


# Degradations: pure functions (the input is never modified) and deterministic.


def darken(image: NDArray[np.uint8], factor: float) -> NDArray[np.uint8]:
    """Scale every pixel by ``factor`` in [0, 1] (exposure drop), rounding to nearest.

    The Haar cascade normalises each window by its contrast, so mild darkening
    (x0.5) barely changes the output; x0.25 loses about a quarter of the mosaic's
    faces and x0.1 all of them.
    """
    _check_uint8_image(image)
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"factor must be in [0, 1], got {factor}")
    scaled = np.clip(np.rint(image.astype(np.float32) * np.float32(factor)), 0, 255)
    return np.asarray(scaled, dtype=np.uint8)


def blur(image: NDArray[np.uint8], sigma: float) -> NDArray[np.uint8]:
    """Gaussian blur with standard deviation ``sigma`` px (defocus, motion, compression).

    ``sigma == 0`` returns an unchanged copy. Borders are reflected (OpenCV's
    ``BORDER_REFLECT_101``).
    """
    _check_uint8_image(image)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image.copy()
    blurred = cv2.GaussianBlur(
        np.ascontiguousarray(image),
        (0, 0),
        sigmaX=float(sigma),
        sigmaY=float(sigma),
        borderType=cv2.BORDER_REFLECT_101,
    )
    return np.asarray(blurred, dtype=np.uint8).reshape(image.shape)


def downscale(image: NDArray[np.uint8], factor: float) -> NDArray[np.uint8]:
    """Resize by ``factor`` in (0, 1] with area averaging (a lower-resolution camera).

    The result is smaller: boxes found on it are in its own pixel coordinates.
    Each side becomes ``max(1, round(side * factor))`` pixels.
    """
    _check_uint8_image(image)
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    height, width = image.shape[:2]
    new_width = max(1, round(width * factor))
    new_height = max(1, round(height * factor))
    if (new_width, new_height) == (width, height):
        return image.copy()
    resized = np.asarray(
        cv2.resize(np.ascontiguousarray(image), (new_width, new_height), interpolation=cv2.INTER_AREA),
        dtype=np.uint8,
    )
    return resized.reshape((new_height, new_width, *image.shape[2:]))


def add_noise(image: NDArray[np.uint8], sigma: float, seed: int = 0) -> NDArray[np.uint8]:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` (grey levels).

    Sensor noise; the same ``seed`` gives the same noise, so the result is
    deterministic. Values are rounded and clipped to [0, 255].
    """
    _check_uint8_image(image)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, float(sigma), size=image.shape)
    noisy = np.clip(np.rint(image.astype(np.float64) + noise), 0, 255)
    return np.asarray(noisy, dtype=np.uint8)
