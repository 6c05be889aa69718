"""The real shift: OpenCV's Haar face detector on real face crops, originals against degraded copies.

Images are 4 x 4 mosaics of scikit-image's ``lfw_subset`` crops (three in four a face,
the rest background patches, randomly flipped), so that every image differs and its
ground truth is known. Reference: 32 originals. Current: 32 *other* originals (no
drift), or those same 32 scenes darkened, blurred or downscaled (drift). The
reports go through the companion's storage (ingest, hourly aggregates, report);
the 200 null splits re-bin the per-image detections directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest
import skimage.data
from numpy.typing import NDArray
from scipy import stats

from _drift_samples import Box, bin_images
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.demo.sample_detector import HaarFaceDetector, blur, darken, downscale
from detwatch.drift import DriftConfig, compare, drift_report
from detwatch.storage import Storage, open_storage

GRID, TILE, GAP = 4, 48, 3
IMAGES = 32
"""Per period: above the report's minimum of 30 images."""
DEGRADATIONS: dict[str, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]] = {
    "darkened": lambda image: darken(image, 0.25),
    "blurred": lambda image: blur(image, 4.0),
    "downscaled": lambda image: downscale(image, 0.5),
}
DAY_NS = 86_400 * 10**9


def _mosaics(rng: np.random.Generator, count: int) -> list[NDArray[np.uint8]]:
    loader = cast("Callable[[], NDArray[Any]]", skimage.data.lfw_subset)  # unannotated in scikit-image
    crops = np.rint(np.clip(np.asarray(loader()), 0.0, 1.0) * 255).astype(np.uint8)
    cell = TILE + 2 * GAP
    images = []
    for _ in range(count):
        mosaic = np.full((GRID * cell, GRID * cell), 128, dtype=np.uint8)
        for index in range(GRID * GRID):
            crop = crops[rng.integers(0, 100) if rng.random() < 0.75 else rng.integers(100, 200)]
            tile = np.asarray(cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            row, col = divmod(index, GRID)
            mosaic[row * cell + GAP : row * cell + GAP + TILE, col * cell + GAP : col * cell + GAP + TILE] = tile
        images.append(mosaic)
    return images


Detections = list[dict[str, object]]


@pytest.fixture(scope="module")
def detected() -> dict[str, list[tuple[Detections, int]]]:
    """Per condition: each image's detections and its side in pixels."""
    rng = np.random.default_rng(60)
    reference, other = _mosaics(rng, IMAGES), _mosaics(rng, IMAGES)
    detector = HaarFaceDetector()
    found = {
        "reference": [(detector(image), image.shape[0]) for image in reference],
        "unchanged": [(detector(image), image.shape[0]) for image in other],
    }
    for name, degrade in DEGRADATIONS.items():
        degraded = [degrade(image) for image in other]
        found[name] = [(detector(image), image.shape[0]) for image in degraded]
    return found


def _boxes(images: list[tuple[Detections, int]]) -> list[list[Box]]:
    result = []
    for detections, side in images:
        boxes = []
        for d in detections:
            box, confidence = d["box"], d["confidence"]
            assert isinstance(box, list) and isinstance(confidence, float)
            x1, y1, x2, y2 = (float(v) for v in box)
            boxes.append(Box(str(d["class"]), confidence, (x2 - x1) / side, (y2 - y1) / side))
        result.append(boxes)
    return result


@pytest.fixture(scope="module")
def storage(
    detected: dict[str, list[tuple[Detections, int]]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storage]:
    """Each condition on its own day of January 2024 (reference on the 1st)."""
    store = open_storage(f"sqlite:///{tmp_path_factory.mktemp('shift') / 'detwatch.db'}")
    store.migrate()
    first = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 10**9
    batch: list[Prediction] = []
    for day, (condition, images) in enumerate(detected.items()):
        for index, (detections, side) in enumerate(images):
            body = {
                "prediction_id": f"{condition}-{index}",
                "model_id": "faces",
                "time_unix_nano": first + day * DAY_NS + index * 60 * 10**9,
                "image": {"width": side, "height": side},
                "detections": detections,
            }
            batch.append(parse_prediction(body, index=index))
    store.ingest_predictions(batch)
    yield store
    store.close()


def _day(condition: str, detected: dict[str, list[tuple[Detections, int]]]) -> str:
    day = 1 + list(detected).index(condition)
    return f"2024-01-{day:02d}:2024-01-{day:02d}"


@pytest.mark.parametrize("condition", sorted(DEGRADATIONS))
def test_degraded_images_drift_significantly_and_name_the_face_class(
    condition: str, storage: Storage, detected: dict[str, list[tuple[Detections, int]]]
) -> None:
    report = drift_report(storage, "faces", _day("reference", detected), _day(condition, detected))
    significant = [f"{f.kind}[{f.subject}] {f.effect_method}={f.effect:.3f}" for f in report.findings if f.significant]
    print(
        f"{condition}: {report.current.detections_per_image:.2f} faces/image "
        f"(reference {report.reference.detections_per_image:.2f}), significant: {significant}"
    )
    assert report.reference.images == report.current.images == IMAGES
    assert report.status == "drift"
    assert report.significant_drift
    assert report.affected_classes == ("face",)


def test_other_images_of_the_same_condition_do_not_drift(
    storage: Storage, detected: dict[str, list[tuple[Detections, int]]]
) -> None:
    report = drift_report(storage, "faces", _day("reference", detected), _day("unchanged", detected))
    assert report.status == "no_drift"
    assert not report.significant_drift
    assert report.affected_classes == ()


def test_200_random_splits_of_one_unchanged_stream_stay_within_alpha(
    detected: dict[str, list[tuple[Detections, int]]],
) -> None:
    pool = _boxes(detected["reference"] + detected["unchanged"])
    rng = np.random.default_rng(61)
    runs, alpha = 200, 0.05
    alarms = floorless = 0
    no_floor = DriftConfig(alpha=alpha, min_ks=0.0, min_jensen_shannon=0.0, min_cohen_h=0.0, min_rate_ratio=1.0)
    for _ in range(runs):
        order = rng.permutation(len(pool))
        half = len(pool) // 2
        reference = bin_images(pool[i] for i in order[:half])
        current = bin_images(pool[i] for i in order[half:])
        alarms += compare(reference, current, DriftConfig(alpha=alpha)).significant_drift
        floorless += compare(reference, current, no_floor).significant_drift
    print(f"real detector, {runs} null splits of {len(pool)} images: {alarms} false alarms, {floorless} without floors")
    assert floorless <= stats.binom.ppf(0.99, runs, alpha)
    assert alarms <= floorless


def test_the_mosaics_are_real_images_with_known_faces(detected: dict[str, list[tuple[Detections, int]]]) -> None:
    per_image = [len(d) for d, _ in detected["reference"]]
    assert 8 <= np.mean(per_image) <= 16  # about 12 of the 16 tiles hold a face
    assert Path(cv2.data.haarcascades).is_dir()
