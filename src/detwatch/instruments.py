"""The companion's own OpenTelemetry instruments, built in one place from one meter provider.

The companion counts what it receives (``objdet.feedback``), what its data engine flags
for review (``objdet.review.flagged``) and reports the drift schedule's scores
(``objdet.drift.score``) and, on observable gauges, the quality schedule's label-free
precision (``objdet.quality.precision``, its interval and whether it is trusted). Creating them
at import from the global provider bound them to
whatever provider existed then (a no-op one in a test, or before the SDK was set up), and
made a test that wants to read them start a fresh interpreter. Here ``create_app`` builds
one :class:`CompanionInstruments` from the provider it is given (the global one by
default, looked up when the app is built), and everything that records takes it from
the app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics

from detwatch.version import __version__
from detwatch_instrumentation import semconv

__all__ = ["QUALITY_GAUGES", "SCOPE", "CompanionInstruments", "LatestReadings", "Reading"]

SCOPE = "detwatch.companion"
"""The instrumentation scope of the companion's own metrics."""


QUALITY_GAUGES: tuple[semconv.InstrumentSpec, ...] = (
    semconv.QUALITY_PRECISION,
    semconv.QUALITY_PRECISION_LOW,
    semconv.QUALITY_PRECISION_HIGH,
    semconv.QUALITY_TRUSTED,
)
"""The quality schedule's observable gauges."""

Reading = tuple[float, Mapping[str, str]]
"""One value of a gauge and its attributes."""


class LatestReadings:
    """What observable gauges report: per group (a model), the values of its latest run, replaced whole.

    Why observable: a run replaces its model's values, so a class that no longer has an
    estimate (or a model removed from the schedule at a restart) stops being reported,
    where a synchronous gauge would repeat its last value for the life of the process.
    A worker that never ran the schedule (not the machine's leader) reports nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, dict[str, list[Reading]]] = {}

    def replace(self, group: str, readings: Mapping[str, Sequence[Reading]]) -> None:
        """``group``'s values from now on: gauge name -> readings (a gauge left out reports none for it)."""
        with self._lock:
            self._groups[group] = {name: list(values) for name, values in readings.items()}

    def callback(self, name: str) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        """The SDK's callback of gauge ``name``: every group's latest readings of it."""

        def observe(_: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            with self._lock:
                values = [r for group in self._groups.values() for r in group.get(name, ())]
            return [metrics.Observation(value, dict(attributes)) for value, attributes in values]

        return observe


@dataclass(frozen=True)
class CompanionInstruments:
    """Every instrument the companion records on, from one meter."""

    meter: metrics.Meter
    feedback: metrics.Counter
    review_flagged: metrics.Counter
    drift_score: metrics._Gauge  # the API names its synchronous gauge class privately (opentelemetry-api 1.2x)
    quality: LatestReadings = field(default_factory=LatestReadings)
    """What the quality gauges (:data:`QUALITY_GAUGES`, observable) report."""

    @classmethod
    def create(cls, meter_provider: metrics.MeterProvider | None = None) -> CompanionInstruments:
        """The instruments on ``meter_provider`` (the global provider when ``None``)."""
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        quality = LatestReadings()
        for spec in QUALITY_GAUGES:
            meter.create_observable_gauge(
                spec.name, callbacks=[quality.callback(spec.name)], unit=spec.unit, description=spec.description
            )
        return cls(
            meter=meter,
            feedback=meter.create_counter(
                semconv.FEEDBACK.name, unit=semconv.FEEDBACK.unit, description=semconv.FEEDBACK.description
            ),
            review_flagged=meter.create_counter(
                semconv.REVIEW_FLAGGED.name,
                unit=semconv.REVIEW_FLAGGED.unit,
                description=semconv.REVIEW_FLAGGED.description,
            ),
            drift_score=meter.create_gauge(
                semconv.DRIFT_SCORE.name, unit=semconv.DRIFT_SCORE.unit, description=semconv.DRIFT_SCORE.description
            ),
            quality=quality,
        )
