"""Drift statistics against SciPy on the same raw data, and binned against exact within stated bounds.

Every expected value here is computed by SciPy (or by the definition, in numpy) from
the raw observations; the code under test only ever sees their bin counts.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial.distance import jensenshannon

from _drift_samples import Box, Stream, bin_images, simulate
from detwatch.contract import bins
from detwatch.drift import DriftConfig, PeriodSample, compare
from detwatch.drift._statistics import (
    PSI_PSEUDOCOUNT,
    jensen_shannon_distance,
    kolmogorov_smirnov,
    population_stability_index,
    rate_test,
    wasserstein,
)
from detwatch.stats.contingency import chi_square_homogeneity
from detwatch.stats.multiple_testing import holm
from detwatch.stats.proportions import two_proportion_test

EDGES = np.array(bins.confidence_edges())
CENTRES = (EDGES[:-1] + EDGES[1:]) / 2


def binned(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """Confidence bin counts through detwatch.contract.bins, the function ingest uses."""
    counts = np.zeros(bins.CONFIDENCE_BINS, dtype=np.int64)
    for value in values:
        counts[bins.confidence_bin(float(value))] += 1
    return counts


def test_class_mix_test_is_scipy_chi2_contingency_and_jensenshannon_on_the_raw_labels() -> None:
    rng = np.random.default_rng(1)
    names = np.array(["bus", "car", "person", "truck"])
    a = rng.choice(names, size=700, p=[0.1, 0.5, 0.3, 0.1])
    b = rng.choice(names, size=900, p=[0.12, 0.44, 0.32, 0.12])
    labels = sorted(set(a) | set(b))
    table = np.array([[np.sum(a == n) for n in labels], [np.sum(b == n) for n in labels]])
    expected = stats.chi2_contingency(table, correction=False)
    result = chi_square_homogeneity(table[0], table[1])
    assert result.pooled == 0
    assert result.dof == expected.dof
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert jensen_shannon_distance(table[0], table[1]) == pytest.approx(
        jensenshannon(table[0], table[1], base=2), rel=1e-9
    )


def test_class_mix_test_pools_rare_classes_before_the_chi_square() -> None:
    # Ten classes seen once or twice on one side only: alone they would add large terms over tiny expectations.
    a = np.array([400, 300] + [0] * 10)
    b = np.array([410, 290] + [1, 2] * 5)
    result = chi_square_homogeneity(a, b)
    assert result.pooled == 10
    pooled = np.array([[400, 300, 0], [410, 290, 15]])
    expected = stats.chi2_contingency(pooled, correction=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_binned_ks_is_scipy_ks_2samp_when_the_values_sit_on_the_bin_centres() -> None:
    rng = np.random.default_rng(2)
    for n_a, n_b in [(400, 400), (300, 1200), (5000, 3000)]:
        a = CENTRES[rng.binomial(19, 0.7, size=n_a)]
        b = CENTRES[rng.binomial(19, 0.68, size=n_b)]
        expected = stats.ks_2samp(a, b, method="asymp")
        d, p = kolmogorov_smirnov(binned(a), binned(b))
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_binned_ks_falls_short_of_the_exact_by_at_most_the_heaviest_bin_and_its_p_value_is_conservative() -> None:
    """D_exact - max bin mass <= D_binned <= D_exact, and p_binned >= p_exact (same Smirnov formula)."""
    rng = np.random.default_rng(3)
    gaps = []
    for (alpha_a, beta_a), (alpha_b, beta_b) in itertools.product([(5, 2), (2, 2)], [(5, 2.2), (4, 2), (2, 3)]):
        a, b = rng.beta(alpha_a, beta_a, 2000), rng.beta(alpha_b, beta_b, 1500)
        exact = stats.ks_2samp(a, b, method="asymp")
        counts_a, counts_b = binned(a), binned(b)
        d, p = kolmogorov_smirnov(counts_a, counts_b)
        heaviest = max(counts_a.max() / counts_a.sum(), counts_b.max() / counts_b.sum())
        assert exact.statistic - heaviest - 1e-12 <= d <= exact.statistic + 1e-12
        assert p >= exact.pvalue - 1e-12
        gaps.append(exact.statistic - d)
    # Observed on these smooth confidence distributions: the 20 bins lose little of D.
    assert max(gaps) <= 0.03, gaps


def test_design_effect_divides_the_sample_sizes_of_the_ks_p_value() -> None:
    a, b = np.array([50, 30, 20]), np.array([40, 30, 30])
    d, p = kolmogorov_smirnov(a * 4, b * 4, deff_a=4.0, deff_b=4.0)
    assert (d, p) == pytest.approx(kolmogorov_smirnov(a, b))


def test_wasserstein_on_bin_centres_is_scipy_on_raw_values_within_one_bin_width() -> None:
    rng = np.random.default_rng(4)
    on_centres_a, on_centres_b = CENTRES[rng.integers(0, 20, 500)], CENTRES[rng.integers(5, 20, 800)]
    assert wasserstein(binned(on_centres_a), binned(on_centres_b), CENTRES) == pytest.approx(
        stats.wasserstein_distance(on_centres_a, on_centres_b), rel=1e-9
    )
    errors = []
    for shift in (0.0, 0.05, 0.2):
        a, b = rng.beta(5, 2, 3000), np.clip(rng.beta(5, 2, 3000) - shift, 0, 1)
        error = abs(wasserstein(binned(a), binned(b), CENTRES) - stats.wasserstein_distance(a, b))
        assert error <= bins.CONFIDENCE_WIDTH  # the bound: each sample moves at most half a bin
        errors.append(error)
    assert max(errors) <= 0.01, errors  # observed: far inside the bound


def test_psi_is_the_definition_computed_from_numpy_histograms_of_the_raw_values() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.beta(5, 2, 1000), rng.beta(3, 2, 1200)
    p = np.histogram(a, bins=EDGES)[0] + PSI_PSEUDOCOUNT
    q = np.histogram(b, bins=EDGES)[0] + PSI_PSEUDOCOUNT
    p, q = p / p.sum(), q / q.sum()
    assert population_stability_index(binned(a), binned(b)) == pytest.approx(np.sum((q - p) * np.log(q / p)))


def test_two_proportion_test_is_the_2x2_chi_square_or_fisher_exact_for_small_counts() -> None:
    expected = stats.chi2_contingency([[120, 880], [160, 840]], correction=False).pvalue
    assert two_proportion_test(120, 1000, 160, 1000).p_value == pytest.approx(expected, rel=1e-9)
    assert two_proportion_test(1, 40, 7, 35).p_value == pytest.approx(stats.fisher_exact([[1, 39], [7, 28]]).pvalue)
    # Rare outcomes among many trials: the conditional binomial, Fisher's limit.
    for rare in ([0, 3], [2, 9], [7, 1]):
        fisher = stats.fisher_exact([[rare[0], 10**6 - rare[0]], [rare[1], 2 * 10**6 - rare[1]]]).pvalue
        assert two_proportion_test(rare[0], 10**6, rare[1], 2 * 10**6).p_value == pytest.approx(fisher, rel=0.02)
        flipped = two_proportion_test(10**6 - rare[0], 10**6, 2 * 10**6 - rare[1], 2 * 10**6).p_value
        assert flipped == pytest.approx(fisher, rel=0.02)


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects() -> None:
    rng = np.random.default_rng(6)
    for _ in range(50):
        p = list(np.concatenate([rng.uniform(0, 0.01, rng.integers(0, 5)), rng.uniform(0, 1, rng.integers(1, 15))]))
        adjusted = holm(p)
        for alpha in (0.01, 0.05, 0.1):
            rejected = set()
            for rank, index in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
                if p[index] > alpha / (len(p) - rank):
                    break
                rejected.add(index)
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == rejected


def test_aggregate_cells_merge_into_the_same_sample_as_the_raw_images() -> None:
    """Cells of several hours (kinds and keys as ingest writes them) add up to the binned raw images."""
    rng = np.random.default_rng(7)
    hours = [simulate(Stream(), 40, rng) for _ in range(3)]

    class Cell:
        def __init__(self, kind: str, key: str, count: int, value: float = 0.0, value_sq: float = 0.0) -> None:
            self.kind, self.key, self.count, self.value, self.value_sq = kind, key, count, value, value_sq

    cells = []
    for images in hours:
        sample = bin_images(images)
        cells.append(Cell("images", "", sample.images, float(sample.detections), sample.detections_sq))
        cells.append(Cell("empty_images", "", sample.empty_images))
        cells.append(Cell("unknown_kind", "x", 5))
        for name, count in sample.classes.items():
            cells.append(Cell("detections", name, count))
            for kind, table in (("confidence", sample.confidence), ("box_area", sample.box_area)):
                cells += [Cell(kind, f"{name}|{i}", int(c)) for i, c in enumerate(table[name]) if c]
        cells += [Cell("image_detections", str(i), int(c)) for i, c in enumerate(sample.image_detections) if c]
        cells += [Cell("aspect_ratio", str(i), int(c)) for i, c in enumerate(sample.aspect_ratio) if c]
    merged = PeriodSample.from_cells(cells)
    whole = bin_images([image for images in hours for image in images])
    assert (merged.images, merged.empty_images, merged.detections) == (
        whole.images,
        whole.empty_images,
        whole.detections,
    )
    assert merged.detections_sq == whole.detections_sq
    assert dict(merged.classes) == dict(whole.classes)
    for name in whole.classes:
        assert list(merged.confidence[name]) == list(whole.confidence[name])
        assert list(merged.box_area[name]) == list(whole.box_area[name])
    assert list(merged.image_detections) == list(whole.image_detections)
    assert list(merged.aspect_ratio) == list(whole.aspect_ratio)


def test_a_class_name_with_a_bar_is_split_on_the_last_one() -> None:
    class Cell:
        kind, key, count, value = "confidence", "a|b|7", 3, 2.0

    assert list(PeriodSample.from_cells([Cell()]).confidence["a|b"]) == [0] * 7 + [3] + [0] * 12


# ------------------------------------------------------------------ the report


def boxes(name: str, confidences: list[float], per_image: int = 1) -> list[list[Box]]:
    flat = [Box(name, c, 0.1, 0.1) for c in confidences]
    return [flat[i : i + per_image] for i in range(0, len(flat), per_image)]


def test_report_names_new_and_vanished_classes_and_ranks_affected_ones_by_contribution() -> None:
    rng = np.random.default_rng(8)
    reference = simulate(Stream(classes=("car", "person", "bicycle"), shares=(0.6, 0.3, 0.1)), 400, rng)
    current = simulate(Stream(classes=("car", "person", "scooter"), shares=(0.45, 0.3, 0.25)), 400, rng)
    report = compare(bin_images(reference), bin_images(current))
    assert report.status == "drift"
    assert report.significant_drift
    assert report.new_classes == ("scooter",)
    assert report.vanished_classes == ("bicycle",)
    # Contribution, recomputed from the raw detections: half the L1 gap of (class, bin) shares.
    joint: dict[tuple[str, int], list[float]] = {}
    for side, images in enumerate((reference, current)):
        total = sum(len(i) for i in images)
        for image in images:
            for box in image:
                joint.setdefault((box.name, bins.confidence_bin(box.confidence)), [0.0, 0.0])[side] += 1 / total
    by_class: dict[str, float] = {}
    for (name, _), (p, q) in joint.items():
        by_class[name] = by_class.get(name, 0.0) + abs(p - q) / 2
    for entry in report.classes:
        assert entry.contribution == pytest.approx(by_class[entry.name])
    assert report.affected_classes[0] == "scooter"
    assert set(report.affected_classes) == {"scooter", "car", "bicycle"}
    contributions = [by_class[name] for name in report.affected_classes]
    assert contributions == sorted(contributions, reverse=True)
    assert "person" not in report.affected_classes
    json = report.to_json()
    for key in ("class_drift", "confidence_drift", "count_drift", "significant_drift", "affected_classes"):
        assert key in json
    names = sorted({box.name for images in (reference, current) for image in images for box in image})
    raw = [[sum(box.name == n for image in images for box in image) for n in names] for images in (reference, current)]
    assert json["class_drift"] == pytest.approx(jensenshannon(raw[0], raw[1], base=2))


def test_below_the_minimum_sample_the_report_says_insufficient_data() -> None:
    report = compare(bin_images(boxes("car", [0.9] * 20)), bin_images(boxes("car", [0.1] * 20)))
    assert report.status == "insufficient_data"
    assert not report.significant_drift
    assert report.findings == ()
    assert any("20 images" in reason for reason in report.insufficient)
    thin_class = compare(
        bin_images(boxes("car", [0.8] * 60) + boxes("cat", [0.9] * 10)),
        bin_images(boxes("car", [0.8] * 60) + boxes("cat", [0.2] * 10)),
    )
    assert thin_class.status == "no_drift"
    assert not any(f.subject == "cat" and f.kind == "confidence" for f in thin_class.findings)


def test_effect_floor_silences_a_tiny_shift_that_a_huge_sample_makes_significant() -> None:
    rng = np.random.default_rng(9)
    n = 2_000_000
    a = np.histogram(rng.beta(5, 2, n), bins=EDGES)[0]
    b = np.histogram(np.clip(rng.beta(5, 2, n) - 0.01, 0, 1), bins=EDGES)[0]

    def sample(counts: NDArray[np.int64]) -> PeriodSample:
        per_image = np.zeros(bins.DETECTIONS_OPEN_BIN + 1, dtype=np.int64)
        per_image[1] = n
        return PeriodSample(n, 0, n, float(n), {"car": n}, {"car": counts}, per_image)

    strict = compare(sample(a), sample(b))
    confidence = next(f for f in strict.findings if f.kind == "confidence" and not f.subject)
    assert confidence.p_adjusted < 1e-6  # significant ...
    assert confidence.effect < 0.1  # ... but immaterial
    assert not strict.significant_drift
    floorless = compare(sample(a), sample(b), DriftConfig(min_ks=0.0))
    assert floorless.significant_drift


def test_rate_test_is_scipy_poisson_means_test_statistic_and_overdispersion_scales_it() -> None:
    expected = stats.poisson_means_test(300, 100, 360, 100)
    z, p = rate_test(300, 100, 360, 100)
    assert abs(z) == pytest.approx(abs(expected.statistic), rel=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=0.01)  # the E-test's p is exact, ours the normal one
    unequal = stats.poisson_means_test(30, 40, 50, 35)
    assert rate_test(30, 40, 50, 35)[1] == pytest.approx(unequal.pvalue, rel=0.2)
    assert rate_test(300, 100, 360, 100, dispersion=4.0)[0] == pytest.approx(z / 2.0)


def test_dispersion_is_the_variance_to_mean_ratio_of_the_raw_detections_per_image() -> None:
    rng = np.random.default_rng(10)
    images = simulate(Stream(extra_empty=0.3), 300, rng)
    counts = np.array([len(image) for image in images], dtype=np.float64)
    assert bin_images(images).dispersion() == pytest.approx(np.var(counts, ddof=1) / counts.mean(), rel=1e-9)
