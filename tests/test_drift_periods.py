"""Periods (the user guide's dates, ISO intervals, relative windows) and reports built from stored aggregates."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _drift_samples import Box, Stream, as_stored, bin_images, rounded, simulate
from detwatch.api._analysis_json import drift_report_json
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.drift import PERIOD_PATTERN, PeriodError, compare, drift_report, parse_periods
from detwatch.storage import Storage

NOW = int(datetime(2024, 3, 10, 14, 37, tzinfo=UTC).timestamp()) * 10**9
HOUR = 3600 * 10**9


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 10**9


def test_the_user_guide_periods_are_whole_days_with_both_ends_included() -> None:
    reference, current = parse_periods("2024-01-01:2024-01-31", "2024-02-01:2024-02-28", now_unix_nano=NOW)
    assert (reference.start_unix_nano, reference.end_unix_nano) == (ns("2024-01-01"), ns("2024-02-01"))
    assert (current.start_unix_nano, current.end_unix_nano) == (ns("2024-02-01"), ns("2024-02-29"))
    assert reference.hours == 31 * 24
    assert reference.to_json()["start"] == "2024-01-01T00:00:00Z"


def test_iso_intervals_take_date_times_with_offsets_and_exclude_a_date_time_end() -> None:
    reference, current = parse_periods(
        "2024-01-01T06:00:00+02:00/2024-01-02T04:00:00Z", "2024-01-05/2024-01-06", now_unix_nano=NOW
    )
    assert (reference.start_unix_nano, reference.end_unix_nano) == (ns("2024-01-01T04:00"), ns("2024-01-02T04:00"))
    assert (current.start_unix_nano, current.end_unix_nano) == (ns("2024-01-05"), ns("2024-01-07"))


def test_last_24h_against_previous_7d_is_today_against_the_week_before() -> None:
    reference, current = parse_periods("previous 7d", "last 24h", now_unix_nano=NOW)
    assert (current.start_unix_nano, current.end_unix_nano) == (NOW - 24 * HOUR, NOW)
    assert (reference.start_unix_nano, reference.end_unix_nano) == (NOW - 8 * 24 * HOUR, NOW - 24 * HOUR)
    reference, current = parse_periods("2024-01-01:2024-01-07", "previous 2w", now_unix_nano=NOW)
    assert current.end_unix_nano == reference.start_unix_nano
    assert current.start_unix_nano == reference.start_unix_nano - 14 * 24 * HOUR


@pytest.mark.parametrize(
    ("reference", "current", "field"),
    [
        ("2024-01-01:2024-01-31", "2024-02-30:2024-03-01", "current_period"),
        ("January", "last 24h", "reference_period"),
        ("2024-02-01:2024-01-01", "last 24h", "reference_period"),
        ("previous 7d", "previous 1d", "reference_period"),
        ("last 0h", "last 24h", "reference_period"),
        ("last 24h", 42, "current_period"),
        ("1969-12-01:1969-12-31", "last 24h", "reference_period"),
        ("2024-01-01/2024-01-02/2024-01-03", "last 24h", "reference_period"),
    ],
)
def test_a_period_that_cannot_be_read_is_an_error_naming_it(reference: object, current: object, field: str) -> None:
    with pytest.raises(PeriodError) as error:
        parse_periods(reference, current, now_unix_nano=NOW)
    assert error.value.field == field


# ------------------------------------------------------------------ from storage


SIDE = 500
"""Square images: the relative width/height ratio of a box is its pixel ratio."""


def events(images: list[list[Box]], start: str, *, version: str, variant: str | None, tag: str) -> list[Prediction]:
    """Prediction events for ``images``, spread over six hours from ``start``."""
    first = ns(start)
    found = []
    for index, image in enumerate(images):
        detections = [
            {"class": b.name, "confidence": b.confidence, "box": [0.0, 0.0, b.width * SIDE, b.height * SIDE]}
            for b in image
        ]
        body = {
            "prediction_id": f"{tag}-{index}",
            "model_id": "vehicles",
            "model_version": version,
            "ab_variant": variant,
            "time_unix_nano": first + (index % 6) * HOUR + 60 * 10**9,
            "image": {"width": SIDE, "height": SIDE},
            "detections": detections,
        }
        found.append(parse_prediction(body, index=index))
    return found


def clipped(images: list[list[Box]]) -> list[list[Box]]:
    return [[Box(b.name, b.confidence, min(b.width, 1.0), min(b.height, 1.0)) for b in image] for image in images]


def test_a_report_from_storage_merges_the_hours_and_filters_version_and_arm(storage: Storage) -> None:
    rng = np.random.default_rng(30)
    reference = clipped(simulate(Stream(), 120, rng))
    current_b = clipped(simulate(Stream(confidence_logit=0.3, extra_empty=0.2), 120, rng))
    current_a = clipped(simulate(Stream(), 90, rng))
    other_version = clipped(simulate(Stream(log10_area=-4.0), 50, rng))
    batch = [
        *events(reference, "2024-01-03T00:00", version="v2", variant="b", tag="ref"),
        *events(current_b, "2024-02-03T00:00", version="v2", variant="b", tag="cur-b"),
        *events(current_a, "2024-02-04T00:00", version="v2", variant="a", tag="cur-a"),
        *events(other_version, "2024-02-05T00:00", version="v1", variant="b", tag="v1"),
    ]
    storage.ingest_predictions(batch)
    report = drift_report(
        storage, "vehicles", "2024-01-01:2024-01-31", "2024-02-01:2024-02-28", model_version="v2", ab_variant="b"
    )
    rows = storage.aggregates("vehicles", 0, 2**62)
    kinds, value_sq = {r.kind for r in rows}, hasattr(rows[0], "value_sq")
    assert {"images", "empty_images", "detections", "confidence"} <= kinds
    expected = compare(
        as_stored(bin_images(reference), kinds, value_sq=value_sq),
        as_stored(bin_images(current_b), kinds, value_sq=value_sq),
    )
    assert rounded(drift_report_json(report)["tests"]) == rounded(drift_report_json(expected)["tests"])
    assert report.significant_drift and report.status == "drift"
    assert report.current.images == 120
    assert report.current.model_version == "v2"
    assert drift_report_json(report)["current"]["period"] == "2024-02-01:2024-02-28"
    unfiltered = drift_report(storage, "vehicles", "2024-01-01:2024-01-31", "2024-02-01:2024-02-28")
    assert unfiltered.current.images == 120 + 90 + 50
    nothing = drift_report(storage, "vehicles", "2023-01-01:2023-01-31", "2024-02-01:2024-02-28")
    assert nothing.status == "insufficient_data"
    assert nothing.class_drift is None


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    text=st.one_of(
        st.text(max_size=40),
        st.from_regex(PERIOD_PATTERN, fullmatch=True),
        st.builds(
            lambda a, b, sep: f"{a.isoformat()}{sep}{b.isoformat()}",
            st.dates(),
            st.dates(),
            st.sampled_from([":", "/", " / ", "::"]),
        ),
    )
)
def test_every_period_the_parser_accepts_matches_the_documented_pattern(text: str) -> None:
    """The OpenAPI document's pattern must not forbid a period the service accepts (fuzzing relies on it)."""
    try:
        parse_periods(text, "last 24h", now_unix_nano=NOW)
    except PeriodError:
        return
    assert re.fullmatch(PERIOD_PATTERN.removeprefix("^").removesuffix("$"), text)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["reference_period", "current_period", "model_version", "ab_variant", "alpha", "min_ks", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.lists(st.integers())),
    )
)
def test_any_drift_body_gets_a_report_or_a_400_naming_a_field(body: dict[str, object]) -> None:
    response = APP.test_client().post("/v1/models/vehicles/drift", json=body)
    assert response.status_code in (200, 400), response.data
    document = response.get_json()
    if response.status_code == 400:
        # "body": Flask's test client writes non-finite floats as NaN/Infinity, which is not JSON.
        named = {*body, "reference_period", "current_period", "body"}
        assert document["error"]["field"] in named, document
    else:
        assert document["status"] == "insufficient_data"


_DATA_DIR = tempfile.TemporaryDirectory(prefix="detwatch-drift-")
APP = create_app(Settings(data_dir=Path(_DATA_DIR.name)))
APP.test_client().post("/v1/models", json={"model_id": "vehicles"})


@pytest.fixture(scope="module", autouse=True)
def _close_the_app_storage() -> Iterator[None]:
    yield
    storage = APP.extensions.get("detwatch.storage")
    if storage is not None:
        storage.close()
    _DATA_DIR.cleanup()


def test_a_window_of_minutes_is_refused_naming_the_field_and_the_whole_hours_it_would_read() -> None:
    with pytest.raises(PeriodError) as error:
        parse_periods("2024-03-01:2024-03-07", "2024-03-10T16:00:00Z/2024-03-10T16:01:00Z", now_unix_nano=NOW)
    assert error.value.field == "current_period"
    assert "whole hours" in error.value.message
    assert "2024-03-10T16:00:00Z/2024-03-10T17:00:00Z" in error.value.message


def test_a_relative_window_reports_the_window_it_read(storage: Storage) -> None:
    """32 images in the last 10 minutes: 20 before the current hour began, 12 after.

    The hourly cells can only give the 12 of the current hour; the report says that its
    window starts at the hour, and what was asked, instead of echoing the request.
    """
    now = ns("2024-03-10T16:05:00")
    rng = np.random.default_rng(4)
    images = clipped(simulate(Stream(), 32, rng))
    batch = []
    for i, image in enumerate(images):
        at = "2024-03-10T15:56:00" if i < 20 else "2024-03-10T16:01:00"
        batch += events([image], at, version="v2", variant="b", tag=f"img{i}")
    storage.ingest_predictions(batch)
    report = drift_report(storage, "vehicles", "previous 1h", "last 10m", now_unix_nano=now)
    current = drift_report_json(report)["current"]
    assert current["images"] == 12
    assert (current["start"], current["end"]) == ("2024-03-10T16:00:00Z", "2024-03-10T16:05:00Z")
    assert (current["requested_start"], current["requested_end"]) == ("2024-03-10T15:55:00Z", "2024-03-10T16:05:00Z")
    # The previous hour ends where the current window was asked to start; it reads whole hours.
    reference = drift_report_json(report)["reference"]
    assert reference["images"] == 20
    assert (reference["start"], reference["end"]) == ("2024-03-10T15:00:00Z", "2024-03-10T16:00:00Z")
