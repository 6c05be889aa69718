"""Statistics the analyses share, one home each: drift and A/B tests build on this package, never on each other.

- :mod:`~detwatch.stats.multiple_testing`: Holm's correction.
- :mod:`~detwatch.stats.proportions`: the test of two proportions (z, Fisher, conditional binomial).
- :mod:`~detwatch.stats.contingency`: the chi-square test of homogeneity (the class mix).
- :mod:`~detwatch.stats.clustered`: estimators for detections that move together: one
  dark frame lowers every confidence in it, so the image is the unit of sampling.

One rule for a test that cannot be computed (a sample without observations): its
p-value is ``NaN`` and Holm's correction leaves it out of the family.
"""
