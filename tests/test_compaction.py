"""Compaction rolls old hourly aggregate cells into daily ones without changing any total.

Expected cells come from the independent computation in ``_aggregates.expected_cells``
(hourly), added up per day here; the storage's roll-up is SQL. Both backends.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pytest

from _aggregates import expected_cells
from _drift_samples import rounded
from detwatch.abtest.service import results_for
from detwatch.api._analysis_json import ab_results_json, drift_report_json
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.drift import drift_report
from detwatch.storage import Storage

DAY_S = 86_400
BASE_DAY = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())
DAYS = 10
CLASSES = ("car", "person", "truck")

DayCell = tuple[str, str, int, str, str]
"""(model_version, ab_variant, day_unix, kind, key)."""


def make_events(seed: int, n: int, *, days: Iterable[int] = range(DAYS), prefix: str = "e") -> list[Prediction]:
    rng = random.Random(seed)
    day_list = list(days)
    events = []
    for i in range(n):
        t = (BASE_DAY + rng.choice(day_list) * DAY_S + rng.randrange(DAY_S)) * 1_000_000_000
        detections = [
            {
                "class": rng.choice(CLASSES),
                "confidence": (rng.randrange(1000) + 0.5) / 1000,
                "box": [10.0, 10.0, 10.0 + rng.uniform(2, 200), 10.0 + rng.uniform(2, 100)],
            }
            for _ in range(rng.choice([0, 1, 2, 4]))
        ]
        obj: dict[str, Any] = {
            "prediction_id": f"{prefix}{seed}-{i}",
            "model_id": "m",
            "model_version": rng.choice(["v1", "v2"]),
            "time_unix_nano": t,
            "latency_ms": round(rng.uniform(5, 80), 3),
            "image": {"key": f"k{i}", "width": 640, "height": 480},
            "detections": detections,
        }
        variant = rng.choice([None, "a", "b"])
        if variant:
            obj["ab_variant"] = variant
        events.append(parse_prediction(obj))
    return events


def per_day(events: Iterable[Prediction]) -> dict[DayCell, tuple[float, ...]]:
    """The expected cells of ``events`` (every sum, per-image ones too), added up per day."""
    out: dict[DayCell, list[float]] = defaultdict(lambda: [0.0] * 8)
    for (_, version, variant, hour, kind, key), sums in expected_cells(events).items():
        cell = out[(version, variant, hour - hour % DAY_S, kind, key)]
        for i, x in enumerate(sums):
            cell[i] += x
    return {k: tuple(v) for k, v in out.items()}


def stored_per_day(storage: Storage) -> dict[DayCell, tuple[float, ...]]:
    """What readers see (hourly and daily cells together), added up per day."""
    out: dict[DayCell, list[float]] = defaultdict(lambda: [0.0] * 8)
    for r in storage.aggregates("m", 0, 2**62):
        cell = out[(r.model_version, r.ab_variant, r.hour_unix - r.hour_unix % DAY_S, r.kind, r.key)]
        sums = (r.count, r.value, r.value_sq, r.images, r.count_sq, r.image_value_sq, r.count_value, r.count_total)
        for i, x in enumerate(sums):
            cell[i] += x
    return {k: tuple(v) for k, v in out.items()}


def assert_same(actual: dict[DayCell, tuple[float, ...]], expected: dict[DayCell, tuple[float, ...]]) -> None:
    assert sorted(actual) == sorted(expected)
    for cell, sums in expected.items():
        assert actual[cell] == pytest.approx(sums, rel=1e-9, abs=1e-9), cell


def hours_stored(storage: Storage) -> set[int]:
    """Hours (seconds) of the cells readers get back that are not a day's start."""
    return {r.hour_unix for r in storage.aggregates("m", 0, 2**62) if r.hour_unix % DAY_S}


def test_old_days_become_daily_cells_with_the_same_totals(storage: Storage) -> None:
    events = make_events(1, 600)
    storage.ingest_predictions(events)
    hourly_before = len(storage.aggregates("m", 0, 2**62))
    cutoff_ns = (BASE_DAY + 7 * DAY_S + 3600 * 5) * 1_000_000_000  # mid-day 7: days 0..6 roll up
    removed = storage.compact_aggregates(cutoff_ns)

    assert_same(stored_per_day(storage), per_day(events))
    old_hourly = {(c[1], c[2], c[3], c[4], c[5]) for c in expected_cells(events) if c[3] < BASE_DAY + 7 * DAY_S}
    assert removed == len(old_hourly)
    assert min(hours_stored(storage)) >= BASE_DAY + 7 * DAY_S  # only recent days keep their hours
    assert len(storage.aggregates("m", 0, 2**62)) < hourly_before
    assert storage.compact_aggregates(cutoff_ns) == 0  # nothing left to roll up


def test_an_event_back_filled_into_a_compacted_day_counts_at_once_and_is_folded_in_later(storage: Storage) -> None:
    events = make_events(2, 300)
    storage.ingest_predictions(events)
    cutoff_ns = (BASE_DAY + DAYS * DAY_S) * 1_000_000_000
    storage.compact_aggregates(cutoff_ns)
    late = make_events(3, 40, days=[2], prefix="late")
    storage.ingest_predictions(late)
    assert_same(stored_per_day(storage), per_day(events + late))  # counted before any compaction
    assert storage.compact_aggregates(cutoff_ns) > 0
    assert_same(stored_per_day(storage), per_day(events + late))
    assert hours_stored(storage) == set()


def test_reports_over_whole_days_are_the_same_before_and_after_compaction(storage: Storage) -> None:
    storage.ingest_predictions(make_events(4, 800))
    storage.register_model("m", None, {})
    reference, current = "2026-03-01:2026-03-04", "2026-03-05:2026-03-10"
    before = drift_report_json(drift_report(storage, "m", reference, current))
    test = storage.create_ab_test(
        name="t",
        model_a_id="m",
        model_b_id="m",
        config={"traffic_split": 0.5, "metrics": ["confidence", "latency"], "duration_days": DAYS},
        start_unix_nano=BASE_DAY * 1_000_000_000,
        end_unix_nano=(BASE_DAY + DAYS * DAY_S) * 1_000_000_000,
    )
    ab_before = ab_results_json(results_for(storage, test))
    storage.compact_aggregates((BASE_DAY + DAYS * DAY_S) * 1_000_000_000)
    after = drift_report_json(drift_report(storage, "m", reference, current))
    ab_after = ab_results_json(results_for(storage, test))
    assert rounded(after["tests"]) == rounded(before["tests"])  # per-image sums added in another order
    assert after["significant_drift"] == before["significant_drift"]
    for arm in ("model_a", "model_b"):
        for key in ("images", "detections", "avg_confidence", "detections_per_image", "empty_image_rate"):
            assert ab_after[arm][key] == pytest.approx(ab_before[arm][key])
        assert ab_after[arm]["latency_ms"] == pytest.approx(ab_before[arm]["latency_ms"])
        assert ab_after[arm]["class_mix"] == pytest.approx(ab_before[arm]["class_mix"])
    for metric, comparison in ab_before["comparisons"].items():
        # Fixed-horizon tests see the same totals; the sequential looks become daily.
        assert ab_after["comparisons"][metric]["p_value_fixed_horizon"] == pytest.approx(
            comparison["p_value_fixed_horizon"]
        )


def test_compaction_while_ingest_writes_into_the_same_days_loses_nothing(storage: Storage) -> None:
    first = make_events(5, 300, days=range(4))
    storage.ingest_predictions(first)
    batches = [make_events(100 + k, 30, days=range(4), prefix=f"c{k}-") for k in range(12)]
    cutoff_ns = (BASE_DAY + 4 * DAY_S) * 1_000_000_000
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            for batch in batches:
                storage.ingest_predictions(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    while writer.is_alive():
        storage.compact_aggregates(cutoff_ns)
    writer.join()
    assert errors == []
    storage.compact_aggregates(cutoff_ns)
    everything = first + [e for batch in batches for e in batch]
    assert_same(stored_per_day(storage), per_day(everything))
    assert hours_stored(storage) == set()


def expected_counts(
    events: Iterable[Prediction], start_s: int, end_s: int, kind: str, version: str | None, variant: str | None
) -> dict[str, int]:
    """Per key, the counts of the independently computed hourly cells in ``[start, end)`` of that version and arm."""
    out: dict[str, int] = defaultdict(int)
    for (_, v, arm, hour, k, key), sums in expected_cells(events).items():
        if k == kind and start_s <= hour < end_s and version in (None, v) and variant in (None, arm):
            out[key] += int(sums[0])
    return dict(out)


@pytest.mark.parametrize(("version", "variant"), [(None, None), ("v1", None), (None, "a"), ("v2", "b"), (None, "")])
def test_aggregate_counts_sums_one_kinds_cells_per_key_in_the_database(
    storage: Storage, version: str | None, variant: str | None
) -> None:
    """What the label-free quality reads: before and after compaction, of one version and arm where given."""
    events = make_events(5, 500)
    storage.ingest_predictions(events)
    start_s, end_s = BASE_DAY + 2 * DAY_S, BASE_DAY + 8 * DAY_S  # whole days: compaction changes nothing
    for _ in ("hourly", "compacted"):
        for kind in ("confidence", "detections"):
            got = storage.aggregate_counts(
                "m", start_s * 10**9, end_s * 10**9, kind, model_version=version, ab_variant=variant
            )
            assert got == expected_counts(events, start_s, end_s, kind, version, variant), kind
            assert got and all(type(v) is int for v in got.values())
        storage.compact_aggregates((BASE_DAY + DAYS * DAY_S) * 10**9)
    assert storage.aggregate_counts("m", start_s * 10**9, end_s * 10**9, "nothing") == {}
    assert storage.aggregate_counts("other", 0, 2**62, "confidence") == {}
