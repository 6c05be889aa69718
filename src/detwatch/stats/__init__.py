"""Statistics shared by the analyses (drift, A/B tests): one home for each, numpy and scipy only.

- :mod:`.clustered`: variances with the image as the unit, from mergeable per-image sums;
- :mod:`.multiple_testing`: Holm's correction;
- :mod:`.rates`: two proportions (z or Fisher) and two rates per image (quasi-Poisson);
- :mod:`.class_mix`: the chi-square test of homogeneity of two category mixes;
- :mod:`.binned_ks`: the binned two-sample Kolmogorov-Smirnov test (drift, quality).

One rule for what cannot be computed, in every module: a test without data to
compute it (a sample without trials, images or observations) answers a NaN p-value;
Holm leaves NaN p-values out of the family (their adjusted p-value is NaN too) so
that a test that said nothing neither rejects nor costs the others power. A test
whose data leave nothing that could differ (no event on either side, a single
category) is computable and answers p 1. How a NaN is shown is the HTTP edge's
business (:mod:`detwatch.api._analysis_json`: the A/B results write null, the drift
report keeps the float).
"""
