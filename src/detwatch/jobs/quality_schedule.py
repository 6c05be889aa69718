"""Scheduled model quality: the companion estimates each model's precision without labels and exports it.

Configured in ``detwatch.yaml`` (the companion's settings file)::

    quality:
      interval: 15m          # how often (s, m, h; default 15m)
      period: 24h            # the trailing period estimated (a window ending now; default 24h)
      models:
        cams:                # model id
          period: 7d         # overrides the default period
          model_version: v2  # optional: one version's detections and labels

Each run computes :func:`detwatch.quality.period_precision` over the trailing period (the
calibration fitted on the period's labelled items, applied to all its detections'
confidence histograms: the same figures ``GET /v1/models/{id}/quality?period=...``
answers under ``estimated_precision``) and sets, by ``objdet.model.id``, the version when
configured, and ``objdet.detection.class`` (``__all__`` for the overall figure,
``semconv.ALL_CLASSES``):

- ``objdet.quality.precision``: the estimate;
- ``objdet.quality.precision_low`` / ``objdet.quality.precision_high``: its 95 % interval;
- ``objdet.quality.trusted``: 1 when the estimate can be trusted, else 0 (too few labels,
  or the period's confidences no longer look like those the calibration saw).

The gauges are observable: each run replaces the model's values, and only the latest
run's are reported (a class the period no longer has disappears). An estimate that
cannot be computed (no labelled detections of a class) has no value; ``trusted`` is
then 0. A run that fails for a model keeps that model's previous values. Alerts
(``estimated_precision``) fire only on trusted values. A/B arms are not exported: the
estimate covers the model's (version's) traffic.

One scheduler per machine (``<data_dir>/quality-schedule.lock``), as for the drift
schedule (:mod:`._periodic`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.instruments import QUALITY_GAUGES, CompanionInstruments, Reading
from detwatch.jobs._periodic import PeriodicJob, parse_interval, start_schedule
from detwatch.quality import EstimatedPrecision, LabelFreePrecision, parse_window, period_precision
from detwatch.storage import Storage
from detwatch_instrumentation import semconv

__all__ = [
    "QualitySchedule",
    "QualityScheduler",
    "ScheduledQuality",
    "quality_gauges",
    "quality_readings",
    "start_quality_schedule",
]

_logger = logging.getLogger("detwatch.quality")

DEFAULT_PERIOD: Final = "24h"
"""A day: enough detections for the histograms, recent enough to show a change within a day."""


@dataclass(frozen=True)
class ScheduledQuality:
    """One model's scheduled estimate."""

    model_id: str
    period: str = DEFAULT_PERIOD
    model_version: str | None = None


@dataclass(frozen=True)
class QualitySchedule:
    """The ``quality:`` section of the settings."""

    interval_s: float = 900.0
    period: str = DEFAULT_PERIOD
    models: tuple[ScheduledQuality, ...] = ()

    @classmethod
    def from_config(cls, section: Any) -> QualitySchedule:
        """Validate the section; raises ``ValueError`` naming the setting (``quality.models.<id>.period``)."""
        if not isinstance(section, Mapping):
            raise ValueError("quality: expected a mapping with interval, period and models")
        unknown = set(section) - {"interval", "period", "models"}
        if unknown:
            raise ValueError(f"quality.{sorted(unknown)[0]}: unknown setting (known: interval, models, period)")
        interval = parse_interval("quality.interval", section.get("interval", "15m"))
        period = _period("quality.period", section.get("period", DEFAULT_PERIOD))
        models = section.get("models", {})
        if not isinstance(models, Mapping):
            raise ValueError("quality.models: expected a mapping of model id to its settings")
        return cls(interval, period, tuple(_model(str(model_id), spec, period) for model_id, spec in models.items()))


def _period(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a window ending now such as 24h or 7d, got {value!r}")
    try:
        parse_window(value, now_unix_nano=time.time_ns())
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return value


def _model(model_id: str, spec: Any, period: str) -> ScheduledQuality:
    where = f"quality.models.{model_id}"
    if not 1 <= len(model_id) <= MAX_ID_LENGTH:
        raise ValueError(f"{where}: a model id of 1 to {MAX_ID_LENGTH} characters")
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping (period, model_version)")
    unknown = set(spec) - {"period", "model_version"}
    if unknown:
        raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown setting (known: model_version, period)")
    version = spec.get("model_version")
    if version is not None and (not isinstance(version, str) or not 1 <= len(version) <= MAX_ID_LENGTH):
        raise ValueError(f"{where}.model_version: expected a string of 1 to {MAX_ID_LENGTH} characters")
    return ScheduledQuality(model_id, _period(f"{where}.period", spec.get("period", period)), version)


def quality_gauges(estimate: LabelFreePrecision) -> list[tuple[str, EstimatedPrecision]]:
    """``(class, estimate)`` of every exported figure: the overall one (``__all__``) first, then each class."""
    return [(semconv.ALL_CLASSES, estimate.overall), *sorted(estimate.classes.items())]


class QualityScheduler(PeriodicJob[QualitySchedule, Storage]):
    """Runs a :class:`QualitySchedule` against a storage and sets the ``objdet.quality.*`` gauges."""

    thread_name = "detwatch-quality-schedule"
    logger = _logger

    def run_once(self, now_unix_nano: int | None = None) -> dict[str, LabelFreePrecision]:
        """One pass over the models; a failing model is logged and skipped, never raised."""
        now = time.time_ns() if now_unix_nano is None else now_unix_nano
        results: dict[str, LabelFreePrecision] = {}
        for entry in self.schedule.models:
            since, until = parse_window(entry.period, now_unix_nano=now)
            try:
                estimate = period_precision(
                    self.storage, entry.model_id, since_unix_nano=since, until_unix_nano=until,
                    model_version=entry.model_version,
                )  # fmt: skip
            except Exception:  # one model's failure must not stop the others
                _logger.exception("scheduled quality of %s failed", entry.model_id)
                continue
            results[entry.model_id] = estimate
            base = {semconv.ATTR_MODEL_ID: entry.model_id}
            if entry.model_version is not None:
                base[semconv.ATTR_MODEL_VERSION] = entry.model_version
            self.instruments.quality.replace(entry.model_id, quality_readings(estimate, base))
        self.runs += 1
        return results


def quality_readings(estimate: LabelFreePrecision, base: Mapping[str, str]) -> dict[str, list[Reading]]:
    """Gauge name -> readings of one model's estimate: per class and overall, values that are numbers only."""
    readings: dict[str, list[Reading]] = {spec.name: [] for spec in QUALITY_GAUGES}
    for name, figure in quality_gauges(estimate):
        attributes = {**base, semconv.ATTR_DETECTION_CLASS: name}
        trusted = figure.trusted and math.isfinite(figure.estimate)
        readings[semconv.QUALITY_TRUSTED.name].append((1.0 if trusted else 0.0, attributes))
        for spec, value in (
            (semconv.QUALITY_PRECISION, figure.estimate),
            (semconv.QUALITY_PRECISION_LOW, figure.ci[0]),
            (semconv.QUALITY_PRECISION_HIGH, figure.ci[1]),
        ):
            if math.isfinite(value):
                readings[spec.name].append((value, attributes))
    return readings


def start_quality_schedule(
    section: Any, data_dir: Path, database_url: str, instruments: CompanionInstruments | None = None
) -> QualityScheduler | None:
    """Start the scheduler for the settings' ``quality:`` section (None when absent or without models).

    Raises :class:`~detwatch.config.ConfigError` naming the setting for a bad section.
    """
    return start_schedule(
        section, QualitySchedule.from_config, QualityScheduler,
        data_dir=data_dir, database_url=database_url, instruments=instruments, name="quality-schedule",
    )  # fmt: skip
