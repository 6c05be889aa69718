"""A/B statistics from sufficient statistics agree with SciPy on the raw data they summarise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from detwatch.abtest.statistics import (
    Moments,
    class_mix_test,
    mann_whitney_binned,
    minimum_detectable_effect,
    msprt,
    quantile_from_bins,
    rate_test,
    sample_ratio_mismatch,
    welch_test,
)
from detwatch.contract import bins
from detwatch.stats.multiple_testing import holm


def moments(x: np.ndarray) -> Moments:
    return Moments(len(x), float(x.sum()), float((x * x).sum()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_from_moments_equals_scipy_ttest_ind_unequal_variances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.71, 0.12, size=400)
    b = rng.normal(0.73, 0.20, size=90)
    got = welch_test(moments(a), moments(b))
    want = stats.ttest_ind(b, a, equal_var=False)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-9)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)
    ci = want.confidence_interval(0.95)
    assert got.ci_low == pytest.approx(ci.low, rel=1e-9)
    assert got.ci_high == pytest.approx(ci.high, rel=1e-9)
    assert got.difference == pytest.approx(b.mean() - a.mean())


def test_moments_merge_by_addition_to_the_whole_sample_variance() -> None:
    rng = np.random.default_rng(5)
    x = rng.exponential(30.0, size=1000)
    merged = moments(x[:123]) + moments(x[123:700]) + moments(x[700:])
    assert merged.mean == pytest.approx(x.mean())
    assert merged.variance == pytest.approx(x.var(ddof=1), rel=1e-9)


def test_mann_whitney_on_histograms_equals_scipy_on_the_binned_values() -> None:
    rng = np.random.default_rng(11)
    latency_a = rng.lognormal(math.log(40.0), 0.4, size=700)
    latency_b = rng.lognormal(math.log(43.0), 0.4, size=250)
    ia = np.array([bins.latency_bin(v) for v in latency_a])
    ib = np.array([bins.latency_bin(v) for v in latency_b])
    ca = np.bincount(ia, minlength=bins.LATENCY_BINS)
    cb = np.bincount(ib, minlength=bins.LATENCY_BINS)
    got = mann_whitney_binned(ca.tolist(), cb.tolist())
    want = stats.mannwhitneyu(ia, ib, method="asymptotic", use_continuity=True)
    assert got.statistic == pytest.approx(want.statistic)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)
    # The binned test keeps most of the raw test's evidence (bins are 12 % wide).
    raw = stats.mannwhitneyu(latency_a, latency_b, method="asymptotic")
    assert got.p_value < 0.05 and raw.pvalue < 0.05
    assert got.difference > 0  # B is slower: P(B > A) above one half


def test_two_proportion_test_equals_uncorrected_chi_square_and_fisher_for_small_counts() -> None:
    got = rate_test(120, 1000, 160, 1000)
    chi2, p, _, _ = stats.chi2_contingency([[120, 880], [160, 840]], correction=False)
    assert got.method == "two_proportion_z"
    assert got.p_value == pytest.approx(p, rel=1e-9)
    assert got.statistic**2 == pytest.approx(chi2, rel=1e-9)
    assert got.difference == pytest.approx(0.04)
    small = rate_test(1, 30, 7, 25)
    assert small.method == "fisher_exact"
    assert small.p_value == pytest.approx(stats.fisher_exact([[1, 29], [7, 18]]).pvalue)


def test_class_mix_test_equals_chi_square_of_the_raw_crosstab() -> None:
    rng = np.random.default_rng(3)
    classes = np.array(["car", "person", "truck", "bus"])
    raw_a = rng.choice(classes, size=900, p=[0.5, 0.3, 0.15, 0.05])
    raw_b = rng.choice(classes[:3], size=300, p=[0.45, 0.35, 0.2])  # no bus in B
    counts_a = {str(c): int((raw_a == c).sum()) for c in classes}
    counts_b = {str(c): int((raw_b == c).sum()) for c in classes[:3]}
    got = class_mix_test(counts_a, counts_b)
    labels = np.concatenate([np.zeros(len(raw_a)), np.ones(len(raw_b))])
    values = np.concatenate([raw_a, raw_b])
    table = np.array([[np.sum((labels == arm) & (values == c)) for c in classes] for arm in (0, 1)])
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert dof == 3
    assert got.statistic == pytest.approx(chi2)
    assert got.p_value == pytest.approx(p)


def _mixture_likelihood_ratio(d: float, var: float, tau2: float, theta0: float = 0.0) -> float:
    # The paper's definition, integrated numerically: the likelihood of d averaged over
    # theta ~ N(theta0, tau2), divided by its likelihood under theta = theta0.
    def integrand(theta: float) -> float:
        return float(stats.norm.pdf(d, theta, math.sqrt(var)) * stats.norm.pdf(theta, theta0, math.sqrt(tau2)))

    sd = math.sqrt(var)
    num, _ = integrate.quad(integrand, theta0 - 12 * math.sqrt(tau2) - 12 * sd, theta0 + 12 * math.sqrt(tau2) + 12 * sd)
    return float(num) / float(stats.norm.pdf(d, theta0, sd))


def test_msprt_matches_the_mixture_likelihood_ratio_of_the_paper_on_a_worked_example() -> None:
    # Worked example: difference 0.03 in mean confidence, variance 1e-4 (se 0.01), tau 0.02.
    d, var, tau2 = 0.03, 1e-4, 0.02**2
    lam = _mixture_likelihood_ratio(d, var, tau2)
    got = msprt([(d, var)], tau2, alpha=0.05)
    assert got.p_value == pytest.approx(1.0 / lam, rel=1e-6)
    # The confidence sequence is the set of theta0 the test does not reject at alpha:
    # at each end of the interval the likelihood ratio against that theta0 is 1/alpha.
    for end in (got.ci_low, got.ci_high):
        assert _mixture_likelihood_ratio(d, var, tau2, theta0=end) == pytest.approx(1 / 0.05, rel=1e-6)


def test_msprt_p_value_is_the_running_minimum_over_looks() -> None:
    looks = [(0.01, 4e-4), (0.03, 2e-4), (0.005, 1e-4)]
    got = msprt(looks, tau2=4e-4)
    each = [msprt([look], tau2=4e-4).p_value for look in looks]
    assert got.p_value == pytest.approx(min(each))
    assert got.looks == 3


def test_aa_tests_read_daily_keep_false_winners_below_alpha_while_daily_p_values_inflate() -> None:
    """500 A/A tests, each read after every one of 7 days (bounded simulation)."""
    rng = np.random.default_rng(2026)
    tests, days, per_day_a, per_day_b, alpha = 500, 7, 300, 100, 0.05
    sd = 0.15  # spread of per-detection confidence
    tau2 = 0.01**2
    sequential_false, daily_false = 0, 0
    for _ in range(tests):
        xa = rng.normal(0.7, sd, size=(days, per_day_a))
        xb = rng.normal(0.7, sd, size=(days, per_day_b))
        ma, mb = Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0)
        looks: list[tuple[float, float]] = []
        any_daily = False
        for day in range(days):
            ma = ma + moments(xa[day])
            mb = mb + moments(xb[day])
            looks.append((mb.mean - ma.mean, ma.variance / ma.n + mb.variance / mb.n))
            any_daily = any_daily or welch_test(ma, mb).p_value < alpha
        sequential_false += msprt(looks, tau2, alpha).p_value < alpha
        daily_false += any_daily
    print(f"false winners in {tests} A/A tests: mSPRT {sequential_false}, daily Welch {daily_false}")
    # Upper bound of the false-winner rate at alpha, 99.9 % one-sided binomial.
    bound = stats.binom.ppf(0.999, tests, alpha)
    assert sequential_false <= bound
    # Peeking at the plain p-value inflates it well beyond alpha (the classic ~2-3x at 7 looks).
    assert daily_false > stats.binom.ppf(0.999, tests, alpha)


def test_msprt_detects_a_real_difference() -> None:
    rng = np.random.default_rng(9)
    a = rng.normal(0.70, 0.15, size=3000)
    b = rng.normal(0.68, 0.15, size=1000)
    ma, mb = moments(a), moments(b)
    got = msprt([(mb.mean - ma.mean, ma.variance / ma.n + mb.variance / mb.n)], tau2=0.01**2)
    assert got.p_value < 0.05
    assert got.ci_high < 0


def test_sample_ratio_mismatch_flags_a_broken_split_and_passes_a_fair_one() -> None:
    chi2, p = sample_ratio_mismatch(9000, 1000, 0.1)
    assert p > 0.5 and chi2 == pytest.approx(0.0)
    chi2, p = sample_ratio_mismatch(9200, 800, 0.1)
    expected = ((9200 - 9000) ** 2 / 9000) + ((800 - 1000) ** 2 / 1000)
    assert chi2 == pytest.approx(expected)
    assert p == pytest.approx(stats.chi2.sf(expected, 1))
    assert p < 1e-6


def test_holm_adjustment_on_a_textbook_family() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_minimum_detectable_effect_inverts_the_power_of_a_z_test() -> None:
    var = 2.5e-5
    mde = minimum_detectable_effect(var, alpha=0.05, power=0.8)
    z_crit = stats.norm.ppf(0.975)
    power = stats.norm.sf(z_crit - mde / math.sqrt(var)) + stats.norm.cdf(-z_crit - mde / math.sqrt(var))
    assert power == pytest.approx(0.8, abs=1e-3)


def test_quantiles_from_latency_bins_are_within_the_bin_resolution() -> None:
    rng = np.random.default_rng(4)
    latency = rng.lognormal(math.log(35.0), 0.6, size=20000)
    counts = np.bincount([bins.latency_bin(v) for v in latency], minlength=bins.LATENCY_BINS)
    edges = bins.latency_edges_ms()
    for q in (0.5, 0.95, 0.99):
        got = quantile_from_bins(counts.tolist(), edges, q)
        exact = float(np.quantile(latency, q))
        assert abs(got / exact - 1) < 0.13  # one bin is 12.2 % wide
