"""The verdict is calibrated: few false alarms under no drift at any size, obvious shifts caught on small samples.

Null runs compare two independent samples of one stream (detections clustered in
images, intra-image correlation 0.1 on the confidence logit). The false-alarm count
of ``significant_drift`` over N runs must stay within what a true rate of alpha
allows: at most the 99th percentile of Binomial(N, alpha). Runs are bounded (a few
seconds in all) and seeded.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from _drift_samples import Stream, bin_images, simulate, simulate_binned, vector_bins
from detwatch.contract import bins
from detwatch.drift import DriftConfig, compare

RUNS = 200
ALPHA = 0.05
ALLOWED = int(stats.binom.ppf(0.99, RUNS, ALPHA))
"""17 of 200: a true false-alarm rate of 5 % exceeds this once in a hundred suites."""
NO_FLOOR = DriftConfig(alpha=ALPHA, min_ks=0.0, min_jensen_shannon=0.0, min_cohen_h=0.0, min_rate_ratio=1.0)
"""Significance alone: shows the p-values (after Holm) are valid, not just that the floors hide noise."""


def test_the_vectorised_simulation_bins_exactly_as_detwatch_bins() -> None:
    rng = np.random.default_rng(0)
    confidence, area, ratio = rng.uniform(0, 1, 2000), 10 ** rng.uniform(-6, 0.5, 2000), 2 ** rng.uniform(-5, 5, 2000)
    conf_bin, area_bin, aspect_bin = vector_bins(confidence, area, ratio)
    assert list(conf_bin) == [bins.confidence_bin(c) for c in confidence]
    assert list(area_bin) == [bins.area_bin(a) for a in area]
    assert list(aspect_bin) == [bins.aspect_bin(float(np.sqrt(r)), float(1 / np.sqrt(r))) for r in ratio]


OVERDISPERSED = replace(Stream(), extra_empty=0.3, mean_detections=6.0)
"""Three in ten images empty, the others crowded: detections per image vary far more than Poisson."""


@pytest.mark.parametrize(
    ("images", "seed", "stream"),
    [(60, 10, Stream()), (1_000, 11, Stream()), (300, 13, OVERDISPERSED)],
    ids=["60-images", "1k-images", "300-overdispersed"],
)
def test_false_alarm_rate_under_no_drift_stays_within_alpha(images: int, seed: int, stream: Stream) -> None:
    rng = np.random.default_rng(seed)
    alarms = floorless_alarms = 0
    for _ in range(RUNS):
        reference, current = simulate_binned(stream, images, rng), simulate_binned(stream, images, rng)
        alarms += compare(reference, current, DriftConfig(alpha=ALPHA)).significant_drift
        floorless_alarms += compare(reference, current, NO_FLOOR).significant_drift
    print(f"{images} images/side: {alarms}/{RUNS} false alarms, {floorless_alarms}/{RUNS} without effect floors")
    assert floorless_alarms <= ALLOWED
    assert alarms <= floorless_alarms


def test_at_a_million_detections_the_floors_keep_a_null_quiet() -> None:
    """Large samples: every tiny difference is significant, none is material."""
    rng = np.random.default_rng(13)
    alarms = 0
    for _ in range(3):
        alarms += compare(
            simulate_binned(Stream(), 350_000, rng), simulate_binned(Stream(), 350_000, rng)
        ).significant_drift
    assert alarms == 0


SHIFTS = {
    "confidence": replace(Stream(), confidence_logit=0.0),  # mean confidence about 0.8 -> 0.5
    "new_class": replace(Stream(), classes=("car", "person", "truck", "scooter"), shares=(0.4, 0.2, 0.1, 0.3)),
    "empty_images": replace(Stream(), extra_empty=0.4),  # 5 % -> 43 % empty
    "box_area": replace(Stream(), log10_area=-3.0),  # boxes ten times smaller
}


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_an_obvious_shift_on_40_images_is_detected(shift: str) -> None:
    rng = np.random.default_rng(20)
    detected = 0
    for _ in range(20):
        report = compare(bin_images(simulate(Stream(), 40, rng)), bin_images(simulate(SHIFTS[shift], 40, rng)))
        assert report.status != "insufficient_data"
        detected += report.significant_drift
    assert detected >= 19, f"{shift}: {detected}/20"
