"""Statistics the analyses share: estimators for detections that move together.

Detections of one image are correlated (one dark frame lowers every confidence in it), so
the analyses' tests treat the image as the unit of sampling (:mod:`~detwatch.stats.clustered`).
No detwatch imports: drift and A/B tests build on this package, never on each other.
"""
