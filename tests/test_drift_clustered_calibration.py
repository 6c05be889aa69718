"""Null-split calibration and power of drift reports when detections of one image move together.

The model (image-level random effects), one period = 300 images, each with 1 +
Poisson(9) detections:

- confidence: the image draws its mean from N(0.7, 0.12), its detections scatter
  around it with sd ``0.12 * sqrt((1 - rho) / rho)`` (clipped to [0.001, 0.999]);
- classes: the image draws its class probabilities from a Dirichlet around
  (0.6, 0.3, 0.1) whose intra-image correlation is ``rho``;
- box size and shape: log10 relative area N(-2, 0.3) and log2 aspect N(0, 0.5) per
  image, boxes scattered around them with the same ``rho``;

at ``rho`` 0 (no image effect: detections independent), 0.5 and 0.9. A null split
compares two periods drawn from the same model. "Old" reports are built from the same
samples without per-image sums and with the former fixed ``intra_image_correlation``
0.1: what every report computed before the per-image sums existed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

import numpy as np
import pytest
from scipy import stats

from _drift_samples import vector_bins, vector_sums
from detwatch.contract import bins
from detwatch.drift import DriftConfig, PeriodSample, compare
from detwatch.stats.clustered import ImageSums

IMAGES: Final = 300
CLASSES: Final = ("car", "person", "truck")
SHARES: Final = (0.6, 0.3, 0.1)
SHIFTED: Final = (0.5, 0.35, 0.15)
ALPHA: Final = 0.05
NO_FLOOR: Final = DriftConfig(alpha=ALPHA, min_ks=0.0, min_jensen_shannon=0.0, min_cohen_h=0.0, min_rate_ratio=1.0)
"""Significance alone: shows the p-values (after Holm) are valid, not just that the floors hide noise."""
OLD: Final = 0.1
"""The former fixed intra-image correlation."""


def _split(rho: float, sd: float) -> tuple[float, float]:
    """(image sd, detection sd) of a total variance sd^2 split at intra-image correlation ``rho``."""
    return sd * math.sqrt(rho), sd * math.sqrt(1.0 - rho)


def simulate(rng: np.random.Generator, rho: float, shares: tuple[float, ...] = SHARES) -> PeriodSample:
    """One period of the model, binned and summed per image as ingest stores it."""
    m = 1 + rng.poisson(9, IMAGES)
    image = np.repeat(np.arange(IMAGES), m)
    total = image.size
    detection_sd = 0.12 * math.sqrt((1 - rho) / rho) if rho > 0 else 0.12
    mean = 0.7 + (rng.normal(0.0, 0.12, IMAGES) if rho > 0 else np.zeros(IMAGES))
    confidence = np.clip(mean[image] + rng.normal(0.0, detection_sd, total), 0.001, 0.999)
    p = np.asarray(shares)
    probabilities = rng.dirichlet(p * (1 - rho) / rho, size=IMAGES) if rho > 0 else np.tile(p, (IMAGES, 1))
    cumulative = np.cumsum(probabilities, axis=1)[image]
    names = (rng.random(total)[:, None] > cumulative[:, :-1]).sum(axis=1)
    area_image, area_box = _split(rho, 0.3)
    log_area = -2.0 + rng.normal(0.0, area_image, IMAGES)[image] + rng.normal(0.0, area_box, total)
    aspect_image, aspect_box = _split(rho, 0.5)
    log_aspect = rng.normal(0.0, aspect_image, IMAGES)[image] + rng.normal(0.0, aspect_box, total)
    conf_bin, area_bin, aspect_bin = vector_bins(confidence, 10.0**log_area, 2.0**log_aspect)
    classes, conf_tables, area_tables, class_sums = {}, {}, {}, {}
    for k, name in enumerate(CLASSES):
        mask = names == k
        if mask.any():
            classes[name] = int(mask.sum())
            conf_tables[name] = np.bincount(conf_bin[mask], minlength=bins.CONFIDENCE_BINS).astype(np.int64)
            area_tables[name] = np.bincount(area_bin[mask], minlength=bins.AREA_BINS).astype(np.int64)
            class_sums[name] = vector_sums(image[mask], confidence[mask], IMAGES, m)
    per_image = np.bincount(np.minimum(m, bins.DETECTIONS_OPEN_BIN), minlength=bins.DETECTIONS_OPEN_BIN + 1)
    return PeriodSample(
        IMAGES, 0, total, float(np.sum(m.astype(np.float64) ** 2)), classes, conf_tables, per_image.astype(np.int64),
        area_tables, np.bincount(aspect_bin, minlength=bins.ASPECT_BINS).astype(np.int64),
        confidence_sums=vector_sums(image, confidence, IMAGES, m), class_sums=class_sums,
        area_sums=vector_sums(image, log_area, IMAGES, m), aspect_sums=vector_sums(image, log_aspect, IMAGES, m),
    )  # fmt: skip


def without_sums(sample: PeriodSample) -> PeriodSample:
    """The sample as cells stored before the per-image sums existed give it."""
    return replace(sample, confidence_sums=ImageSums(), class_sums={}, area_sums=ImageSums(), aspect_sums=ImageSums())


def alarm_rates(rho: float, runs: int, *, shares: tuple[float, ...] = SHARES, seed: int) -> dict[str, float]:
    """Share of runs flagged ``significant_drift`` (with and without floors), new and old statistics."""
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(("new", "new_no_floor", "old", "old_no_floor", "new_class_mix", "old_class_mix"), 0)
    old_config, old_no_floor = DriftConfig(intra_image_correlation=OLD), replace(NO_FLOOR, intra_image_correlation=OLD)
    for _ in range(runs):
        reference, current = simulate(rng, rho), simulate(rng, rho, shares)
        new = compare(reference, current, NO_FLOOR)
        old = compare(without_sums(reference), without_sums(current), old_no_floor)
        counts["new"] += compare(reference, current).significant_drift
        counts["old"] += compare(without_sums(reference), without_sums(current), old_config).significant_drift
        counts["new_no_floor"] += new.significant_drift
        counts["old_no_floor"] += old.significant_drift
        counts["new_class_mix"] += next(f.p_value for f in new.findings if f.kind == "class_mix") < ALPHA
        counts["old_class_mix"] += next(f.p_value for f in old.findings if f.kind == "class_mix") < ALPHA
    return {key: value / runs for key, value in counts.items()}


def bound(runs: int) -> float:
    """The most false alarms a level-alpha test gives in ``runs``, at the binomial 99% bound."""
    return float(stats.binom.ppf(0.99, runs, ALPHA)) / runs


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_null_splits_keep_alpha_with_measured_clustering_and_did_not_with_a_fixed_one(rho: float) -> None:
    runs = 200
    rates = alarm_rates(rho, runs, seed=21)
    print(f"\nnull splits, rho={rho}: {rates}; bound {bound(runs):.3f}")
    assert rates["new_no_floor"] <= bound(runs)
    assert rates["new"] <= bound(runs)
    assert rates["new_class_mix"] <= bound(runs)
    if rho >= 0.5:
        # The same splits with the fixed correlation of 0.1: p-values far too small.
        assert rates["old_no_floor"] > 3 * bound(runs)
        assert rates["old_class_mix"] > 3 * bound(runs)


def test_a_class_mix_shift_is_detected_before_and_after() -> None:
    """Shares (0.6, 0.3, 0.1) -> (0.5, 0.35, 0.15): detection rates of the class-mix test and the verdict."""
    runs = 60
    print("\nrho  class_mix p<alpha (before, after)  significant_drift without floors (before, after)")
    table = {}
    for rho in (0.0, 0.5, 0.9):
        rates = alarm_rates(rho, runs, shares=SHIFTED, seed=22)
        table[rho] = rates
        print(
            f"{rho:.1f}  {rates['old_class_mix']:.2f}, {rates['new_class_mix']:.2f}"
            f"  {rates['old_no_floor']:.2f}, {rates['new_no_floor']:.2f}"
        )
    assert table[0.0]["new_class_mix"] >= 0.9  # independent detections: nothing lost
    assert table[0.5]["new_class_mix"] >= 0.3
