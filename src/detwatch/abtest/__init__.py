"""A/B tests of model versions: configuration, per-arm results and peeking-safe verdicts.

:mod:`.statistics` holds the tests (numpy/scipy only); the results are computed from
the companion's per-hour aggregates of each arm, so they cost the same whatever the
number of predictions routed.
"""
