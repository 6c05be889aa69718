"""The confidence calibration: weighted isotonic, per class, on the COCO matches.

The fit is checked against a pool-adjacent-violators written out here (the textbook
algorithm, nothing shared with the code under test), and the weighting against a
simulated queue that over-samples hard images: there the unweighted map is biased low
and the weighted one recovers production's.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from detwatch.quality import Detection, GroundTruth, LabelledImage, calibrate, fit_isotonic


def _pava(y: list[float], w: list[float]) -> list[float]:
    """Weighted pool-adjacent-violators, the textbook way: merge blocks while one falls."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(y, w, strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    return [m for m, _, c in blocks for _ in range(int(c))]


@pytest.mark.parametrize("seed", range(20))
def test_the_fit_equals_a_direct_weighted_pava(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 15))
    x = np.sort(rng.choice(np.arange(100) / 100, size=n, replace=False))
    y = (rng.random(n) < x).astype(float)
    w = rng.uniform(0.1, 5.0, size=n)
    perm = rng.permutation(n)  # the fit sorts by confidence itself
    knots, fitted = fit_isotonic(x[perm], y[perm], w[perm])
    assert knots.tolist() == x.tolist()
    assert fitted == pytest.approx(_pava(y.tolist(), w.tolist()))


def test_equal_confidences_are_one_point_with_their_weighted_mean() -> None:
    knots, fitted = fit_isotonic([0.3, 0.3, 0.3, 0.9], [1.0, 0.0, 0.0, 1.0], [2.0, 1.0, 1.0, 1.0])
    assert knots.tolist() == [0.3, 0.9]
    assert fitted.tolist() == pytest.approx([0.5, 1.0])


def test_zero_weights_are_left_out_and_bad_weights_refused() -> None:
    knots, fitted = fit_isotonic([0.2, 0.5, 0.8], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    assert knots.tolist() == [0.5, 0.8]
    assert fitted.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        fit_isotonic([0.1], [1.0], [-1.0])
    with pytest.raises(ValueError):
        fit_isotonic([0.1, 0.2], [1.0], [1.0])


def _box(x: float) -> tuple[float, float, float, float]:
    return (x, 0.0, x + 10.0, 10.0)


def _simulate(rng: np.random.Generator, n: int) -> tuple[list[tuple[LabelledImage, float]], list[bool]]:
    """Images whose boxes are right with chance ``conf`` (easy) or ``conf / 3`` (hard); hard ones are queued always."""
    sample: list[tuple[LabelledImage, float]] = []
    hard_flags: list[bool] = []
    for i in range(n):
        hard = bool(rng.random() < 0.1)
        p = 1.0 if hard else 0.05
        if rng.random() >= p:
            continue
        detections: list[Detection] = []
        labels: list[GroundTruth] = []
        for k in range(4):
            conf = float(rng.uniform(0.05, 0.95))
            right = rng.random() < (conf / 3 if hard else conf)
            detections.append(Detection("car", conf, _box(100.0 * k)))
            # a right box has its reviewer box on it; a wrong one has none anywhere near
            if right:
                labels.append(GroundTruth("car", _box(100.0 * k)))
        sample.append((LabelledImage(f"i{i}", tuple(detections), tuple(labels)), p))
        hard_flags.append(hard)
    return sample, hard_flags


def test_the_calibration_is_monotone_per_class_and_matches_the_coco_outcome() -> None:
    rng = np.random.default_rng(7)
    images = []
    for i in range(60):
        dets = [Detection("car", float(rng.random()), _box(0.0)), Detection("dog", float(rng.random()), _box(50.0))]
        labels = [GroundTruth("car", _box(0.0))] if rng.random() < 0.5 else []
        images.append((LabelledImage(f"i{i}", tuple(dets), tuple(labels)), 0.5))
    calibration = calibrate(images)
    assert set(calibration) == {"car", "dog"}
    assert calibration["dog"](np.linspace(0, 1, 11)).tolist() == [0.0] * 11  # never labelled: never right
    car = calibration["car"]
    assert car.n_images == 60 and car.n_detections == 60
    assert np.all(np.diff(car.probability) >= 0)
    grid: NDArray[np.float64] = np.linspace(0, 1, 101)
    assert np.all(np.diff(car(grid)) >= -1e-12)


def test_weights_make_the_calibration_production_s_where_the_queue_over_samples_hard_images() -> None:
    rng = np.random.default_rng(11)
    sample, hard = _simulate(rng, 40_000)
    assert sum(hard) > len(hard) / 2  # the queue is mostly hard images, production mostly easy
    weighted = calibrate(sample)["car"]
    unweighted = calibrate([(image, 1.0) for image, _ in sample])["car"]
    grid = np.linspace(0.2, 0.8, 25)
    truth = 0.9 * grid + 0.1 * grid / 3
    # a pointwise isotonic fit is noisy (a few hundred easy images at each confidence): judge the map on average
    assert np.abs(weighted(grid) - truth).mean() < 0.04
    assert np.mean(unweighted(grid) - truth) < -0.1  # the queue's map says the model is worse than it is
