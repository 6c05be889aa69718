"""A/A calibration and power of the A/B results when detections of one image move together.

The model (image-level random effects): each arm gets 300 images over the test's 7
days (a uniform hour each); an image has 1 + Poisson(9) detections; it draws its mean
confidence from N(0.7, 0.12) and its detections scatter around that mean with sd
``0.12 * sqrt((1 - rho) / rho)``, so that the intra-image correlation of confidences
is ``rho`` (at ``rho`` 0: no image effect, detections N(0.7, 0.12)). Classes follow
the same structure: an image draws its class probabilities from a Dirichlet around
(0.6, 0.3, 0.1) whose intra-image correlation is ``rho``.

Cells are built per hour from the simulated images exactly as ingest sums them
(``tests/test_clustered.py`` checks the stored sums against raw images on both
backends), then :func:`compute_results` reads them like the service does. "Old"
cells have no per-image sums: the results then take detections as independent, which
is what every result assumed before the per-image sums existed.

Daily peeking: the verdict is read once, at the end. That is the same as reading it
every day: the always-valid p-value is the running minimum over every hourly look, so
a winner declared on any day is still a winner at the end (the arms reach
``min_samples`` by then), and a winner at the end was read on the last day.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from detwatch.abtest.config import parse_config
from detwatch.abtest.outcomes import ABResults
from detwatch.abtest.results import ArmData, compute_results
from detwatch.stats.clustered import ImageSums

DAY_NS: Final = 86_400 * 1_000_000_000
HOURS: Final = 7 * 24
IMAGES: Final = 300
CLASSES: Final = ("car", "person", "truck")
SHARES: Final = np.array([0.6, 0.3, 0.1])
ALPHA: Final = 0.05
CONFIG: Final = parse_config({"traffic_split": 0.5, "metrics": ["confidence", "class_mix"], "duration_days": 7})
TEST: Final = {
    "id": "t", "name": "A/A", "model_a_id": "a", "model_b_id": "b", "start_unix_nano": 0, "end_unix_nano": 7 * DAY_NS,
}  # fmt: skip

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def simulate_arm(rng: np.random.Generator, rho: float, shift: float) -> tuple[Ints, Ints, Ints, Floats, Ints]:
    """(hour of each image, detections per image, image of each detection, confidences, classes)."""
    hours = rng.integers(0, HOURS, IMAGES)
    m = 1 + rng.poisson(9, IMAGES)
    image_sd, detection_sd = (0.12, 0.12 * math.sqrt((1 - rho) / rho)) if rho > 0 else (0.0, 0.12)
    mean = 0.7 + shift + rng.normal(0.0, image_sd, IMAGES)
    image = np.repeat(np.arange(IMAGES), m)
    confidence = mean[image] + rng.normal(0.0, detection_sd, image.size)
    p = rng.dirichlet(SHARES * (1 - rho) / rho, size=IMAGES) if rho > 0 else np.tile(SHARES, (IMAGES, 1))
    cumulative = np.cumsum(p, axis=1)[image]
    classes = (rng.random(image.size)[:, None] > cumulative[:, :-1]).sum(axis=1)
    return hours, m, image, confidence, classes


def arm_data(simulated: tuple[Ints, Ints, Ints, Floats, Ints], *, per_image: bool) -> ArmData:
    """The arm's hourly and per-class cells, with per-image sums or (``per_image`` False) as stored before them."""
    hours, m, image, y, classes = simulated
    s = np.bincount(image, weights=y, minlength=IMAGES)
    q = np.bincount(image, weights=y * y, minlength=IMAGES)
    mf = m.astype(np.float64)
    data = ArmData()
    for hour in np.unique(hours):
        k = hours == hour
        n, total, squares = mf[k].sum(), s[k].sum(), q[k].sum()
        at = int(hour) * 3600
        data.add_hour_sum(at, "images", ImageSums(int(k.sum()), n, float((mf[k] ** 2).sum())))
        data.add_hour_sum(at, "detections", ImageSums.independent_items(n, total, squares))
        if per_image:
            n2 = float((mf[k] ** 2).sum())
            cell = ImageSums(
                n, total, squares, int(k.sum()), n2, float((s[k] ** 2).sum()), float((mf[k] * s[k]).sum()), n2
            )
            data.add_hour_sum(at, "confidence_all", cell)
    for c, name in enumerate(CLASSES):
        mask = classes == c
        if not mask.any():
            continue
        n_c = np.bincount(image[mask], minlength=IMAGES).astype(np.float64)
        s_c = np.bincount(image[mask], weights=y[mask], minlength=IMAGES)
        squares = float((y[mask] ** 2).sum())
        if per_image:
            sums = ImageSums(
                n_c.sum(), s_c.sum(), squares, int((n_c > 0).sum()), float((n_c**2).sum()), float((s_c**2).sum()),
                float((n_c * s_c).sum()), float((n_c * mf).sum()),
            )  # fmt: skip
        else:
            sums = ImageSums.independent_items(n_c.sum(), s_c.sum(), squares)
        data.add_key_sum("detections", name, sums)
    return data


def run(rng: np.random.Generator, rho: float, shift: float, *, per_image: bool) -> ABResults:
    a, b = simulate_arm(rng, rho, 0.0), simulate_arm(rng, rho, shift)
    return compute_results(
        test=TEST, config=CONFIG, arm_a=arm_data(a, per_image=per_image), arm_b=arm_data(b, per_image=per_image),
        feedback=[], now_unix_nano=7 * DAY_NS,
    )  # fmt: skip


def rates(rho: float, shift: float, reps: int, *, per_image: bool, seed: int) -> dict[str, float]:
    """Share of runs with a winner, a fixed-horizon Welch p < alpha, a class-mix p < alpha."""
    rng = np.random.default_rng(seed)
    winners = welch = mix = 0
    ess: list[float] = []
    for _ in range(reps):
        r = run(rng, rho, shift, per_image=per_image)
        winners += r.verdict in ("a_better", "b_better")
        conf = r.comparisons["confidence"]
        welch += conf.p_value_fixed_horizon < ALPHA
        mix += r.comparisons["class_mix"].p_value_fixed_horizon < ALPHA
        ess.append(conf.effective_sample_size[0])
    return {"winner": winners / reps, "welch": welch / reps, "class_mix": mix / reps, "ess": float(np.mean(ess))}


def upper(reps: int) -> float:
    """The most false alarms of ``reps`` runs a test at level alpha gives, at the binomial 99% bound."""
    return float(stats.binom.ppf(0.99, reps, ALPHA)) / reps


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_aa_tests_keep_alpha_with_the_image_as_unit_and_did_not_without(rho: float) -> None:
    reps = 200
    new = rates(rho, 0.0, reps, per_image=True, seed=11)
    old = rates(rho, 0.0, reps, per_image=False, seed=11)
    print(f"\nA/A rho={rho}: per-image sums {new}; independence {old}; bound {upper(reps):.3f}")
    for key in ("winner", "welch", "class_mix"):
        assert new[key] <= upper(reps), (key, new)
    if rho >= 0.5:
        # The same runs with detections taken as independent: false winners far above alpha.
        assert old["winner"] > 3 * upper(reps)
        assert old["welch"] > 3 * upper(reps)
        assert old["class_mix"] > 3 * upper(reps)
        assert new["ess"] < 0.5 * IMAGES * 10  # the evidence is worth far fewer detections than counted


def test_power_with_a_real_difference_before_and_after() -> None:
    """B's images are 0.03 more confident: detection rates of the verdict and of Welch, both ways.

    "Before" (independence) detects more only because it also declares winners where
    there are none (the test above); "after" is the power that keeps alpha.
    """
    reps = 60
    table = []
    for rho in (0.0, 0.5, 0.9):
        new = rates(rho, 0.03, reps, per_image=True, seed=5)
        old = rates(rho, 0.03, reps, per_image=False, seed=5)
        table.append((rho, old["winner"], new["winner"], old["welch"], new["welch"]))
    print("\nrho  winner(before)  winner(after)  welch(before)  welch(after)")
    for row in table:
        print("{:.1f}  {:14.2f}  {:13.2f}  {:13.2f}  {:12.2f}".format(*row))
    by_rho = {row[0]: row for row in table}
    assert by_rho[0.0][2] >= 0.9  # independent detections: no power lost
    assert by_rho[0.5][2] >= 0.3 and by_rho[0.5][4] >= 0.6
    assert by_rho[0.9][2] >= 0.3 and by_rho[0.9][4] >= 0.6
