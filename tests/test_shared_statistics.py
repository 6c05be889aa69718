"""The statistics drift and A/B tests share (detwatch.stats): one Holm, one two-proportion test, one chi-square.

Each is checked against an independent implementation (statsmodels, SciPy), and the
rule for a test that cannot be computed is the same wherever it is used: ``NaN``,
left out of Holm's family.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from detwatch.abtest.statistics import class_mix_test, rate_test
from detwatch.stats.contingency import chi_square_homogeneity
from detwatch.stats.multiple_testing import holm
from detwatch.stats.proportions import two_proportion_test


def test_holm_is_statsmodels_holm_on_random_families() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        p = rng.uniform(0, 1, rng.integers(1, 20)) ** rng.uniform(0.5, 4)
        expected = multipletests(p, method="holm")[1]
        assert holm(list(p)) == pytest.approx(list(expected), abs=1e-12)


def test_holm_leaves_a_test_that_could_not_be_computed_out_of_the_family() -> None:
    """A NaN p-value neither rejects nor makes the others harder to reject."""
    finite = [0.01, 0.04, 0.03]
    got = holm([finite[0], math.nan, finite[1], finite[2]])
    assert math.isnan(got[1])
    assert [got[0], got[2], got[3]] == pytest.approx(list(multipletests(finite, method="holm")[1]))
    assert all(math.isnan(q) for q in holm([math.nan, math.inf]))
    assert holm([]) == []


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(120, 1000, 160, 1000), (40, 90, 20, 110), (900, 1000, 880, 1000)])
def test_the_two_proportion_test_is_statsmodels_z_test_where_counts_are_large(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    z, p = proportions_ztest([x2, x1], [n2, n1])
    got = two_proportion_test(x1, n1, x2, n2)
    assert got.method == "two_proportion_z"
    assert got.statistic == pytest.approx(z, rel=1e-9)
    assert got.p_value == pytest.approx(p, rel=1e-9)


def test_the_two_proportion_test_is_fisher_exact_where_counts_are_small() -> None:
    got = two_proportion_test(1, 40, 7, 35)
    odds, p = stats.fisher_exact([[1, 39], [7, 28]])
    assert got.method == "fisher_exact"
    assert got.statistic == pytest.approx(odds) and got.p_value == pytest.approx(p)


def test_a_sample_without_trials_is_nan_in_drift_and_in_ab_tests_alike() -> None:
    alone = two_proportion_test(3, 0, 5, 10)
    assert math.isnan(alone.p_value) and math.isnan(alone.statistic)
    ab = rate_test(3, 0, 5, 10)
    assert math.isnan(ab.p_value) and math.isnan(ab.difference)


def test_ab_rate_test_takes_its_p_value_from_the_shared_test() -> None:
    for x_a, n_a, x_b, n_b in [(120, 1000, 160, 1000), (1, 30, 7, 25), (3, 2_000_000, 11, 1_000_000)]:
        shared = two_proportion_test(x_a, n_a, x_b, n_b)
        got = rate_test(x_a, n_a, x_b, n_b)
        assert got.method == shared.method and got.p_value == pytest.approx(shared.p_value)


def test_the_chi_square_is_scipys_where_no_category_is_rare() -> None:
    table = np.array([[300, 200, 100], [150, 120, 90]])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    got = chi_square_homogeneity(table[0], table[1])
    assert got.statistic == pytest.approx(chi2) and got.p_value == pytest.approx(p)
    assert (got.dof, got.pooled) == (dof, 0)


def test_ab_class_mix_pools_rare_classes_as_drift_does() -> None:
    """The two class-mix tests disagreed on sparse tables: A/B's counted a class seen twice as its own column."""
    counts_a = {"car": 400, "person": 300, "bus": 2}
    counts_b = {"car": 380, "person": 330, "bus": 0, "tram": 1}
    ab = class_mix_test(counts_a, counts_b)
    classes = sorted(set(counts_a) | set(counts_b))
    drift = chi_square_homogeneity([counts_a.get(c, 0) for c in classes], [counts_b.get(c, 0) for c in classes])
    assert drift.pooled == 2
    assert ab.statistic == pytest.approx(drift.statistic) and ab.p_value == pytest.approx(drift.p_value)
    # The rare classes pooled and then folded into the thinnest other column: scipy on that 2 x 2 table.
    folded = np.array([[300 + 2, 400], [330 + 1, 380]])
    _, p, _, _ = stats.chi2_contingency(folded, correction=False)
    assert ab.p_value == pytest.approx(p)


def test_an_empty_arm_makes_the_class_mix_not_computable_and_one_class_no_evidence() -> None:
    empty = class_mix_test({"car": 10}, {})
    assert math.isnan(empty.p_value) and math.isnan(empty.statistic)
    single = chi_square_homogeneity([50], [70])
    assert (single.statistic, single.dof, single.p_value) == (0.0, 0, 1.0)
