"""SQL of A/B tests: their records and the feedback counts per arm (both backends).

Results read the aggregates of each arm (see :mod:`detwatch.abtest.results`); the
only raw rows they need are feedback posts, joined to their predictions to learn the
arm. Feedback is small next to predictions, and the join goes through the
predictions' primary key (or their span index for feedback naming a span).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from detwatch.storage._schema import CELL_SUMS
from detwatch.storage.records import ABTestRecord

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction

NS_PER_SECOND: Final = 1_000_000_000
SECONDS_PER_HOUR: Final = 3600


_COLUMNS: Final = "id, name, model_a_id, model_b_id, config, status, created_unix_nano, start_unix_nano, end_unix_nano"


def _record(row: Sequence[Any]) -> ABTestRecord:
    return ABTestRecord(
        id=row[0],
        name=row[1],
        model_a_id=row[2],
        model_b_id=row[3],
        config=json.loads(row[4]),
        status=row[5],
        created_unix_nano=int(row[6]),
        start_unix_nano=int(row[7]),
        end_unix_nano=int(row[8]),
    )


def insert(
    tx: Transaction,
    *,
    name: str,
    model_a_id: str,
    model_b_id: str,
    config: dict[str, Any],
    created_unix_nano: int,
    start_unix_nano: int,
    end_unix_nano: int,
) -> ABTestRecord:
    record = ABTestRecord(
        id=uuid.uuid4().hex,
        name=name,
        model_a_id=model_a_id,
        model_b_id=model_b_id,
        config=config,
        status="running",
        created_unix_nano=created_unix_nano,
        start_unix_nano=start_unix_nano,
        end_unix_nano=end_unix_nano,
    )
    tx.execute(
        f"INSERT INTO ab_tests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.id,
            record.name,
            record.model_a_id,
            record.model_b_id,
            json.dumps(config, separators=(",", ":")),
            record.status,
            record.created_unix_nano,
            record.start_unix_nano,
            record.end_unix_nano,
        ),
    )
    return record


def get(tx: Transaction, ab_test_id: str) -> ABTestRecord | None:
    rows = tx.query(f"SELECT {_COLUMNS} FROM ab_tests WHERE id = ?", (ab_test_id,))
    return _record(rows[0]) if rows else None


def list_all(tx: Transaction, limit: int) -> list[ABTestRecord]:
    rows = tx.query(f"SELECT {_COLUMNS} FROM ab_tests ORDER BY created_unix_nano DESC, id LIMIT ?", (limit,))
    return [_record(r) for r in rows]


def set_status(tx: Transaction, ab_test_id: str, status: str, end_unix_nano: int | None) -> bool:
    # "status <> ?": of two stops at once, the first one's end stands (on PostgreSQL the second
    # waits for the row and re-checks this against the first's commit).
    if end_unix_nano is None:
        return (
            tx.execute("UPDATE ab_tests SET status = ? WHERE id = ? AND status <> ?", (status, ab_test_id, status)) > 0
        )
    return (
        tx.execute(
            "UPDATE ab_tests SET status = ?, end_unix_nano = ? WHERE id = ? AND status <> ?",
            (status, end_unix_nano, ab_test_id, status),
        )
        > 0
    )


def _arm_predictions(
    model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
) -> tuple[str, list[Any]]:
    """The WHERE clause (on ``predictions p``) and parameters of one arm's predictions in ``[start, end)``.

    ``variant`` ``None`` takes the model's (and version's) predictions whatever their tag.
    """
    where = "p.model_id = ? AND p.time_unix_nano >= ? AND p.time_unix_nano < ?"
    params: list[Any] = [model_id, start_unix_nano, end_unix_nano]
    if variant is not None:
        where += " AND p.ab_variant = ?"
        params.append(variant)
    if version is not None:
        where += " AND p.model_version = ?"
        params.append(version)
    return where, params


def feedback_counts(
    tx: Transaction,
    *,
    model_id: str,
    version: str | None,
    variant: str | None,
    start_unix_nano: int,
    end_unix_nano: int,
) -> list[tuple[int, str, int]]:
    """``(hour_unix, type, count)`` of feedback on ``model_id``'s predictions tagged ``variant``.

    Hours are those of the predictions' own time, like the aggregates' hours, so that
    feedback lands in the same sequential look as the predictions it judges. Feedback
    naming a batch span (no single prediction) is left out: its arm is the span's, but
    its image is unknown, and the feedback score counts images.
    """
    where, params = _arm_predictions(model_id, version, variant, start_unix_nano, end_unix_nano)
    sql = (
        f"SELECT p.time_unix_nano / {NS_PER_SECOND * SECONDS_PER_HOUR} * {SECONDS_PER_HOUR} AS hour, f.type, COUNT(*) "
        "FROM feedback f JOIN predictions p ON p.prediction_id = f.prediction_id "
        f"WHERE {where} GROUP BY hour, f.type ORDER BY hour, f.type"
    )
    return [(int(r[0]), str(r[1]), int(r[2])) for r in tx.query(sql, params)]


def feedback_image_sums(
    tx: Transaction,
    *,
    model_id: str,
    version: str | None,
    variant: str | None,
    start_unix_nano: int,
    end_unix_nano: int,
) -> list[tuple[int, int, int, int, int, int, int]]:
    """Feedback per image, summed per hour: ``(hour_unix, images, posts, correct, sum posts^2, sum correct^2,
    sum posts * correct)`` over the images (predictions) of ``variant`` that received feedback.

    Several posts on one image (one per detection) are not independent judgements of the
    model: these sums give the feedback score's variance with the image as the unit
    (:mod:`detwatch.stats.clustered`). Feedback naming a batch span is left out, as in
    :func:`feedback_counts`.
    """
    where, params = _arm_predictions(model_id, version, variant, start_unix_nano, end_unix_nano)
    per_image = (
        f"SELECT p.time_unix_nano / {NS_PER_SECOND * SECONDS_PER_HOUR} * {SECONDS_PER_HOUR} AS hour, "
        "COUNT(*) AS n, SUM(CASE WHEN f.type = 'correct' THEN 1 ELSE 0 END) AS c "
        "FROM feedback f JOIN predictions p ON p.prediction_id = f.prediction_id "
        f"WHERE {where} GROUP BY hour, p.prediction_id"
    )
    sql = (
        "SELECT hour, COUNT(*), SUM(n), SUM(c), SUM(n * n), SUM(c * c), SUM(n * c) "
        f"FROM ({per_image}) AS per_image GROUP BY hour ORDER BY hour"
    )
    return [tuple(int(x) for x in r) for r in tx.query(sql, params)]  # type: ignore[misc]


def arm_sums(
    tx: Transaction,
    *,
    model_id: str,
    version: str | None,
    variant: str | None,
    start_hour: int,
    end_hour: int,
    kinds: Sequence[str],
    by_hour: bool,
) -> list[tuple[int, str, str, int, float, float, int, float, float, float, float]]:
    """Sums of one arm's cells: ``(hour_unix, kind, key, count, value, value_sq, images, count_sq, image_value_sq,
    count_value, count_total)``.

    ``by_hour`` keeps hours apart and adds up keys (key ""): the sequential looks need
    the trend, not the bins. Otherwise hours are added up (hour 0) and keys kept: the
    class mix and latency bins need the bins, not the trend. Summing in the database
    returns a few hundred rows where the raw cells of a month are tens of thousands.
    """
    time_expr = "{t}" if by_hour else "0"
    key_expr = "''" if by_hour else "key"
    marks = ", ".join("?" * len(kinds))
    where = "model_id = ? AND {t} >= ? AND {t} < ?" + f" AND kind IN ({marks})"
    params: list[Any] = [model_id, start_hour, end_hour, *kinds]
    if variant is not None:
        where += " AND ab_variant = ?"
        params.append(variant)
    if version is not None:
        where += " AND model_version = ?"
        params.append(version)
    # Hourly cells and the daily roll-ups of compacted days (storage/_compaction.py) add up.
    # The per-image sums add up over hours and, by_hour, over keys too; only kinds of
    # one key ("") are read per hour where they matter (confidence_all).
    parts = [
        f"SELECT {time_expr.format(t=column)} AS t, kind, {key_expr} AS k, {', '.join(CELL_SUMS)} "
        f"FROM {table} WHERE {where.format(t=column)}"
        for table, column in (("aggregates", "hour_unix"), ("aggregates_daily", "day_unix"))
    ]
    sums = ", ".join(f"SUM({c})" for c in CELL_SUMS)
    sql = f"SELECT t, kind, k, {sums} FROM ({parts[0]} UNION ALL {parts[1]}) AS cells GROUP BY t, kind, k"
    rows = tx.query(sql, params + params)
    return [
        (int(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4]), float(r[5]),
         int(r[6]), float(r[7]), float(r[8]), float(r[9]), float(r[10]))
        for r in rows
    ]  # fmt: skip
