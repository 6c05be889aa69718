"""Statistics shared by the analyses (drift, A/B tests): one home for each, numpy and scipy only.

- :mod:`.clustered`: variances with the image as the unit, from mergeable per-image sums;
- :mod:`.multiple_testing`: Holm's correction;
- :mod:`.rates`: two proportions (z or Fisher) and two rates per image (quasi-Poisson);
- :mod:`.class_mix`: the chi-square test of homogeneity of two category mixes.

One rule for what cannot be computed, in every module: a test without data to
compute it (an empty sample, no variance) answers a NaN p-value; Holm leaves NaN
p-values out of the family (their adjusted p-value is NaN too) so that a test that
said nothing neither rejects nor costs the others power. Each analysis decides how
it shows a NaN (the A/B results write null, the drift report keeps the float).
"""
