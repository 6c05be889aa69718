"""The statistics both analyses share, against independent implementations.

Holm against statsmodels' ``multipletests``, the two-proportion test against
statsmodels' ``proportions_ztest`` and SciPy's exact tests, the class-mix test
against ``scipy.stats.chi2_contingency``; and the one rule for what cannot be
computed (:mod:`detwatch.stats`) on the degenerate inputs where the drift and A/B
versions used to disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from detwatch.abtest.statistics import class_mix_test
from detwatch.stats.class_mix import chi_square_homogeneity
from detwatch.stats.multiple_testing import holm
from detwatch.stats.rates import poisson_rate_test, two_proportion_test


def test_holm_equals_statsmodels_multipletests() -> None:
    rng = np.random.default_rng(6)
    for _ in range(50):
        p = np.concatenate([rng.uniform(0, 0.01, rng.integers(0, 5)), rng.uniform(0, 1, rng.integers(1, 15))])
        expected = multipletests(p, method="holm")[1]
        assert holm(list(p)) == pytest.approx(list(expected), rel=1e-12)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects() -> None:
    rng = np.random.default_rng(7)
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


def test_holm_leaves_nan_p_values_out_of_the_family() -> None:
    """The drift version sorted NaN among the numbers (and min(1, NaN) made later ones 1); now NaN is left out."""
    p = [0.01, math.nan, 0.04, 0.03]
    adjusted = holm(p)
    assert math.isnan(adjusted[1])
    finite = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert [adjusted[0], adjusted[2], adjusted[3]] == pytest.approx(list(finite))
    assert holm([math.nan, 0.01]) == pytest.approx([math.nan, 0.01], nan_ok=True)
    assert holm([]) == []


def test_two_proportion_z_test_equals_statsmodels_and_the_2x2_chi_square() -> None:
    got = two_proportion_test(120, 1000, 160, 1000)
    z, p = proportions_ztest([160, 120], [1000, 1000])  # B - A
    assert got.method == "two_proportion_z"
    assert got.statistic == pytest.approx(z, rel=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.p_value == pytest.approx(stats.chi2_contingency([[120, 880], [160, 840]], correction=False).pvalue)


def test_two_proportion_test_is_fisher_for_small_counts_and_binomial_for_rare_outcomes_of_many_trials() -> None:
    small = two_proportion_test(1, 40, 7, 35)
    assert small.method == "fisher_exact"
    assert small.p_value == pytest.approx(stats.fisher_exact([[1, 39], [7, 28]]).pvalue)
    for rare in ([0, 3], [2, 9], [7, 1]):
        fisher = stats.fisher_exact([[rare[0], 10**6 - rare[0]], [rare[1], 2 * 10**6 - rare[1]]]).pvalue
        got = two_proportion_test(rare[0], 10**6, rare[1], 2 * 10**6)
        assert got.method == "binomial"
        assert got.p_value == pytest.approx(fisher, rel=0.02)
        flipped = two_proportion_test(10**6 - rare[0], 10**6, 2 * 10**6 - rare[1], 2 * 10**6)
        assert flipped.p_value == pytest.approx(fisher, rel=0.02)


def test_two_proportion_design_effects_divide_each_sides_counts() -> None:
    clustered = two_proportion_test(120, 1000, 160, 1000, deff1=2.0, deff2=4.0)
    z, p = proportions_ztest([160 / 4.0, 120 / 2.0], [1000 / 4.0, 1000 / 2.0])
    assert clustered.statistic == pytest.approx(z, rel=1e-12)
    assert clustered.p_value == pytest.approx(p, rel=1e-9)
    assert two_proportion_test(120, 1000, 160, 1000, deff1=0.5) == two_proportion_test(120, 1000, 160, 1000)


def test_two_proportion_test_without_trials_cannot_be_computed() -> None:
    """The drift version raised ValueError, the A/B one answered NaN: now NaN for both."""
    for args in ((0, 0, 3, 10), (3, 10, 0, 0)):
        assert math.isnan(two_proportion_test(*args).p_value)
    # No event on either side is computable: the rates are equal, Fisher's p is 1.
    none = two_proportion_test(0, 50, 0, 60)
    assert none.p_value == pytest.approx(stats.fisher_exact([[0, 50], [0, 60]]).pvalue) == 1.0


def test_poisson_rate_test_is_scipys_poisson_means_test_statistic_and_overdispersion_scales_it() -> None:
    expected = stats.poisson_means_test(300, 100, 360, 100)
    z, p = poisson_rate_test(300, 100, 360, 100)
    assert abs(z) == pytest.approx(abs(expected.statistic), rel=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=0.01)  # the E-test's p is exact, ours the normal one
    unequal = stats.poisson_means_test(30, 40, 50, 35)
    assert poisson_rate_test(30, 40, 50, 35)[1] == pytest.approx(unequal.pvalue, rel=0.2)
    assert poisson_rate_test(300, 100, 360, 100, dispersion=4.0)[0] == pytest.approx(z / 2.0)
    assert poisson_rate_test(0, 100, 0, 80) == (0.0, 1.0)
    assert all(math.isnan(x) for x in poisson_rate_test(3, 0, 5, 10))


def test_class_mix_chi_square_equals_scipy_chi2_contingency_without_sparse_cells() -> None:
    a, b = np.array([400, 300, 200, 100]), np.array([380, 330, 170, 120])
    chi2, p, dof, _ = stats.chi2_contingency(np.vstack([a, b]), correction=False)
    got = chi_square_homogeneity(a, b)
    assert (got.statistic, got.p_value) == pytest.approx((chi2, p))
    assert (got.dof, got.pooled) == (dof, 0)
    clustered = chi_square_homogeneity(a, b, deff=2.5)
    assert clustered.statistic == pytest.approx(chi2 / 2.5)
    assert clustered.p_value == pytest.approx(stats.chi2.sf(chi2 / 2.5, dof))


def test_class_mix_pools_sparse_cells_and_the_ab_test_now_does_too() -> None:
    """The A/B version tested rare classes as they were (expected counts below 5); now both pool them."""
    counts_a = {"car": 400, "person": 300, "bike": 3, "bus": 2}
    counts_b = {"car": 380, "person": 330, "bike": 3, "bus": 5}
    pooled_table = np.array([[400, 300, 5], [380, 330, 8]])  # bike, bus: expected < 5, pooled
    chi2, p, dof, _ = stats.chi2_contingency(pooled_table, correction=False)
    shared = chi_square_homogeneity([3, 2, 400, 300], [3, 5, 380, 330])
    assert (shared.statistic, shared.p_value) == pytest.approx((chi2, p))
    assert (shared.dof, shared.pooled) == (dof, 2)
    ab = class_mix_test(counts_a, counts_b)
    assert (ab.statistic, ab.p_value) == pytest.approx((chi2, p))


def test_class_mix_degenerate_tables() -> None:
    """An empty row cannot be tested (drift raised); one category has nothing to differ (A/B said NaN, now p 1)."""
    assert math.isnan(chi_square_homogeneity([0, 0], [3, 4]).p_value)
    single = chi_square_homogeneity([50, 0], [60, 0])
    assert (single.statistic, single.p_value, single.dof) == (0.0, 1.0, 0)
    ab = class_mix_test({"face": 50}, {"face": 60})
    assert (ab.statistic, ab.p_value, ab.difference) == (0.0, 1.0, 0.0)
    assert math.isnan(class_mix_test({}, {"face": 60}).p_value)
