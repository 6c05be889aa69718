"""The one registry of detwatch telemetry names.

No OpenTelemetry semantic convention for computer vision exists yet, so every name
lives under the project prefix ``objdet.``. These names are a public API: dashboards,
alert rules, the companion service and users' own queries depend on them. Change one
only with a migration note.

Everything that names a metric, an attribute or an event imports it from here: the
decorator records through :data:`INSTRUMENTS`, and the dashboard and rule generators
derive Prometheus series names with :func:`prometheus_series` instead of hand-typing
them (a peer project shipped dashboards that showed "No data" because a hand-typed
series name drifted from what the exporter produced).

Histogram bounds are declared here and passed to the SDK as
``explicit_bucket_boundaries_advisory``, so users need no View. Alert thresholds the
generators may emit must fall on these bounds (see :func:`is_bucket_bound`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ALL_CLASSES",
    "ATTR_AB_VARIANT",
    "ATTR_DETECTION_CLASS",
    "ATTR_DRIFT_KIND",
    "ATTR_DRIFT_METHOD",
    "ATTR_ERROR_TYPE",
    "ATTR_FEEDBACK_TYPE",
    "ATTR_MODEL_ID",
    "ATTR_MODEL_VERSION",
    "ATTR_REASON",
    "ATTR_SAMPLING_STRATEGY",
    "ATTR_STAGE",
    "BATCH_SIZE",
    "DETECTIONS",
    "DETECTION_BOX_AREA",
    "DETECTION_BOX_ASPECT_RATIO",
    "DETECTION_CONFIDENCE",
    "DRIFT_SCORE",
    "EVENT_PREDICTION",
    "FEEDBACK",
    "IMAGES",
    "IMAGE_DETECTIONS",
    "INFERENCE_DURATION",
    "INSTRUMENTS",
    "INVALID_OUTPUTS",
    "MODEL_ATTRIBUTES",
    "OTHER_CLASS",
    "QUALITY_PRECISION",
    "QUALITY_PRECISION_HIGH",
    "QUALITY_PRECISION_LOW",
    "QUALITY_TRUSTED",
    "REVIEW_FLAGGED",
    "TELEMETRY_DROPPED",
    "InstrumentKind",
    "InstrumentSpec",
    "InvalidReason",
    "PrometheusPart",
    "is_bucket_bound",
    "prometheus_label",
    "prometheus_series",
]

InstrumentKind = Literal["counter", "histogram", "gauge"]
"""The OpenTelemetry instrument kinds detwatch uses."""

# --------------------------------------------------------------------------- attributes

ATTR_MODEL_ID: Final = "objdet.model.id"
"""Model identifier, on every instrument. Chosen by the user (``model_id=``)."""

ATTR_MODEL_VERSION: Final = "objdet.model.version"
"""Model version, on every instrument (empty string when not given)."""

ATTR_AB_VARIANT: Final = "objdet.ab.variant"
"""A/B arm (``a`` or ``b``) of a routed call; absent when the call was not routed."""

ATTR_STAGE: Final = "objdet.stage"
"""Pipeline stage (``preprocess``, ``inference``, ``postprocess``) on
``objdet.inference.duration``, recorded only by :func:`detwatch_instrumentation.stage`.
The decorator's whole-call duration carries no stage, so ``objdet_stage=""`` selects it."""

ATTR_ERROR_TYPE: Final = "error.type"
"""The OpenTelemetry general attribute: the exception class of a failed call."""

ATTR_DETECTION_CLASS: Final = "objdet.detection.class"
"""Class label of a detection, after the cardinality guard (see :data:`OTHER_CLASS`)."""

ATTR_REASON: Final = "objdet.reason"
"""Why a model output could not be (fully) read; values are :data:`InvalidReason`."""

ATTR_FEEDBACK_TYPE: Final = "objdet.feedback.type"
"""Feedback type posted to the companion (``correct``, ``wrong_label``, ...)."""

ATTR_SAMPLING_STRATEGY: Final = "objdet.sampling.strategy"
"""Data-engine strategy that flagged an image (``low_confidence``, ``random_sample``, ...)."""

ATTR_DRIFT_KIND: Final = "objdet.drift.kind"
"""What drifted (``class``, ``confidence``, ``count``, ...)."""

ATTR_DRIFT_METHOD: Final = "objdet.drift.method"
"""The distance that measured it (``jensen_shannon``, ``ks``, ``psi``, ...)."""

OTHER_CLASS: Final = "other"
"""The class label that classes beyond the cardinality guard's limit fold into."""
ALL_CLASSES: Final = "__all__"
"""``objdet.detection.class`` of a figure over every class (the quality gauges' overall value),
like drift's ``any``: the attribute is always there, so one selector reads either."""

InvalidReason = Literal[
    "unrecognized_format",
    "adapter_error",
    "batch_length_mismatch",
    "confidence_missing",
    "confidence_not_finite",
    "confidence_out_of_range",
    "box_not_finite",
    "box_out_of_range",
    "box_degenerate",
    "box_malformed",
    "class_missing",
    "too_many_detections",
]
"""Values of :data:`ATTR_REASON` on ``objdet.invalid_outputs``."""

# --------------------------------------------------------------------------- events

EVENT_PREDICTION: Final = "objdet.prediction"
"""``event.name`` of the log record emitted once per image; its body is the prediction
object of DESIGN.md ("Prediction events"), the companion's input."""

# --------------------------------------------------------------------------- instruments


@dataclass(frozen=True)
class InstrumentSpec:
    """Name, kind, unit and bounds of one instrument: defined once, used everywhere."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    """Attributes specific to this instrument, beyond the model ones on every instrument."""
    bounds: tuple[float, ...] | None = None
    """Explicit bucket boundaries (histograms only), passed as the SDK advisory."""
    emitted_by: Literal["instrumentation", "companion"] = "instrumentation"


_MODEL_ATTRS = (ATTR_MODEL_ID, ATTR_MODEL_VERSION, ATTR_AB_VARIANT)

INFERENCE_DURATION: Final = InstrumentSpec(
    name="objdet.inference.duration",
    kind="histogram",
    unit="s",
    description="Duration of one call of the decorated inference function (or a stage of it).",
    attributes=(ATTR_STAGE, ATTR_ERROR_TYPE),
    # Frame budgets at 60/30/15 fps (16.7, 33.3, 66.7 ms) are bounds, so "within the
    # frame budget" is an exact bucket query.
    bounds=(0.001, 0.0025, 0.005, 0.01, 0.0167, 0.025, 0.0333, 0.05, 0.0667, 0.1, 0.25, 0.5, 1.0, 2.5),
)
"""Histogram, ``s``: call (or stage) duration; ``error.type`` on failed calls."""

IMAGES: Final = InstrumentSpec(
    name="objdet.images",
    kind="counter",
    unit="{image}",
    description="Images processed by the decorated inference function.",
    attributes=(ATTR_ERROR_TYPE,),
)
"""Counter, ``{image}``: images processed; ``error.type`` when the call raised."""

IMAGE_DETECTIONS: Final = InstrumentSpec(
    name="objdet.image.detections",
    kind="histogram",
    unit="{detection}",
    description="Number of valid detections in one image.",
    # le=0 is the empty-image rate; 300 is a common detector cap (max_det).
    bounds=(0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 512.0),
)
"""Histogram, ``{detection}``: detections per image; bucket ``le=0`` counts empty images."""

DETECTIONS: Final = InstrumentSpec(
    name="objdet.detections",
    kind="counter",
    unit="{detection}",
    description="Valid detections, by class.",
    attributes=(ATTR_DETECTION_CLASS,),
)
"""Counter, ``{detection}``, by ``objdet.detection.class``: the class mix."""

DETECTION_CONFIDENCE: Final = InstrumentSpec(
    name="objdet.detection.confidence",
    kind="histogram",
    unit="1",
    description="Confidence score of each valid detection.",
    attributes=(ATTR_DETECTION_CLASS,),
    bounds=tuple(round(0.05 * i, 2) for i in range(1, 20)),
)
"""Histogram, ``1``, by class: confidences; bounds every 0.05 from 0.05 to 0.95."""

DETECTION_BOX_AREA: Final = InstrumentSpec(
    name="objdet.detection.box.area",
    kind="histogram",
    unit="1",
    description="Box area as a share of the image area.",
    attributes=(ATTR_DETECTION_CLASS,),
    # COCO small (32 px)^2 and medium (96 px)^2 at 640 px are 0.0025 and 0.0225.
    bounds=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.0225, 0.05, 0.1, 0.25, 0.5, 1.0),
)
"""Histogram, ``1``, by class: relative box area; recorded when the image size is known."""

DETECTION_BOX_ASPECT_RATIO: Final = InstrumentSpec(
    name="objdet.detection.box.aspect_ratio",
    kind="histogram",
    unit="1",
    description="Box width divided by box height.",
    bounds=(0.125, 0.25, 0.5, 0.75, 1.0, 1.333, 2.0, 4.0, 8.0),
)
"""Histogram, ``1``: box width / height."""

BATCH_SIZE: Final = InstrumentSpec(
    name="objdet.batch.size",
    kind="histogram",
    unit="{image}",
    description="Images per call of a batch inference function.",
    bounds=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
)
"""Histogram, ``{image}``: images per batch call (batch functions only)."""

INVALID_OUTPUTS: Final = InstrumentSpec(
    name="objdet.invalid_outputs",
    kind="counter",
    unit="{output}",
    description="Model outputs (per image) that could not be fully read, by reason.",
    attributes=(ATTR_REASON,),
)
"""Counter, ``{output}``, by ``objdet.reason``: once per image output and reason."""

TELEMETRY_DROPPED: Final = InstrumentSpec(
    name="objdet.telemetry.dropped",
    kind="counter",
    unit="{image}",
    description="Images whose telemetry was dropped because the recording queue was full.",
)
"""Counter, ``{image}``: telemetry shed to keep inference unblocked (queue full: too many
waiting calls, or their inputs past the byte budget).

Not in the original contract table: added so that shedding load is visible rather
than silent. It is recorded on the caller's thread, at the moment a call is shed (one
SDK measurement, only then)."""

FEEDBACK: Final = InstrumentSpec(
    name="objdet.feedback",
    kind="counter",
    unit="{feedback}",
    description="Feedback posts accepted by the companion, by type.",
    attributes=(ATTR_FEEDBACK_TYPE,),
    emitted_by="companion",
)
"""Counter, ``{feedback}``, by ``objdet.feedback.type`` (companion)."""

REVIEW_FLAGGED: Final = InstrumentSpec(
    name="objdet.review.flagged",
    kind="counter",
    unit="{image}",
    description="Images flagged for review by the data engine, by strategy.",
    attributes=(ATTR_SAMPLING_STRATEGY,),
    emitted_by="companion",
)
"""Counter, ``{image}``, by ``objdet.sampling.strategy`` (companion)."""

DRIFT_SCORE: Final = InstrumentSpec(
    name="objdet.drift.score",
    kind="gauge",
    unit="1",
    description="Latest drift distance between the current and the baseline window.",
    attributes=(ATTR_DRIFT_KIND, ATTR_DRIFT_METHOD),
    emitted_by="companion",
)
"""Gauge, ``1``, by ``objdet.drift.kind`` and ``objdet.drift.method`` (companion)."""


def _quality_gauge(name: str, description: str) -> InstrumentSpec:
    """A gauge of the companion's quality schedule: unit 1, by class (:data:`ALL_CLASSES` overall)."""
    return InstrumentSpec(
        name=name, kind="gauge", unit="1", description=description, attributes=(ATTR_DETECTION_CLASS,),
        emitted_by="companion",
    )  # fmt: skip


QUALITY_PRECISION: Final = _quality_gauge(
    "objdet.quality.precision",
    "Label-free expected precision of the trailing period's detections (calibrated on reviewed labels).",
)
"""Gauge, ``1``, by ``objdet.detection.class`` (:data:`ALL_CLASSES` overall) (companion)."""
QUALITY_PRECISION_LOW: Final = _quality_gauge(
    "objdet.quality.precision_low", "Lower end of the 95 % interval of objdet.quality.precision."
)
"""Gauge, ``1``: the interval's lower end, by class (companion)."""
QUALITY_PRECISION_HIGH: Final = _quality_gauge(
    "objdet.quality.precision_high", "Upper end of the 95 % interval of objdet.quality.precision."
)
"""Gauge, ``1``: the interval's upper end, by class (companion)."""
QUALITY_TRUSTED: Final = _quality_gauge(
    "objdet.quality.trusted",
    "1 when objdet.quality.precision can be trusted (enough labels, confidences as calibrated), else 0.",
)
"""Gauge, ``1``: 1/0, whether the estimate of the same class is trusted (companion)."""

INSTRUMENTS: Final[tuple[InstrumentSpec, ...]] = (
    INFERENCE_DURATION,
    IMAGES,
    IMAGE_DETECTIONS,
    DETECTIONS,
    DETECTION_CONFIDENCE,
    DETECTION_BOX_AREA,
    DETECTION_BOX_ASPECT_RATIO,
    BATCH_SIZE,
    INVALID_OUTPUTS,
    TELEMETRY_DROPPED,
    FEEDBACK,
    REVIEW_FLAGGED,
    DRIFT_SCORE,
    QUALITY_PRECISION,
    QUALITY_PRECISION_LOW,
    QUALITY_PRECISION_HIGH,
    QUALITY_TRUSTED,
)
"""Every instrument detwatch emits, instrumentation and companion."""

MODEL_ATTRIBUTES: Final = _MODEL_ATTRS
"""Attributes present on every instrument (``objdet.ab.variant`` only when routed)."""

# --------------------------------------------------------------------------- Prometheus

# Units the OTLP -> Prometheus translators turn into a suffix. Curly-brace
# annotations ({image}) are dropped, and "1" gets no suffix on counters and
# histograms (VictoriaMetrics with -opentelemetry.usePrometheusNaming; pinned by a
# test against the real store).
_UNIT_SUFFIXES: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}

PrometheusPart = Literal["", "bucket", "sum", "count", "total"]


def _base_name(spec: InstrumentSpec) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", spec.name)
    suffix = _UNIT_SUFFIXES.get(spec.unit)
    if suffix and not name.endswith("_" + suffix):
        name = f"{name}_{suffix}"
    return name


def prometheus_series(spec: InstrumentSpec, part: PrometheusPart = "") -> str:
    """The Prometheus series name of ``spec`` as the store names it.

    ``part`` selects a histogram's ``bucket``/``sum``/``count`` series; a counter's
    series always ends in ``_total``, so ``part`` must be ``""`` or ``"total"`` for it.
    """
    base = _base_name(spec)
    if spec.kind == "counter":
        if part not in ("", "total"):
            raise ValueError(f"part: a counter has only the _total series, not {part!r}")
        return base + "_total"
    if spec.kind == "histogram":
        if part not in ("bucket", "sum", "count"):
            raise ValueError(f"part: a histogram series needs bucket, sum or count, not {part!r}")
        return f"{base}_{part}"
    if part:
        raise ValueError(f"part: a gauge has a single series, not {part!r}")
    # The OTLP-to-Prometheus translation names a dimensionless gauge a ratio
    # (objdet.drift.score -> objdet_drift_score_ratio); counters and histograms of
    # unit 1 get no suffix.
    if spec.unit == "1" and not base.endswith("_ratio"):
        return base + "_ratio"
    return base


def prometheus_label(attribute: str) -> str:
    """The Prometheus label name of an OpenTelemetry attribute (``.`` becomes ``_``)."""
    label = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return "key" + label if label[:1].isdigit() else label


def is_bucket_bound(spec: InstrumentSpec, value: float) -> bool:
    """Whether ``value`` is one of ``spec``'s bucket bounds (alert thresholds must be)."""
    if spec.bounds is None:
        return False
    return any(math.isclose(value, b, rel_tol=1e-9, abs_tol=1e-12) for b in spec.bounds)
