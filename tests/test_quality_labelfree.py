"""Precision without labels: the calibration applied to a period's confidence histograms.

The coverage test simulates what the estimate is for: traffic whose detections of one
image move together (a latent difficulty per image lowers all its confidences), each
detection right with a known chance given its confidence, a review queue that takes
low-confidence images ten times as often as the rest, labelled with the truth. From the
labelled sample and a fresh period's histograms only, the 95 % interval covers the
fresh period's true precision about 95 % of the time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.quality import Detection, GroundTruth, LabelledImage, estimate_precision


def _truth(confidence: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.05 + 0.9 * confidence**1.5


def _stream(
    rng: np.random.Generator, n: int, shift: float = 0.0
) -> list[tuple[NDArray[np.float64], NDArray[np.bool_]]]:
    """Per image: its detections' confidences and whether each is right."""
    images = []
    for _ in range(n):
        difficulty = rng.normal()
        k = 1 + int(rng.poisson(2.0))
        confidence = 1 / (1 + np.exp(-(0.8 - shift - 0.9 * difficulty + 0.7 * rng.normal(size=k))))
        images.append((confidence, rng.random(k) < _truth(confidence)))
    return images


def _histogram(stream: list[tuple[NDArray[np.float64], NDArray[np.bool_]]]) -> NDArray[np.float64]:
    confidence = np.concatenate([c for c, _ in stream])
    cell = np.minimum((confidence / bins.CONFIDENCE_WIDTH).astype(np.intp), bins.CONFIDENCE_BINS - 1)
    return np.bincount(cell, minlength=bins.CONFIDENCE_BINS).astype(np.float64)


def _labelled(
    rng: np.random.Generator, stream: list[tuple[NDArray[np.float64], NDArray[np.bool_]]]
) -> list[tuple[LabelledImage, float]]:
    """The queue's sample: low-confidence images at 0.4, the rest at 0.04, each labelled with the truth."""
    sample = []
    for i, (confidence, right) in enumerate(stream):
        p = 0.4 if confidence.min() < 0.5 else 0.04
        if rng.random() >= p:
            continue
        boxes = [(20.0 * k, 0.0, 20.0 * k + 10.0, 10.0) for k in range(confidence.size)]
        detections = tuple(Detection("car", float(c), b) for c, b in zip(confidence, boxes, strict=True))
        labels = tuple(GroundTruth("car", b) for b, r in zip(boxes, right, strict=True) if r)
        sample.append((LabelledImage(f"i{i}", detections, labels), p))
    return sample


def _precision(stream: list[tuple[NDArray[np.float64], NDArray[np.bool_]]]) -> float:
    return float(np.concatenate([r for _, r in stream]).mean())


def test_the_interval_covers_a_fresh_period_s_true_precision_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2026)
    covered = 0
    errors = []
    reps = 200
    for rep in range(reps):
        sample = _labelled(rng, _stream(rng, 2000))
        period = _stream(rng, 1500)
        result = estimate_precision(sample, {"car": _histogram(period)}, resamples=80, seed=rep)
        truth = _precision(period)
        low, high = result.classes["car"].ci
        covered += low <= truth <= high
        errors.append(result.classes["car"].estimate - truth)
    print(f"coverage {covered / reps:.3f}, mean error {np.mean(errors):+.4f}")
    assert 0.90 <= covered / reps <= 0.99, covered / reps
    assert abs(float(np.mean(errors))) < 0.01


def test_the_estimate_counts_false_positives_and_is_trusted_on_the_calibration_s_own_traffic() -> None:
    rng = np.random.default_rng(5)
    sample = _labelled(rng, _stream(rng, 4000))
    period = _stream(rng, 3000)
    histogram = _histogram(period)
    result = estimate_precision(sample, {"car": histogram}, resamples=100)
    car = result.classes["car"]
    assert car.trusted and car.reason is None
    assert car.detections == int(histogram.sum())
    assert abs(car.estimate - _precision(period)) < 0.03
    assert car.expected_false_positives == pytest.approx(car.detections * (1 - car.estimate))
    assert result.overall.estimate == car.estimate and result.overall.trusted


def test_a_shifted_period_too_few_labels_and_an_uncalibrated_class_are_not_trusted() -> None:
    rng = np.random.default_rng(9)
    sample = _labelled(rng, _stream(rng, 4000))
    dark = estimate_precision(sample, {"car": _histogram(_stream(rng, 3000, shift=1.5))}, resamples=50)
    assert not dark.classes["car"].trusted
    assert "confidence distribution" in (dark.classes["car"].reason or "")
    assert not dark.overall.trusted

    few = estimate_precision(sample[:10], {"car": _histogram(_stream(rng, 3000))}, resamples=50)
    assert not few.classes["car"].trusted
    assert "labelled images" in (few.classes["car"].reason or "")

    unknown = estimate_precision(sample, {"dog": np.ones(bins.CONFIDENCE_BINS)}, resamples=50)
    assert math.isnan(unknown.classes["dog"].estimate) and not unknown.classes["dog"].trusted
    assert not unknown.overall.trusted and math.isnan(unknown.overall.estimate)


def _sure_sample(images: int = 200) -> list[tuple[LabelledImage, float]]:
    """A class right 98 % of the time at confidence 0.92: one detection an image, every 50th image wrong."""
    box = (0.0, 0.0, 10.0, 10.0)
    return [
        (LabelledImage(f"i{i}", (Detection("car", 0.92, box),), (GroundTruth("car", box),) if i % 50 else ()), 1.0)
        for i in range(images)
    ]


def _at_092(count: int) -> NDArray[np.float64]:
    histogram = np.zeros(bins.CONFIDENCE_BINS)
    histogram[bins.confidence_bin(0.92)] = count
    return histogram


def test_a_resample_s_true_positives_stay_within_the_period_s_detections() -> None:
    """The binomial draw is normal: near a precision of 1 it would reach past 1 (the route's shape says le=1)."""
    result = estimate_precision(_sure_sample(), {"car": _at_092(40)}, seed=3)
    car = result.classes["car"]
    assert car.estimate == pytest.approx(0.98)
    low, high = car.ci
    assert 0.0 <= low < car.estimate < high <= 1.0
    assert high == 1.0  # clipped: unclipped, 0.98 + 1.96 * sqrt(0.98 * 0.02 / 40) is 1.02
    assert result.overall.ci[0] >= 0.0 and result.overall.ci[1] <= 1.0


def test_a_period_with_fewer_than_30_detections_of_a_class_is_not_trusted() -> None:
    sample = _sure_sample()
    enough = estimate_precision(sample, {"car": _at_092(30)}, resamples=50)
    assert enough.classes["car"].trusted and enough.overall.trusted
    few = estimate_precision(sample, {"car": _at_092(29)}, resamples=50)
    assert not few.classes["car"].trusted and not few.overall.trusted
    assert "29 detections of the class (fewer than 30)" in (few.classes["car"].reason or "")
    assert "29 detections (fewer than 30)" in (few.overall.reason or "")
    assert few.classes["car"].estimate == enough.classes["car"].estimate  # the figure stays; only trust goes
    # A rare class does not make the overall figure untrusted where the period holds enough in all.
    bus = [(LabelledImage(f"b{i}", (Detection("bus", 0.92, b := (0.0, 0.0, 9.0, 9.0)),), (GroundTruth("bus", b),)), 1.0)
           for i in range(200)]  # fmt: skip
    mixed = estimate_precision(sample + bus, {"car": _at_092(100), "bus": _at_092(5)}, resamples=50)
    assert not mixed.classes["bus"].trusted and mixed.classes["car"].trusted
    assert mixed.overall.trusted and mixed.overall.detections == 105
