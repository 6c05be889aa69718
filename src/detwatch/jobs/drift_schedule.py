"""Scheduled drift: the companion compares a current window with a baseline, per model, and exports the scores.

Configured in ``detwatch.yaml`` (the companion's settings file)::

    drift:
      interval: 15m              # how often (s, m, h; default 15m)
      models:
        vehicles:                # model id
          current: last 24h      # default
          reference: previous 7d # default: the week before the current window
          model_version: v2      # optional filters
          ab_variant: b
          options: {alpha: 0.01} # optional DriftConfig settings

Each run sets the gauge ``objdet.drift.score`` (``semconv.DRIFT_SCORE``) for every
headline distance of the report, by ``objdet.model.id``, ``objdet.drift.kind``
(``class``, ``confidence``, ``count``, ``box_area``, ``aspect_ratio``,
``empty_rate``, and ``any`` for the verdict as 0/1) and ``objdet.drift.method``
(``jensen_shannon``, ``ks``, ``cohen_h``, ``holm``); model version and A/B arm
filters are attributes too. Grafana charts and alerts on it (``drift_score:<kind>``).
A distance without enough data in a run is not set by that run (the verdict ``any``
is then 0 unless another test is significant).

One scheduler per machine: gunicorn workers race for an exclusive ``flock`` on
``<data_dir>/drift-schedule.lock``; the winner runs the schedule, the others retry at
each interval (so a killed worker's duty passes on). Several replicas on other
machines compute the same values, which charts aggregate with ``max``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detwatch.drift import AB_VARIANTS, AggregateReader, DriftConfig, DriftReport, drift_report, parse_periods
from detwatch.instruments import CompanionInstruments
from detwatch.jobs._periodic import PeriodicJob, parse_interval, start_schedule
from detwatch_instrumentation import semconv

__all__ = ["DriftSchedule", "DriftScheduler", "ScheduledDrift", "drift_scores", "start_drift_schedule"]

_logger = logging.getLogger("detwatch.drift")

DEFAULT_INTERVAL_S = 900.0
"""15 minutes: aggregates are hourly, so checking more often mostly repeats a result."""

HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("class_mix", "class", "jensen_shannon"),
    ("confidence", "confidence", "ks"),
    ("detections_per_image", "count", "ks"),
    ("box_area", "box_area", "ks"),
    ("aspect_ratio", "aspect_ratio", "ks"),
    ("empty_rate", "empty_rate", "cohen_h"),
)
"""Report finding kind -> (``objdet.drift.kind``, ``objdet.drift.method``) of the exported score."""


@dataclass(frozen=True)
class ScheduledDrift:
    """One model's scheduled comparison."""

    model_id: str
    current: str = "last 24h"
    reference: str = "previous 7d"
    model_version: str | None = None
    ab_variant: str | None = None
    config: DriftConfig = field(default_factory=DriftConfig)


@dataclass(frozen=True)
class DriftSchedule:
    """The ``drift:`` section of the settings."""

    interval_s: float = DEFAULT_INTERVAL_S
    models: tuple[ScheduledDrift, ...] = ()

    @classmethod
    def from_config(cls, section: Any) -> DriftSchedule:
        """Validate the section; raises ``ValueError`` naming the setting (``drift.models.<id>.current``)."""
        if not isinstance(section, Mapping):
            raise ValueError("drift: expected a mapping with interval and models")
        unknown = set(section) - {"interval", "models"}
        if unknown:
            raise ValueError(f"drift.{sorted(unknown)[0]}: unknown setting (known: interval, models)")
        interval = parse_interval("drift.interval", section.get("interval", "15m"))
        models = section.get("models", {})
        if not isinstance(models, Mapping):
            raise ValueError("drift.models: expected a mapping of model id to its settings")
        return cls(interval, tuple(_model(str(model_id), spec) for model_id, spec in models.items()))


def _model(model_id: str, spec: Any) -> ScheduledDrift:
    where = f"drift.models.{model_id}"
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping (current, reference, model_version, ab_variant, options)")
    unknown = set(spec) - {"current", "reference", "model_version", "ab_variant", "options"}
    if unknown:
        raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown setting")
    entry = ScheduledDrift(model_id)
    current, reference = str(spec.get("current", entry.current)), str(spec.get("reference", entry.reference))
    try:
        parse_periods(reference, current, now_unix_nano=time.time_ns())
    except ValueError as exc:
        name = "reference" if str(exc).startswith("reference") else "current"
        raise ValueError(f"{where}.{name}: {exc}") from None
    version = spec.get("model_version")
    if version is not None and (not isinstance(version, str) or not version):
        raise ValueError(f"{where}.model_version: expected a non-empty string")
    variant = spec.get("ab_variant")
    if variant is not None and variant not in AB_VARIANTS:
        raise ValueError(f"{where}.ab_variant: expected a, b or an empty string")
    options = spec.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}.options: expected a mapping of drift settings")
    try:
        config = DriftConfig.from_mapping(options)
    except ValueError as exc:
        raise ValueError(f"{where}.options.{exc}") from None
    return ScheduledDrift(model_id, current, reference, version, variant, config)


def drift_scores(report: DriftReport) -> list[tuple[float, str, str]]:
    """``(value, kind, method)`` of every headline distance the report has, and the verdict (``any``)."""
    scores = []
    for kind, exported, method in HEADLINES:
        for finding in report.findings:
            if finding.kind == kind and not finding.subject:
                scores.append((finding.effect, exported, method))
    scores.append((1.0 if report.significant_drift else 0.0, "any", "holm"))
    return scores


class DriftScheduler(PeriodicJob[DriftSchedule, AggregateReader]):
    """Runs a :class:`DriftSchedule` against a storage and sets ``objdet.drift.score``."""

    thread_name = "detwatch-drift-schedule"
    logger = _logger

    def run_once(self, now_unix_nano: int | None = None) -> dict[str, DriftReport]:
        """One pass over the models; a failing model is logged and skipped, never raised."""
        reports: dict[str, DriftReport] = {}
        for entry in self.schedule.models:
            try:
                report = drift_report(
                    self.storage, entry.model_id, entry.reference, entry.current,
                    model_version=entry.model_version, ab_variant=entry.ab_variant, config=entry.config,
                    now_unix_nano=now_unix_nano,
                )  # fmt: skip
            except Exception:  # one model's failure must not stop the others
                _logger.exception("scheduled drift of %s failed", entry.model_id)
                continue
            reports[entry.model_id] = report
            base = {semconv.ATTR_MODEL_ID: entry.model_id}
            if entry.model_version is not None:
                base[semconv.ATTR_MODEL_VERSION] = entry.model_version
            if entry.ab_variant is not None:
                base[semconv.ATTR_AB_VARIANT] = entry.ab_variant
            for value, kind, method in drift_scores(report):
                self.instruments.drift_score.set(
                    value, {**base, semconv.ATTR_DRIFT_KIND: kind, semconv.ATTR_DRIFT_METHOD: method}
                )
        self.runs += 1
        return reports


def start_drift_schedule(
    section: Any, data_dir: Path, database_url: str, instruments: CompanionInstruments | None = None
) -> DriftScheduler | None:
    """Start the scheduler for the settings' ``drift:`` section (None when absent or without models).

    Raises :class:`~detwatch.config.ConfigError` naming the setting for a bad section.
    """
    return start_schedule(
        section, DriftSchedule.from_config, DriftScheduler,
        data_dir=data_dir, database_url=database_url, instruments=instruments, name="drift-schedule",
    )  # fmt: skip
