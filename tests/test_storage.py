"""Both storage backends, one suite: SQLite in a temporary file, PostgreSQL on a real server.

Every test that takes ``storage`` or ``url`` runs twice, once per backend; the
PostgreSQL server comes from ``_postgres`` (``DETWATCH_TEST_DATABASE_URL`` or a
private pgserver cluster) and is never skipped: if it cannot start, those tests fail.
Expected aggregates are computed here from the raw events with numpy, independently
of the storage's own summing code.

Read-only SQLite: the suite runs as root in CI containers, where ``chmod`` cannot
make a file read-only. It opens the file with ``sqlite:///...?mode=ro`` instead:
SQLite then opens it ``O_RDONLY``, which is what it falls back to for a file it may
not write, so the same ``SQLITE_READONLY`` error path is exercised. A full disk is
SQLite's own ``max_page_count`` limit, which fails with the same ``SQLITE_FULL``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Final

import numpy as np
import psycopg
import pytest

from _aggregates import Cell, Sums, assert_cells_equal, expected_cells
from _aggregates import stored_cells as _stored_cells
from detwatch.contract import bins
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.storage import (
    FeedbackInput,
    IngestResult,
    Storage,
    StorageError,
    StorageUnavailable,
    open_storage,
)
from detwatch.storage._aggregate import area_bins, aspect_bins, confidence_bins, latency_bins
from detwatch.storage._schema import LATEST_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_TABLE, Dialect, statements_for
from detwatch.storage.sqlite import CHECKPOINT_EVENTS, SQLiteStorage

NS: Final = 1_000_000_000
HOUR_NS: Final = 3600 * NS
BASE_TIME: Final = 1_706_745_600 * NS  # 2024-02-01T00:00:00Z
CLASSES: Final = ("car", "truck", "person", "bus")
TRACE: Final = "0af7651916cd43dd8448eb211c80319c"


_spawn = multiprocessing.get_context("spawn")


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def url(database_url: str) -> str:
    """A fresh, empty (unmigrated) database of each backend (conftest's ``database_url``)."""
    return database_url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def raw_execute(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run SQL beside the storage, as an operator would."""
    if is_sqlite(url):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        cursor = pg.execute(statement)
        return cursor.fetchall() if cursor.description is not None else []


# ------------------------------------------------------------------ events


def make_event(
    i: int,
    *,
    model_id: str = "vehicles",
    trace_id: str | None = None,
    span_id: str | None = None,
    prediction_id: str | None = None,
) -> Prediction:
    """Event ``i``: the same every time (seeded by ``i``), varied across ``i``.

    Confidences are never a multiple of 0.05 except 1.0, so that the bin of each is
    unambiguous whatever arithmetic computes it.
    """
    rng = random.Random(i)
    # Most images have a size; some do not, with boxes in pixels or (normalised) relative ones.
    image_kind = rng.choice(["sized", "sized", "sized", "unsized", "relative"])
    scale = 1 / 800 if image_kind == "relative" else 1.0  # every box then lies within [0, 1]
    detections = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):
        confidence = 1.0 if rng.random() < 0.05 else (rng.randrange(1000) + 0.5) / 1000
        x, y = rng.uniform(0, 600), rng.uniform(0, 400)
        box = [x, y, x + rng.uniform(1, 40) * rng.choice([1, 4]), y + rng.uniform(1, 40)]
        detections.append({"class": rng.choice(CLASSES), "confidence": confidence, "box": [v * scale for v in box]})
    image: dict[str, Any] = {"key": f"cam{i % 3}/{i:06d}.jpg"}
    if image_kind == "sized":
        image |= {"width": 640, "height": 480}
    obj: dict[str, Any] = {
        "prediction_id": prediction_id or f"p-{i:06d}",
        "model_id": model_id,
        "model_version": rng.choice(["v1", "v2"]),
        "time_unix_nano": BASE_TIME + rng.randrange(3 * HOUR_NS),
        "detections": detections,
        "image": image,
        "attributes": {"camera": f"cam{i % 3}"},
    }
    if rng.random() < 0.8:
        obj["latency_ms"] = round(rng.uniform(1.0, 50.0), 3)
    variant = rng.choice([None, "a", "b"])
    if variant is not None:
        obj["ab_variant"] = variant
    if trace_id is not None:
        obj["trace_id"], obj["span_id"] = trace_id, span_id
    return parse_prediction(obj)


def span_of(i: int) -> str:
    return f"{i:016x}"


def stored_cells(storage: Storage, model_id: str = "vehicles") -> dict[Cell, Sums]:
    return _stored_cells(storage, model_id)


# ------------------------------------------------------------------ migrations


def test_migrate_is_idempotent_and_reports_the_latest_version(url: str) -> None:
    storage = open_storage(url)
    try:
        assert storage.migrate() == LATEST_VERSION
        assert storage.migrate() == LATEST_VERSION
        assert storage.counts() == {t: 0 for t in storage.counts()}
    finally:
        storage.close()
    versions = raw_execute(url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [v for v, _ in MIGRATIONS]


def test_concurrent_migrations_apply_each_version_once(url: str) -> None:
    barrier = threading.Barrier(6)

    def start_replica(_: int) -> int:
        replica = open_storage(url)
        try:
            barrier.wait(timeout=10)
            return replica.migrate()
        finally:
            replica.close()

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(start_replica, range(6))) == [LATEST_VERSION] * 6
    assert raw_execute(url, "SELECT COUNT(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


def _migrate_in_child(url: str, barrier: Any) -> None:
    storage = open_storage(url)
    barrier.wait(timeout=30)
    version = storage.migrate()
    storage.close()
    raise SystemExit(0 if version == LATEST_VERSION else 1)


def test_sqlite_migrations_from_processes_starting_together_apply_once(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'detwatch.db'}"
    barrier = _spawn.Barrier(4)
    processes = [_spawn.Process(target=_migrate_in_child, args=(url, barrier)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert raw_execute(url, "SELECT COUNT(*) FROM schema_migrations") == [(len(MIGRATIONS),)]
    assert raw_execute(url, "PRAGMA journal_mode") == [("wal",)]


def test_migration_2_adds_sums_of_squares_and_keeps_existing_cells(url: str) -> None:
    # A database left at version 1 by an earlier detwatch, with one cell in it.
    statements = [
        SCHEMA_MIGRATIONS_TABLE,
        *statements_for(MIGRATIONS[0][1], "sqlite" if is_sqlite(url) else "postgresql"),
    ]
    for statement in statements:
        raw_execute(url, statement)
    raw_execute(url, "INSERT INTO schema_migrations (version, applied_unix_nano) VALUES (1, 0)")
    raw_execute(
        url,
        "INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, count, value) "
        "VALUES ('vehicles', 'v1', '', 3600, 'images', '', 3, 7.0)",
    )
    storage = open_storage(url)
    try:
        assert storage.migrate() == LATEST_VERSION
        (old,) = storage.aggregates("vehicles", 0, 2**62)
        assert (old.hour_unix, old.kind, old.count, old.value, old.value_sq) == (3600, "images", 3, 7.0, 0.0)
        event = parse_prediction(
            {"model_id": "vehicles", "model_version": "v1", "time_unix_nano": 3600 * NS, "detections": []}
        )
        storage.ingest_predictions([event])
        (merged,) = storage.aggregates("vehicles", 0, 2**62, kinds=["images"])
        assert (merged.count, merged.value, merged.value_sq) == (4, 7.0, 0.0)
    finally:
        storage.close()


def test_migration_6_adds_per_image_sums_without_rewriting_existing_cells(url: str) -> None:
    # A database left at version 5 by an earlier detwatch, with cells of one hour in it.
    dialect: Dialect = "sqlite" if is_sqlite(url) else "postgresql"
    raw_execute(url, SCHEMA_MIGRATIONS_TABLE)
    for version, statements in MIGRATIONS[:5]:
        for statement in statements_for(statements, dialect):
            raw_execute(url, statement)
        raw_execute(url, f"INSERT INTO schema_migrations (version, applied_unix_nano) VALUES ({version}, 0)")
    raw_execute(
        url,
        "INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, count, value, value_sq) "
        "VALUES ('vehicles', 'v1', '', 3600, 'detections', 'car', 4, 3.0, 2.5)",
    )
    raw_execute(
        url,
        "INSERT INTO aggregates_daily (model_id, model_version, ab_variant, day_unix, kind, key, count, value, "
        "value_sq) VALUES ('vehicles', 'v1', '', 0, 'detections', 'car', 2, 1.0, 0.5)",
    )
    storage = open_storage(url)
    try:
        assert storage.migrate() == LATEST_VERSION
        old = storage.aggregates("vehicles", 0, 2**62)
        sums = [(r.hour_unix, r.count, r.value, r.value_sq, r.images, r.count_sq, r.count_total) for r in old]
        assert sorted(sums) == [(0, 2, 1.0, 0.5, 0, 0.0, 0.0), (3600, 4, 3.0, 2.5, 0, 0.0, 0.0)]
        event = parse_prediction(
            {
                "model_id": "vehicles", "model_version": "v1", "time_unix_nano": 3600 * NS,
                "detections": [
                    {"class": "car", "confidence": 0.5, "box": [0, 0, 10, 10]},
                    {"class": "car", "confidence": 0.25, "box": [0, 0, 10, 20]},
                    {"class": "bus", "confidence": 0.75, "box": [0, 0, 20, 10]},
                ],
            }
        )  # fmt: skip
        storage.ingest_predictions([event])
        (car,) = [r for r in storage.aggregates("vehicles", 3600 * NS, 7200 * NS, ["detections"]) if r.key == "car"]
        # The old sums are kept; the new image adds n = 2, s = 0.75 (N = 3 detections on it).
        assert (car.count, car.value, car.value_sq) == (6, 3.75, 2.5 + 0.3125)
        assert (car.images, car.count_sq, car.image_value_sq, car.count_value, car.count_total) == (
            1, 4.0, 0.5625, 1.5, 6.0,
        )  # fmt: skip
    finally:
        storage.close()


def test_a_newer_schema_is_refused(url: str) -> None:
    storage = open_storage(url)
    try:
        storage.migrate()
        raw_execute(url, "INSERT INTO schema_migrations (version, applied_unix_nano) VALUES (999, 0)")
        with pytest.raises(StorageError, match="newer than this detwatch"):
            storage.migrate()
    finally:
        storage.close()


# ------------------------------------------------------------------ predictions and aggregates


def test_prediction_round_trips_unchanged(storage: Storage) -> None:
    events = [make_event(i, trace_id=TRACE, span_id=span_of(7)) for i in range(3)]
    assert storage.ingest_predictions(events) == IngestResult(inserted=3, duplicates=0)
    for event in events:
        assert storage.get_prediction(event.prediction_id) == event
    assert storage.find_predictions_by_span(TRACE, span_of(7)) == sorted(events, key=lambda e: e.prediction_id)
    assert storage.get_prediction("no-such-id") is None
    assert storage.find_predictions_by_span(TRACE, span_of(8)) == []


def test_duplicates_are_not_double_counted_in_aggregates(storage: Storage) -> None:
    events = [make_event(i) for i in range(120)]
    first = storage.ingest_predictions(events[:80])
    # A retried batch, a batch repeating ids within itself, and one overlapping the first.
    again = storage.ingest_predictions(events[:80])
    inner = storage.ingest_predictions(events[80:100] + events[80:100])
    overlap = storage.ingest_predictions(events[60:120])
    assert (first.inserted, first.duplicates) == (80, 0)
    assert (again.inserted, again.duplicates) == (0, 80)
    assert (inner.inserted, inner.duplicates) == (20, 20)
    assert (overlap.inserted, overlap.duplicates) == (20, 40)
    assert storage.counts()["predictions"] == 120
    assert_cells_equal(stored_cells(storage), expected_cells(events))


def test_models_record_versions_and_first_and_last_seen(storage: Storage) -> None:
    events = [make_event(i) for i in range(40)] + [make_event(100, model_id="people")]
    storage.ingest_predictions(events[:20])
    storage.ingest_predictions(events[20:])
    vehicles = storage.get_model("vehicles")
    assert vehicles is not None
    assert sorted(vehicles.versions) == ["v1", "v2"]
    times = [e.time_unix_nano for e in events if e.model_id == "vehicles"]
    assert (vehicles.first_seen_unix_nano, vehicles.last_seen_unix_nano) == (min(times), max(times))
    assert [m.id for m in storage.list_models()] == ["people", "vehicles"]
    assert storage.get_model("unknown") is None


def test_register_model_sets_metadata_and_adds_versions(storage: Storage) -> None:
    registered = storage.register_model("vehicles", "v3", {"framework": "onnx"})
    assert (registered.id, registered.versions, registered.metadata) == ("vehicles", ("v3",), {"framework": "onnx"})
    again = storage.register_model("vehicles", None, {})
    assert again.metadata == {"framework": "onnx"}  # empty metadata keeps what is stored
    storage.ingest_predictions([make_event(1)])
    model = storage.get_model("vehicles")
    assert model is not None
    assert set(model.versions) == {"v3", make_event(1).model_version}
    assert model.first_seen_unix_nano == make_event(1).time_unix_nano  # back-filled history counts
    assert storage.register_model("vehicles", "v4", {"framework": "tensorrt"}).metadata == {"framework": "tensorrt"}


def test_aggregates_select_hours_by_start_and_kinds(storage: Storage) -> None:
    events = [make_event(i) for i in range(60)]
    storage.ingest_predictions(events)
    second_hour = storage.aggregates("vehicles", BASE_TIME + HOUR_NS, BASE_TIME + 2 * HOUR_NS)
    assert {r.hour_unix for r in second_hour} == {BASE_TIME // NS + 3600}
    images = storage.aggregates("vehicles", BASE_TIME, BASE_TIME + 3 * HOUR_NS, kinds=["images"])
    assert {r.kind for r in images} == {"images"}
    assert sum(r.count for r in images) == 60
    assert storage.aggregates("vehicles", BASE_TIME, BASE_TIME + 3 * HOUR_NS, kinds=[]) == []
    assert storage.aggregates("other", 0, 2**62) == []


def test_merged_cells_give_the_exact_mean_and_variance_of_the_raw_values(storage: Storage) -> None:
    events = [make_event(i) for i in range(200)]
    storage.ingest_predictions(events[:90])
    storage.ingest_predictions(events[90:])
    # Merge every hour, version and arm (what a drift report over a period does).
    cells = storage.aggregates("vehicles", 0, 2**62)
    checks = {
        "latency_ms": np.array([e.latency_ms for e in events if e.latency_ms is not None]),
        "image_detections": np.array([len(e.detections) for e in events], dtype=float),
        "confidence": np.array([d.confidence for e in events for d in e.detections]),
    }
    for kind, raw in checks.items():
        mine = [c for c in cells if c.kind == kind]
        count, total, squares = sum(c.count for c in mine), sum(c.value for c in mine), sum(c.value_sq for c in mine)
        assert count == raw.size, kind
        assert total / count == pytest.approx(raw.mean(), rel=1e-12), kind
        assert squares / count - (total / count) ** 2 == pytest.approx(raw.var(), rel=1e-9), kind


def test_box_area_needs_an_image_size_or_relative_boxes_and_aspect_needs_pixels(storage: Storage) -> None:
    def event(i: int, image: dict[str, Any], box: list[float]) -> Prediction:
        detection = {"class": "car", "confidence": 0.5, "box": box}
        return parse_prediction(
            {
                "prediction_id": f"e{i}",
                "model_id": "m",
                "time_unix_nano": BASE_TIME,
                "image": image,
                "detections": [detection],
            }
        )

    storage.ingest_predictions(
        [
            event(1, {"width": 100, "height": 50}, [10.0, 10.0, 30.0, 20.0]),  # area 200/5000 = 0.04, ratio 2
            event(2, {}, [0.1, 0.1, 0.3, 0.5]),  # relative: area 0.08, no ratio (normalised units)
            event(3, {}, [10.0, 10.0, 20.0, 50.0]),  # pixels, size unknown: ratio 0.25, no area
            # Degenerate but valid: a thinnest possible box, in pixels, counts in the end bins with finite sums.
            event(4, {}, [0.0, 0.0, 5e-324, 1e7]),
            event(5, {}, [0.0, 0.0, 1e7, 5e-324]),
        ]
    )
    rows = storage.aggregates("m", 0, 2**62, ["box_area", "aspect_ratio"])
    cells = {(c.kind, c.key): (c.count, c.value) for c in rows}
    # Worked by hand: log10(0.04) = -1.398 -> (5 - 1.398) * 4 = 14.4 -> bin 14; log10(0.08) = -1.097 -> 15.6 -> 15;
    # log2(2) = 1 -> (1 + 4) / 0.25 = bin 20; log2(0.25) = -2 -> (-2 + 4) / 0.25 = bin 8.
    assert cells[("box_area", "car|14")][0] == 1
    assert cells[("box_area", "car|14")][1] == pytest.approx(0.04)
    assert cells[("box_area", "car|15")][0] == 1
    assert cells[("box_area", "car|15")][1] == pytest.approx(0.08)
    assert cells[("aspect_ratio", "20")] == (1, 2.0)
    assert cells[("aspect_ratio", "8")] == (1, 0.25)
    assert cells[("aspect_ratio", "0")][0] == 1
    assert cells[("aspect_ratio", "31")][0] == 1
    assert all(math.isfinite(c.value) and math.isfinite(c.value_sq) for c in rows)
    assert len(cells) == 6


@pytest.mark.parametrize(
    ("vectorised", "scalar", "edges"),
    [
        (area_bins, bins.area_bin, bins.area_edges()),
        (aspect_bins, lambda r: bins.aspect_bin(r, 1.0), bins.aspect_edges()),
        (latency_bins, bins.latency_bin, bins.latency_edges_ms()),
        (confidence_bins, bins.confidence_bin, bins.confidence_edges()),
    ],
)
def test_ingests_array_binning_equals_the_bins_module(vectorised: Any, scalar: Any, edges: list[float]) -> None:
    # Every edge and its floating-point neighbours (where logarithms may differ in the last bit),
    # values far outside the range, zero, and a spread of random values.
    around = np.array(edges)
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            around,
            np.nextafter(around, 0.0),
            np.nextafter(around, np.inf),
            [0.0, 5e-324, 1e-300, 1e300, edges[0] / 3, edges[-1] * 3],
            10 ** rng.uniform(np.log10(edges[1]) - 1, np.log10(edges[-1]) + 1, 5000),
        ]
    )
    if vectorised is confidence_bins:
        values = values[values <= 1.0]
    assert vectorised(values).tolist() == [scalar(float(v)) for v in values]


def test_expire_predictions_deletes_raw_events_but_keeps_aggregates(storage: Storage) -> None:
    events = [make_event(i) for i in range(80)]
    storage.ingest_predictions(events)
    before = stored_cells(storage)
    cutoff = BASE_TIME + HOUR_NS + HOUR_NS // 2
    old = [e for e in events if e.time_unix_nano < cutoff]
    assert storage.expire_predictions(cutoff) == len(old)
    assert storage.counts()["predictions"] == len(events) - len(old)
    assert all(storage.get_prediction(e.prediction_id) is None for e in old)
    assert stored_cells(storage) == before
    # An expired event sent again is new to the raw table: retention must exceed the senders' retry window.
    assert storage.expire_predictions(cutoff) == 0


# ------------------------------------------------------------------ feedback


@pytest.mark.parametrize("named_by", ["prediction_id", "span"])
def test_feedback_before_its_prediction_joins_when_the_prediction_arrives(storage: Storage, named_by: str) -> None:
    event = make_event(5, trace_id=TRACE, span_id=span_of(5))
    if named_by == "prediction_id":
        item = FeedbackInput(type="wrong_label", prediction_id=event.prediction_id, corrected_class="bus")
    else:
        item = FeedbackInput(type="wrong_label", trace_id=TRACE, span_id=span_of(5), corrected_class="bus")
    [waiting] = storage.add_feedback([item])
    assert waiting.model_id is None
    assert waiting.prediction_id == (event.prediction_id if named_by == "prediction_id" else None)

    result = storage.ingest_predictions([make_event(6, trace_id=TRACE, span_id=span_of(6)), event])
    assert result.feedback_joined == 1
    [joined] = storage.list_feedback(model_id="vehicles")
    assert (joined.id, joined.prediction_id, joined.model_id) == (waiting.id, event.prediction_id, "vehicles")
    assert (joined.trace_id, joined.span_id) == (TRACE, span_of(5))
    assert storage.ingest_predictions([event]).feedback_joined == 0


def test_feedback_after_its_prediction_is_resolved_at_once(storage: Storage) -> None:
    event = make_event(5, trace_id=TRACE, span_id=span_of(5))
    storage.ingest_predictions([event])
    [by_span] = storage.add_feedback([FeedbackInput(type="correct", trace_id=TRACE, span_id=span_of(5))])
    [by_id] = storage.add_feedback([FeedbackInput(type="false_positive", prediction_id=event.prediction_id)])
    assert (by_span.prediction_id, by_span.model_id) == (event.prediction_id, "vehicles")
    assert (by_id.trace_id, by_id.span_id, by_id.model_id) == (TRACE, span_of(5), "vehicles")


def test_feedback_on_a_batch_span_keeps_the_span_and_detection_index(storage: Storage) -> None:
    batch = [
        make_event(i, trace_id=TRACE, span_id=span_of(9), prediction_id=f"{TRACE}-{span_of(9)}-{i}") for i in range(3)
    ]
    early = FeedbackInput(type="false_positive", trace_id=TRACE, span_id=span_of(9), detection_index=0)
    storage.add_feedback([early])
    assert storage.ingest_predictions(batch).feedback_joined == 1  # the model is now known, the image is not
    late = FeedbackInput(type="false_positive", trace_id=TRACE, span_id=span_of(9), detection_index=2)
    named = FeedbackInput(type="correct", prediction_id=batch[1].prediction_id, trace_id=TRACE, span_id=span_of(9))
    storage.add_feedback([late, named])
    records = sorted(storage.list_feedback(model_id="vehicles"), key=lambda r: (r.type, r.detection_index or 0))
    assert [(r.type, r.prediction_id, r.detection_index) for r in records] == [
        ("correct", batch[1].prediction_id, None),
        ("false_positive", None, 0),
        ("false_positive", None, 2),
    ]
    assert all((r.trace_id, r.span_id) == (TRACE, span_of(9)) for r in records)


def test_feedback_with_a_seen_idempotency_key_is_stored_once(storage: Storage) -> None:
    item = FeedbackInput(
        type="wrong_box", prediction_id="p-1", corrected_box=(1.0, 2.0, 30.0, 40.0), idempotency_key="k1"
    )
    other = FeedbackInput(type="correct", prediction_id="p-2", idempotency_key="k2")
    first, repeated_in_batch, second = storage.add_feedback([item, item, other])
    assert not first.duplicate and repeated_in_batch.duplicate and not second.duplicate
    assert repeated_in_batch.id == first.id
    [retried] = storage.add_feedback([item])
    assert retried.duplicate
    assert retried.id == first.id and retried.corrected_box == (1.0, 2.0, 30.0, 40.0)
    no_key = FeedbackInput(type="correct", prediction_id="p-1")
    storage.add_feedback([no_key, no_key])  # without a key every post is new
    assert storage.counts()["feedback"] == 4


def test_list_feedback_filters_by_model_newest_first(storage: Storage) -> None:
    storage.ingest_predictions([make_event(1), make_event(2, model_id="people")])
    storage.add_feedback(
        [
            FeedbackInput(type="correct", prediction_id="p-000001", time_unix_nano=BASE_TIME + 1),
            FeedbackInput(type="correct", prediction_id="p-000002", time_unix_nano=BASE_TIME + 2),
            FeedbackInput(type="missed_object", prediction_id="p-000001", time_unix_nano=BASE_TIME + 3),
        ]
    )
    assert [r.type for r in storage.list_feedback(model_id="vehicles")] == ["missed_object", "correct"]
    assert [r.time_unix_nano for r in storage.list_feedback(limit=2)] == [BASE_TIME + 3, BASE_TIME + 2]


# ------------------------------------------------------------------ datasets


def test_datasets_start_with_an_empty_version_and_grow(storage: Storage) -> None:
    dataset = storage.create_dataset("vehicles-hard", "hard cases")
    assert (dataset.version.name, dataset.version.parent_version_id) == ("v1", None)
    v2 = storage.create_dataset_version(dataset.id, "v2 - with feedback", dataset.version.id)
    stored = storage.get_dataset(dataset.id)
    assert stored is not None
    assert [v.id for v in stored.versions] == [dataset.version.id, v2.id]
    assert stored.version == v2 and v2.parent_version_id == dataset.version.id
    assert storage.get_dataset("missing") is None
    with pytest.raises(LookupError):
        storage.create_dataset_version("missing", "v2", None)


# ------------------------------------------------------------------ concurrency and crashes


def test_concurrent_thread_writers_store_each_event_once(storage: Storage) -> None:
    events = [make_event(i) for i in range(400)]

    def writer(k: int) -> int:
        # Eight writers, each sending an overlapping stretch in shuffled batches.
        mine = events[k * 40 : k * 40 + 120]
        random.Random(k).shuffle(mine)
        return sum(storage.ingest_predictions(mine[s : s + 20]).inserted for s in range(0, len(mine), 20))

    with ThreadPoolExecutor(8) as pool:
        inserted = sum(pool.map(writer, range(8)))
    sent = {e.prediction_id for k in range(8) for e in events[k * 40 : k * 40 + 120]}
    assert inserted == len(sent) == storage.counts()["predictions"]
    assert_cells_equal(stored_cells(storage), expected_cells(e for e in events if e.prediction_id in sent))


def _ingest_range(url: str, start: int, stop: int) -> None:
    storage = open_storage(url)
    ids = list(range(start, stop))
    random.Random(start).shuffle(ids)
    for s in range(0, len(ids), 20):
        storage.ingest_predictions([make_event(i) for i in ids[s : s + 20]])
    storage.close()


def test_concurrent_process_writers_store_each_event_once(storage: Storage, url: str) -> None:
    # Four processes x 200 events, each overlapping the next by 50: 650 distinct events.
    processes = [_spawn.Process(target=_ingest_range, args=(url, k * 150, k * 150 + 200)) for k in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert storage.counts()["predictions"] == 650
    assert_cells_equal(stored_cells(storage), expected_cells(make_event(i) for i in range(650)))


BATCH: Final = 25


def _ingest_until_killed(url: str, acknowledgements: Connection) -> None:
    storage = open_storage(url)
    for batch in range(10_000):
        storage.ingest_predictions([make_event(batch * BATCH + i) for i in range(BATCH)])
        acknowledgements.send(batch)  # only after the commit returned


def test_killed_writer_loses_nothing_it_acknowledged(storage: Storage, url: str) -> None:
    receiver, sender = _spawn.Pipe(duplex=False)
    child = _spawn.Process(target=_ingest_until_killed, args=(url, sender))
    child.start()
    sender.close()
    acknowledged: list[int] = []
    kill_after = random.randrange(8, 20)
    while len(acknowledged) < kill_after:
        assert receiver.poll(30), "the writer acknowledged nothing for 30 s"
        acknowledged.append(receiver.recv())
    os.kill(child.pid or 0, signal.SIGKILL)  # in the middle of its next transaction, most likely
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    while True:  # what it sent before dying is still in the pipe
        try:
            acknowledged.append(receiver.recv())
        except EOFError:
            break

    for batch in acknowledged:
        assert all(storage.get_prediction(f"p-{batch * BATCH + i:06d}") is not None for i in range(BATCH)), batch
    # All or nothing: whole batches only (the one in flight is stored entirely or not at all),
    # and aggregates that agree with exactly the stored events.
    count = storage.counts()["predictions"]
    assert count % BATCH == 0
    assert count // BATCH in (len(acknowledged), len(acknowledged) + 1)
    assert_cells_equal(stored_cells(storage), expected_cells(make_event(i) for i in range(count)))
    if is_sqlite(url):
        assert raw_execute(url, "PRAGMA integrity_check") == [("ok",)]


def test_feedback_racing_its_prediction_is_always_joined(storage: Storage) -> None:
    events = [make_event(i, trace_id=TRACE, span_id=span_of(i)) for i in range(150)]
    items = [
        FeedbackInput(type="correct", trace_id=TRACE, span_id=span_of(i))
        if i % 2
        else FeedbackInput(type="correct", prediction_id=events[i].prediction_id)
        for i in range(len(events))
    ]
    # Each prediction and its feedback are sent at the same moment, from two threads.
    step = threading.Barrier(2)

    def ingest() -> None:
        for e in events:
            step.wait(timeout=10)
            storage.ingest_predictions([e])

    def post() -> None:
        for item in items:
            step.wait(timeout=10)
            storage.add_feedback([item])

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(ingest), pool.submit(post)]:
            future.result()
    records = storage.list_feedback(limit=1000)
    assert len(records) == len(events)
    unjoined = [r for r in records if r.model_id is None or r.prediction_id is None]
    assert unjoined == []


# ------------------------------------------------------------------ unavailable databases


def test_read_only_sqlite_file_raises_storage_unavailable(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'detwatch.db'}"
    writer = open_storage(url)
    writer.migrate()
    writer.ingest_predictions([make_event(1)])
    writer.close()

    reader = open_storage(url + "?mode=ro")
    try:
        assert reader.migrate() == LATEST_VERSION  # up to date: no write needed
        assert reader.get_prediction("p-000001") == make_event(1)
        with pytest.raises(StorageUnavailable, match="read-only"):
            reader.ingest_predictions([make_event(2)])
        with pytest.raises(StorageUnavailable):
            reader.add_feedback([FeedbackInput(type="correct", prediction_id="p-000001")])
        assert reader.counts()["predictions"] == 1
    finally:
        reader.close()


class _TinyDiskSQLite(SQLiteStorage):
    """SQLite with a page limit: a disk that fills up, with SQLite's own SQLITE_FULL."""

    max_pages = 0

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        if self.max_pages:
            conn.execute(f"PRAGMA max_page_count = {self.max_pages}")
        return conn


def test_full_sqlite_disk_raises_storage_unavailable_and_stores_nothing(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'detwatch.db'}"
    storage = _TinyDiskSQLite(url)
    storage.migrate()
    storage.ingest_predictions([make_event(0)])
    storage.close()
    pages = raw_execute(url, "PRAGMA page_count")[0][0]
    full = _TinyDiskSQLite(url)
    full.max_pages = pages + 2
    try:
        with pytest.raises(StorageUnavailable, match="disk full"):
            full.ingest_predictions([make_event(i) for i in range(1, 300)])
        assert full.counts()["predictions"] == 1
        assert sum(r.count for r in full.aggregates("vehicles", 0, 2**62, kinds=["images"])) == 1
    finally:
        full.close()


def test_locked_sqlite_database_raises_storage_unavailable_after_the_busy_timeout(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'detwatch.db'}"
    storage = SQLiteStorage(url, busy_timeout=0.3)
    storage.migrate()
    holder = sqlite3.connect(tmp_path / "detwatch.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="locked"):
            storage.ingest_predictions([make_event(1)])
        assert 0.25 < time.monotonic() - started < 5
        assert storage.counts()["predictions"] == 0  # readers are not blocked (WAL)
        holder.execute("ROLLBACK")
        assert storage.ingest_predictions([make_event(1)]).inserted == 1  # the sender's retry succeeds
    finally:
        holder.close()
        storage.close()


def test_read_only_postgres_raises_storage_unavailable(pg_url: str) -> None:
    setup = open_storage(pg_url)
    setup.migrate()
    setup.close()
    # What a hot standby, or an operator stopping writes, looks like to a client.
    raw_execute(
        pg_url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', "
        "current_database()); END $$",
    )
    standby = open_storage(pg_url)
    try:
        assert standby.migrate() == LATEST_VERSION
        with pytest.raises(StorageUnavailable, match="read-only"):
            standby.ingest_predictions([make_event(1)])
        with pytest.raises(StorageUnavailable, match="read-only"):
            standby.register_model("vehicles", None, {})
        assert standby.counts()["predictions"] == 0
    finally:
        standby.close()


def test_unreachable_postgres_raises_storage_unavailable(tmp_path: Any) -> None:
    storage = open_storage(f"postgresql://detwatch@/detwatch?host={tmp_path}&connect_timeout=2")
    with pytest.raises(StorageUnavailable):
        storage.migrate()
    with pytest.raises(StorageUnavailable):
        storage.ingest_predictions([make_event(1)])
    storage.close()


def test_postgres_session_ended_by_the_server_is_replaced(pg_url: str) -> None:
    storage = open_storage(pg_url)
    storage.migrate()
    storage.ingest_predictions([make_event(1)])
    terminated = raw_execute(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'detwatch' AND datname = current_database()",
    )
    assert terminated and all(ok for (ok,) in terminated)
    time.sleep(0.1)
    assert storage.ingest_predictions([make_event(2)]).inserted == 1
    assert storage.counts()["predictions"] == 2
    storage.close()


def test_open_storage_rejects_what_it_cannot_open() -> None:
    with pytest.raises(ValueError, match=r"expected sqlite.*schemes: sqlite:, postgresql:, postgres:"):
        open_storage("mysql://localhost/db")
    with pytest.raises(ValueError, match="in-memory"):
        open_storage("sqlite:///:memory:")


def test_metadata_with_integers_beyond_64_bits_is_stored_exactly(storage: Storage) -> None:
    model = storage.register_model("big", None, {"seed": 80842038071530274816, "nested": [{"n": -(2**70)}]})
    assert model.metadata == {"seed": 80842038071530274816, "nested": [{"n": -(2**70)}]}
    assert storage.get_model("big") == model


def _count_transactions(storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch ``storage`` to record, per ingest transaction, the index it started from."""
    starts: list[int] = []
    run = storage._ingest_run

    def counted(*args: Any) -> tuple[int, int, int]:
        starts.append(args[-1])
        return run(*args)

    monkeypatch.setattr(storage, "_ingest_run", counted)
    return starts


@pytest.mark.parametrize(("chunk", "waiting"), [("0", True), ("7", False), ("7", True)])
def test_a_batch_stored_in_chunks_or_whole_gives_the_same_rows_and_aggregates(
    tmp_path: Any, chunk: str, waiting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}?ingest_chunk={chunk}")
    assert isinstance(storage, SQLiteStorage)
    if waiting:  # a writer seems to wait throughout: every look after 7 events yields (none with chunk 0)
        monkeypatch.setattr(storage, "_writer_waiting", lambda since: True)
    starts = _count_transactions(storage, monkeypatch)
    try:
        storage.migrate()
        events = [make_event(i) for i in range(60)]
        first = storage.ingest_predictions(events[:40])
        second = storage.ingest_predictions(events[20:])  # half already stored, spread over the chunks
        assert (first.inserted, second.inserted, second.duplicates) == (40, 20, 20)
        assert storage.counts()["predictions"] == 60
        assert_cells_equal(stored_cells(storage), expected_cells(events))
        # One transaction per batch unless a writer waits; then one per run of 7 events.
        assert starts == ([*range(0, 40, 7), *range(0, 40, 7)] if waiting and chunk == "7" else [0, 0])
    finally:
        storage.close()


def test_the_wal_is_checkpointed_in_the_background_after_enough_ingest(tmp_path: Any) -> None:
    """Past CHECKPOINT_EVENTS, a thread copies the WAL into the database file (SQLite's own threshold is far off)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SQLiteStorage)
    storage.migrate()
    empty = storage.path.stat().st_size
    try:
        events = [make_event(i) for i in range(CHECKPOINT_EVENTS + 10)]
        for start in range(0, len(events), 500):
            storage.ingest_predictions(events[start : start + 500])
        deadline = time.monotonic() + 10
        while storage.path.stat().st_size <= empty and time.monotonic() < deadline:
            time.sleep(0.01)
        assert storage.path.stat().st_size > empty  # pages copied out of the WAL
        thread = storage._checkpointer._thread
        assert thread is not None and thread.is_alive() and thread is not threading.current_thread()
    finally:
        storage.close()
    assert not thread.is_alive()  # close() ends it
    with sqlite3.connect(storage.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == CHECKPOINT_EVENTS + 10


def test_a_writer_that_waits_for_the_lock_makes_ingest_yield_it(tmp_path: Any) -> None:
    """A registry write blocked by a held lock stamps the marker; ingest then sees a waiter."""
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SQLiteStorage)
    storage.migrate()
    began = time.time_ns()
    assert not storage._writer_waiting(began)
    holder = sqlite3.connect(storage.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(1) as pool:
            write = pool.submit(storage.register_model, "m", None, {})
            deadline = time.monotonic() + 10
            while not storage._writer_waiting(began) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert storage._writer_waiting(began)  # seen while the writer still waits
            assert not write.done()
            holder.execute("COMMIT")
            assert write.result(timeout=10).id == "m"
    finally:
        holder.close()
        storage.close()
    assert not storage._writer_waiting(time.time_ns())  # the stamp says since when, not forever


def test_ingest_does_not_take_the_lock_while_a_writer_is_waiting(tmp_path: Any) -> None:
    """While the marker is fresh (a waiting writer stamps it every 0.2 ms), bulk ingest does not begin.

    The marker is stamped once, 0.3 s ahead: fresh until then, whatever the scheduler does
    (a stamping thread in this process could be held off for ms by the GIL).
    """
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SQLiteStorage)
    storage.migrate()
    try:
        fresh_until = time.time_ns() + 300_000_000
        storage._waiting_marker.touch()
        os.utime(storage._waiting_marker, ns=(fresh_until, fresh_until))
        storage.register_model("m", None, {})  # an ordinary write does not defer
        assert time.time_ns() < fresh_until
        storage.ingest_predictions([make_event(i) for i in range(20)])
        assert time.time_ns() >= fresh_until  # not before the waiter's last stamp
        assert storage.counts()["predictions"] == 20
    finally:
        storage.close()


def test_a_sqlite_url_with_a_bad_ingest_chunk_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="ingest_chunk"):
        open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}?ingest_chunk=many")


def test_a_marker_stamped_ahead_of_the_clock_does_not_hold_ingest_back(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stamp an hour ahead was made before the clock stepped back (NTP): nobody is waiting.

    Read as a waiter, it kept bulk ingest from beginning for its whole busy timeout, and
    then split the batch into 128-event transactions that each waited again.
    """
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(storage, SQLiteStorage)
    storage.migrate()
    try:
        ahead = time.time_ns() + 3600 * 10**9
        storage._waiting_marker.touch()
        os.utime(storage._waiting_marker, ns=(ahead, ahead))
        assert not storage._writer_waiting(time.time_ns())
        sleeps: list[float] = []
        monkeypatch.setattr(time, "sleep", sleeps.append)  # _begin polls the lock with time.sleep
        assert storage.ingest_predictions([make_event(i) for i in range(300)]).inserted == 300
        assert sleeps == []  # began at once: the lock was free and the stale stamp ignored
    finally:
        storage.close()
