"""One image's values of one histogram series, recorded in one step.

Why
---
The contract records three histograms per detection (confidence, box area, aspect
ratio): about 62 measurements for an image of 20 detections. Through the SDK's public
``Histogram.record`` each costs ~8 µs, almost all of it per-call overhead (a
``Measurement`` object, attribute cleaning, attribute hashing, the exemplar filter,
three layers of dispatch), against well under a microsecond for the aggregation
itself: 82% of the recorder process's CPU (and of the recording thread's). :class:`HistogramBatch` hands a whole
image's values of one series (one histogram, one attribute set) to the SDK's
aggregation at once, under its lock, doing exactly what its ``aggregate`` does for
each value in the same order (bucket count, running sum, min, max), so the exported
points are the same numbers, bit for bit.

When
----
Only when the instrument and the provider are the standard SDK's and nothing would
see the difference: the aggregation is the explicit-bucket histogram, the view keeps
all attributes, aggregations survive a collection (cumulative temporality), and no
exemplar would be offered (``always_off`` filter, or ``trace_based`` outside a sampled
span, which is where both recorders work). The first values of a series always go
through the public API, which creates the aggregation (and applies the cardinality
limit: a series folded into the overflow point stays on the public API); a value the
SDK would refuse (negative, not finite) goes through it too, and is refused there.
Anything else (another SDK, another version's internals, a view with another
aggregation) records value by value through the public API, as before. The
instrumentation still depends only on ``opentelemetry-api``: the SDK's modules are
imported only when an SDK instrument is recorded.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace

_AGGREGATION_FIELDS = ("_lock", "_value", "_sum", "_min", "_max", "_boundaries", "_record_min_max")
"""What the fast path reads and writes of the SDK's histogram aggregation (checked, not assumed)."""
_SLOW: tuple[Any, ...] = ()
"""Cached for a series that must use the public API for good."""


def _sdk() -> tuple[Any, ...] | None:
    """The SDK classes the fast path relies on, or ``None`` when this SDK does not have them."""
    try:
        from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
        from opentelemetry.sdk.metrics._internal.exemplar.exemplar_filter import (
            AlwaysOffExemplarFilter,
            TraceBasedExemplarFilter,
        )
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram
    except ImportError:
        return None
    return _Histogram, _ExplicitBucketHistogramAggregation, AlwaysOffExemplarFilter, TraceBasedExemplarFilter


class _Series:
    """A series' SDK aggregations (one per reader) and what they were found under."""

    __slots__ = ("aggregations", "attributes", "histogram", "span_check", "storages")

    def __init__(
        self, aggregations: tuple[Any, ...], storages: Any, span_check: bool, histogram: Any, attributes: Any
    ) -> None:
        self.aggregations = aggregations
        self.storages = storages
        self.span_check = span_check
        """``trace_based`` exemplar filter: the fast path only outside a valid span."""
        self.histogram = histogram  # kept, so that the ids in the cache key stay theirs
        self.attributes = attributes


class HistogramBatch:
    """Records lists of values per (histogram, attribute set); the fast path when the SDK allows it (see module)."""

    def __init__(self, *, fast: bool, outside_spans: bool = False) -> None:
        self._fast_wanted = fast
        self._sdk: tuple[Any, ...] | None = None
        """The SDK's classes, imported at the first SDK instrument (never for the API's no-op ones)."""
        self._outside_spans = outside_spans
        """The caller never records inside a span (the recorder process): no span check per series."""
        self._series: dict[tuple[int, int], _Series] = {}

    def record(self, histogram: Any, values: Sequence[float], attributes: Mapping[str, Any]) -> None:
        """Record ``values`` in order, as ``histogram.record(value, attributes)`` for each would.

        ``attributes`` must not change afterwards: series are remembered by its identity
        (the monitor's attribute sets are cached and never mutated).
        """
        aggregations = self._fast(histogram, attributes) if self._fast_wanted else None
        if not aggregations or not values:
            for value in values:
                histogram.record(value, attributes)
            return
        good = values
        # fsum is finite only when every value is (NaN and inf propagate); then min is meaningful.
        if not (math.isfinite(math.fsum(values)) and min(values) >= 0):
            good = [v for v in values if math.isfinite(v) and v >= 0]
            for value in values:
                if not (math.isfinite(value) and value >= 0):
                    histogram.record(value, attributes)  # refused (and logged) by the SDK, as always
            if not good:
                return
        low, high = min(good), max(good)
        for aggregation in aggregations:
            with aggregation._lock:
                bounds = aggregation._boundaries
                counts = aggregation._value
                if counts is None:
                    counts = aggregation._value = [0] * (len(bounds) + 1)
                total = aggregation._sum
                for value in good:
                    total += value  # one addition per value, in order: the same float sum as aggregate()
                    counts[bisect_left(bounds, value)] += 1
                aggregation._sum = total
                if aggregation._record_min_max:
                    aggregation._min = min(aggregation._min, low)
                    aggregation._max = max(aggregation._max, high)

    def _fast(self, histogram: Any, attributes: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The series' SDK aggregations, ``()`` for the public API, ``None`` for not yet (public API this time)."""
        series = self._series.get((id(histogram), id(attributes)))
        if series is not None:
            try:
                storages = histogram._measurement_consumer._reader_storages
                enabled = histogram._is_enabled() if hasattr(histogram, "_is_enabled") else True
            except AttributeError:
                return _SLOW
            # A reader added or removed replaces the storages: their aggregations are others.
            if storages is series.storages and enabled:
                check = series.span_check and not self._outside_spans
                if check and trace.get_current_span().get_span_context().is_valid:
                    return _SLOW
                return series.aggregations
        return self._lookup(histogram, attributes)

    def _lookup(self, histogram: Any, attributes: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if not type(histogram).__module__.startswith("opentelemetry.sdk."):
            return _SLOW
        sdk = self._sdk
        if sdk is None:
            sdk = self._sdk = _sdk()
            if sdk is None:
                self._fast_wanted = False
                return _SLOW
        sdk_histogram, aggregation_type, always_off, trace_based = sdk
        if type(histogram) is not sdk_histogram:
            return _SLOW
        is_enabled = getattr(histogram, "_is_enabled", None)
        if is_enabled is not None and not is_enabled():
            return _SLOW
        try:
            consumer = histogram._measurement_consumer
            exemplar_filter = consumer._sdk_config.exemplar_filter
            storages = consumer._reader_storages
        except AttributeError:
            return _SLOW
        # No exemplar may be offered: the fast path offers none.
        span_check = isinstance(exemplar_filter, trace_based)
        if not (isinstance(exemplar_filter, always_off) or span_check):
            return _SLOW
        if span_check and trace.get_current_span().get_span_context().is_valid:
            return _SLOW
        found = self._find(histogram, attributes, storages, aggregation_type)
        if found is not None:
            self._series[(id(histogram), id(attributes))] = _Series(found, storages, span_check, histogram, attributes)
        return found

    @staticmethod
    def _find(
        histogram: Any, attributes: Mapping[str, Any], storages: Any, aggregation_type: type
    ) -> tuple[Any, ...] | None:
        try:
            from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
        except ImportError:
            return _SLOW
        try:
            key = _hash_attributes(dict(attributes))
            found = []
            for storage in storages.values():
                for match in storage._get_or_init_view_instrument_match(histogram):
                    if match._view._attribute_keys is not None or getattr(match, "_reset_on_collect", False):
                        return _SLOW
                    aggregation = match._attributes_aggregation.get(key)
                    if aggregation is None:
                        return None  # created by the first public record (or folded into overflow)
                    if type(aggregation) is not aggregation_type or not all(
                        hasattr(aggregation, name) for name in _AGGREGATION_FIELDS
                    ):
                        return _SLOW
                    found.append(aggregation)
        except (AttributeError, TypeError):
            return _SLOW
        return tuple(found)
