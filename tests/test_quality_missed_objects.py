"""Recall without labels: no estimate, and the missed_object feedback rate counted by storage (SQLite, PostgreSQL).

The predictions the quality route's tests ingest, missed_object feedback posted on
some of them (and other feedback, and a post outside the period): the counts must be
the posts and images sent, per version and model-wide, in storage and in the route's
answer; the statement on SQLite reads the feedback through its model/time index and
the predictions by primary key, never a table scan.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.contract.shapes import QualityReport
from detwatch.quality import NO_LABEL_FREE_RECALL, label_free_recall
from detwatch.storage import _missed_objects, open_storage
from test_quality_api import ok, setup

NANO = 1_000_000_000
MISSED_V1 = ["p0001", "p0002", "p0003", "p0010", "p0011"]
MISSED_V2 = ["p1000", "p1001", "p1002"]


def _missed(client: FlaskClient, prediction_id: str, **extra: Any) -> None:
    body = {"type": "missed_object", "prediction_id": prediction_id, "corrected_class": "person",
            "corrected_box": [10, 10, 50, 60], **extra}  # fmt: skip
    ok(client.post("/v1/feedback", json=body), 201)


def _post_feedback(client: FlaskClient) -> None:
    for prediction_id in MISSED_V1 + MISSED_V2:
        _missed(client, prediction_id)
    # Other types are no missed objects; a post a month ago is outside a week.
    ok(client.post("/v1/feedback", json={"type": "correct", "prediction_id": "p0004"}), 201)
    body = {"type": "false_positive", "prediction_id": "p0005", "detection_index": 0}
    ok(client.post("/v1/feedback", json=body), 201)
    month_ago = datetime.fromtimestamp(time.time() - 30 * 86_400, UTC).isoformat().replace("+00:00", "Z")
    _missed(client, "p2001", time=month_ago)


def test_storage_counts_the_period_s_missed_object_posts_and_predicted_images(app: Flask, client: FlaskClient) -> None:
    setup(client)  # 150 images of v1, 40 of v2 in the last hours, one of v1 a month ago
    _post_feedback(client)
    storage: Any = app.extensions["detwatch.storage"]
    now = time.time_ns() + NANO
    week = {"since_unix_nano": now - 7 * 86_400 * NANO, "until_unix_nano": now}
    assert storage.missed_object_counts("cams", **week) == (len(MISSED_V1) + len(MISSED_V2), 190)
    assert storage.missed_object_counts("cams", **week, model_version="v1") == (len(MISSED_V1), 150)
    assert storage.missed_object_counts("cams", **week, model_version="v2") == (len(MISSED_V2), 40)
    assert storage.missed_object_counts("cams", **week, model_version="v9") == (0, 0)
    assert storage.missed_object_counts("cams", **week, ab_variant="a") == (0, 0)  # nothing was routed
    assert storage.missed_object_counts("trucks", **week) == (0, 0)
    quarter = {"since_unix_nano": now - 90 * 86_400 * NANO, "until_unix_nano": now}
    assert storage.missed_object_counts("cams", **quarter) == (len(MISSED_V1) + len(MISSED_V2) + 1, 191)

    recall = label_free_recall(
        storage, "cams", since_unix_nano=week["since_unix_nano"], until_unix_nano=now, model_version="v1"
    )
    assert recall.estimate is None and recall.reason == NO_LABEL_FREE_RECALL
    assert recall.missed_object_feedback.rate == pytest.approx(len(MISSED_V1) / 150)


def test_the_quality_answer_has_no_recall_estimate_and_the_missed_object_rate(client: FlaskClient) -> None:
    setup(client)
    _post_feedback(client)
    report = ok(client.get("/v1/models/cams/quality?period=7d&model_version=v2"))
    msgspec.convert(report, QualityReport)  # the declared shape
    recall = report["label_free_recall"]
    assert recall["estimate"] is None
    assert "recall has no label-free estimate from detections alone" in recall["reason"]
    assert recall["missed_object_feedback"] == {
        "count": len(MISSED_V2),
        "predictions": 40,
        "rate": pytest.approx(len(MISSED_V2) / 40),
    }
    empty = ok(client.get("/v1/models/cams/quality?period=7d&model_version=v7"))["label_free_recall"]
    assert empty["missed_object_feedback"] == {"count": 0, "predictions": 0, "rate": None}


@pytest.mark.parametrize(("version", "arm"), [(None, None), ("v1", None), ("v1", "a")])
def test_the_statement_reads_through_indexes_only(tmp_path: Path, version: str | None, arm: str | None) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    open_storage(url).migrate()
    captured: list[tuple[str, list[Any]]] = []

    class Capture:
        def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
            captured.append((sql, list(params)))
            return [(0, 0)]

    _missed_objects.missed_object_counts(
        Capture(),  # type: ignore[arg-type]
        "cams",
        since_unix_nano=0,
        until_unix_nano=NANO,
        model_version=version,
        ab_variant=arm,
    )
    ((sql, params),) = captured
    with sqlite3.connect(tmp_path / "d.db") as conn:
        steps = [str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    plan = " | ".join(steps)
    # The only scans: the outer SELECT's one row and the union of the cells just searched.
    assert {s for s in steps if s.startswith("SCAN")} <= {"SCAN CONSTANT ROW", "SCAN cells"}, plan
    assert "SEARCH f USING INDEX feedback_model_time" in plan, plan
    assert "aggregates USING INDEX" in plan and "aggregates_daily USING INDEX" in plan, plan
    if version is not None:
        assert "SEARCH p USING INDEX sqlite_autoindex_predictions_1" in plan, plan
