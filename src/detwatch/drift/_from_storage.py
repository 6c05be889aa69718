"""A drift report from the companion's stored per-hour aggregates.

Reads the cells of both periods (one query each, whatever the traffic: a period of
a month is at most 744 hours of cells), keeps the model version and A/B arm asked
for, merges the hours and compares. Days older than the companion's hourly horizon
are stored as daily cells (``detwatch.storage._compaction``): there a period counts a
day's cells when the day starts in it, so periods over old data resolve to whole days.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from detwatch.contract.shapes.drift import AB_VARIANTS
from detwatch.drift._periods import DriftInputError, Period, parse_periods
from detwatch.drift._report import AggregateCell, DriftConfig, DriftReport, PeriodSample, compare

__all__ = ["DRIFT_KINDS", "REQUEST_FIELDS", "AggregateReader", "drift_report", "report_for_request"]

DRIFT_KINDS: tuple[str, ...] = (
    "images",
    "empty_images",
    "detections",
    "confidence",
    "image_detections",
    "box_area",
    "aspect_ratio",
    "confidence_all",
    "box_log10_area",
    "box_log2_aspect",
)
"""The aggregate kinds a report reads (latency is not an input distribution; the last three carry per-image sums)."""


class StoredCell(AggregateCell, Protocol):
    @property
    def model_version(self) -> str: ...
    @property
    def ab_variant(self) -> str: ...


class AggregateReader(Protocol):
    """The one storage method a report needs (``detwatch.storage.Storage`` has it)."""

    def aggregates(
        self, model_id: str, start_unix_nano: int, end_unix_nano: int, kinds: Sequence[str] | None = None
    ) -> Sequence[StoredCell]: ...


def _sample(
    storage: AggregateReader, model_id: str, period: Period, model_version: str | None, ab_variant: str | None
) -> PeriodSample:
    rows = storage.aggregates(model_id, period.start_unix_nano, period.end_unix_nano, DRIFT_KINDS)
    if model_version is None and ab_variant is None:
        return PeriodSample.from_cells(rows)
    return PeriodSample.from_cells(
        row
        for row in rows
        if (model_version is None or row.model_version == model_version)
        and (ab_variant is None or row.ab_variant == ab_variant)
    )


def drift_report(
    storage: AggregateReader,
    model_id: str,
    reference_period: object,
    current_period: object,
    *,
    model_version: str | None = None,
    ab_variant: str | None = None,
    config: DriftConfig | None = None,
    now_unix_nano: int | None = None,
) -> DriftReport:
    """Compare ``current_period`` with ``reference_period`` for ``model_id``.

    ``model_version`` and ``ab_variant`` (``"a"``, ``"b"``, or ``""`` for traffic
    outside an A/B test) filter both periods. Raises
    :class:`~detwatch.drift.PeriodError` for a period it cannot read.
    """
    now = time.time_ns() if now_unix_nano is None else now_unix_nano
    reference, current = parse_periods(reference_period, current_period, now_unix_nano=now)
    report = compare(
        _sample(storage, model_id, reference, model_version, ab_variant),
        _sample(storage, model_id, current, model_version, ab_variant),
        config,
    )
    return replace(
        report,
        reference=replace(report.reference, period=reference, model_version=model_version, ab_variant=ab_variant),
        current=replace(report.current, period=current, model_version=model_version, ab_variant=ab_variant),
    )


REQUEST_FIELDS: tuple[str, ...] = ("reference_period", "current_period", "model_version", "ab_variant")
"""The fields of a drift request besides :class:`DriftConfig`'s options."""
MAX_VERSION_LENGTH = 256


def report_for_request(
    storage: AggregateReader, model_id: str, body: Mapping[str, Any], *, now_unix_nano: int | None = None
) -> DriftReport:
    """The report ``POST /v1/models/{model_id}/drift`` answers; raises :class:`DriftInputError` naming the field.

    ``body`` holds the two periods, optional ``model_version`` and ``ab_variant``
    filters (null means all) and any :class:`DriftConfig` option.
    """
    options = {k: v for k, v in body.items() if k not in REQUEST_FIELDS}
    try:
        config = DriftConfig.from_mapping(options)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise DriftInputError(field, message) from None
    version = body.get("model_version")
    if version is not None and (not isinstance(version, str) or not version or len(version) > MAX_VERSION_LENGTH):
        raise DriftInputError("model_version", f"must be a non-empty string of at most {MAX_VERSION_LENGTH} characters")
    variant = body.get("ab_variant")
    if variant is not None and variant not in AB_VARIANTS:
        raise DriftInputError("ab_variant", 'must be "a", "b", or "" (outside an A/B test)')
    report = drift_report(
        storage,
        model_id,
        body.get("reference_period"),
        body.get("current_period"),
        model_version=version,
        ab_variant=variant,
        config=config,
        now_unix_nano=now_unix_nano,
    )
    return report
