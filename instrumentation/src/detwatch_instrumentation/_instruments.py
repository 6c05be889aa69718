"""Instrument factory: creates the decorator's instruments from the registry.

Names, units, descriptions and bucket advisories come from :mod:`.semconv` only;
nothing here spells a metric name.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

from . import semconv
from .semconv import InstrumentSpec


def _histogram(meter: Meter, spec: InstrumentSpec) -> Histogram:
    return meter.create_histogram(
        spec.name,
        unit=spec.unit,
        description=spec.description,
        explicit_bucket_boundaries_advisory=list(spec.bounds) if spec.bounds is not None else None,
    )


def _counter(meter: Meter, spec: InstrumentSpec) -> Counter:
    return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)


@dataclass(frozen=True, slots=True)
class Instruments:
    """The instruments one decorated function records to."""

    duration: Histogram
    images: Counter
    image_detections: Histogram
    detections: Counter
    confidence: Histogram
    box_area: Histogram
    aspect_ratio: Histogram
    batch_size: Histogram
    invalid_outputs: Counter
    dropped: Counter


def create_instruments(meter: Meter) -> Instruments:
    """Create (or fetch: the SDK de-duplicates by name) the instrumentation's instruments."""
    return Instruments(
        duration=_histogram(meter, semconv.INFERENCE_DURATION),
        images=_counter(meter, semconv.IMAGES),
        image_detections=_histogram(meter, semconv.IMAGE_DETECTIONS),
        detections=_counter(meter, semconv.DETECTIONS),
        confidence=_histogram(meter, semconv.DETECTION_CONFIDENCE),
        box_area=_histogram(meter, semconv.DETECTION_BOX_AREA),
        aspect_ratio=_histogram(meter, semconv.DETECTION_BOX_ASPECT_RATIO),
        batch_size=_histogram(meter, semconv.BATCH_SIZE),
        invalid_outputs=_counter(meter, semconv.INVALID_OUTPUTS),
        dropped=_counter(meter, semconv.TELEMETRY_DROPPED),
    )
