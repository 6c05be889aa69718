"""A whole image's values recorded in one step export exactly what one ``record`` per value exports.

Each test feeds the same values, in the same order, to two fresh SDK meter providers:
one through :class:`HistogramBatch` (the recorder process's fast path), one through the
public ``Histogram.record`` a value at a time, and compares every exported point:
count, float sum (bit for bit), bucket counts, min, max and exemplars.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from detwatch_instrumentation import semconv
from detwatch_instrumentation._histogram_batch import HistogramBatch

BOUNDS = semconv.DETECTION_CONFIDENCE.bounds


def _images(seed: int, n: int) -> list[list[float]]:
    """Values per image, with bucket bounds, zeros and long fractions (sums that depend on order)."""
    rng = random.Random(seed)
    bounds = list(BOUNDS or (0.5,))
    out = []
    for _ in range(n):
        values = [rng.random() for _ in range(rng.randint(0, 25))]
        values += [rng.choice(bounds) for _ in range(rng.randint(0, 3))] + [0.0] * rng.randint(0, 1)
        rng.shuffle(values)
        out.append(values)
    return out


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    data = reader.get_metrics_data()
    points = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    key = (metric.name, tuple(sorted(p.attributes.items())))  # type: ignore[union-attr]
                    points[key] = (p.count, p.sum, tuple(p.bucket_counts), p.min, p.max, len(p.exemplars))  # type: ignore[union-attr]
    return points


class Pair:
    """The same instruments on two providers: one fed by the batch, one value by value."""

    def __init__(self, **provider_options: Any) -> None:
        self.readers = []
        self.histograms = []
        reader_options = provider_options.pop("reader_options", {})
        for _ in range(2):
            reader = InMemoryMetricReader(**reader_options)
            provider = MeterProvider(metric_readers=[reader], **provider_options)
            meter = provider.get_meter("test")
            self.readers.append(reader)
            self.histograms.append(
                [
                    meter.create_histogram(name, explicit_bucket_boundaries_advisory=list(BOUNDS) if BOUNDS else None)
                    for name in ("a", "b")
                ]
            )
        self.batch = HistogramBatch(fast=True)
        self.attributes: list[dict[str, Any]] = [{"objdet.class": "car"}, {"objdet.class": "person", "n": 3}]

    def record(self, which: int, series: int, values: list[float]) -> None:
        self.batch.record(self.histograms[0][which], values, self.attributes[series])
        for value in values:
            self.histograms[1][which].record(value, self.attributes[series])

    def compare(self) -> dict[Any, Any]:
        fast, slow = (_points(reader) for reader in self.readers)
        assert fast == slow
        return fast


def test_batched_values_export_the_same_points_as_one_record_each() -> None:
    pair = Pair()
    for i, values in enumerate(_images(1, 300)):
        pair.record(i % 2, (i // 2) % 2, values)
        if i % 50 == 0:
            pair.compare()  # a collection in between: the aggregations carry on
    points = pair.compare()
    assert sum(p[0] for p in points.values()) == sum(len(v) for v in _images(1, 300))
    assert pair.batch._series, "the fast path was not taken"


def test_values_the_sdk_refuses_are_refused_as_before(caplog: pytest.LogCaptureFixture) -> None:
    pair = Pair()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            pair.record(0, 0, [0.5, -1.0, math.nan, 0.25, math.inf])
    pair.compare()
    assert pair.batch._series
    assert sum("not finite" in r.message for r in caplog.records) == 12  # both providers, 2 per image


def _options(kind: str) -> dict[str, Any]:
    if kind == "delta":
        return {"reader_options": {"preferred_temporality": {Histogram: AggregationTemporality.DELTA}}}
    if kind == "always-on exemplars":
        return {"exemplar_filter": AlwaysOnExemplarFilter()}
    if kind == "another view":
        return {"views": [View(instrument_name="a", aggregation=ExplicitBucketHistogramAggregation((0.1, 0.9)))]}
    return {"views": [View(instrument_name="*", attribute_keys={"n"})]}


@pytest.mark.parametrize("kind", ["delta", "always-on exemplars", "another view", "attribute keys"])
def test_other_sdk_configurations_export_the_same_points(kind: str) -> None:
    pair = Pair(**_options(kind))
    for i, values in enumerate(_images(2, 60)):
        pair.record(i % 2, i % 2, values)
        if i % 20 == 0:
            pair.compare()
    pair.compare()
