"""The companion's own OpenTelemetry instruments, built in one place from one meter provider.

The companion counts what it receives (``objdet.feedback``), what its data engine flags
for review (``objdet.review.flagged``) and reports the drift schedule's scores
(``objdet.drift.score``) and the quality schedule's label-free precision
(``objdet.quality.precision``, its interval and whether it is trusted). Creating them
at import from the global provider bound them to
whatever provider existed then (a no-op one in a test, or before the SDK was set up), and
made a test that wants to read them start a fresh interpreter. Here ``create_app`` builds
one :class:`CompanionInstruments` from the provider it is given (the global one by
default, looked up when the app is built), and everything that records takes it from
the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics

from detwatch.version import __version__
from detwatch_instrumentation import semconv

__all__ = ["SCOPE", "CompanionInstruments"]

SCOPE = "detwatch.companion"
"""The instrumentation scope of the companion's own metrics."""


@dataclass(frozen=True)
class CompanionInstruments:
    """Every instrument the companion records on, from one meter."""

    meter: metrics.Meter
    feedback: metrics.Counter
    review_flagged: metrics.Counter
    drift_score: metrics._Gauge  # the API names its synchronous gauge class privately (opentelemetry-api 1.2x)
    quality_precision: metrics._Gauge
    quality_precision_low: metrics._Gauge
    quality_precision_high: metrics._Gauge
    quality_trusted: metrics._Gauge

    @classmethod
    def create(cls, meter_provider: metrics.MeterProvider | None = None) -> CompanionInstruments:
        """The instruments on ``meter_provider`` (the global provider when ``None``)."""
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
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
            drift_score=_gauge(meter, semconv.DRIFT_SCORE),
            quality_precision=_gauge(meter, semconv.QUALITY_PRECISION),
            quality_precision_low=_gauge(meter, semconv.QUALITY_PRECISION_LOW),
            quality_precision_high=_gauge(meter, semconv.QUALITY_PRECISION_HIGH),
            quality_trusted=_gauge(meter, semconv.QUALITY_TRUSTED),
        )


def _gauge(meter: metrics.Meter, spec: semconv.InstrumentSpec) -> metrics._Gauge:
    return meter.create_gauge(spec.name, unit=spec.unit, description=spec.description)
