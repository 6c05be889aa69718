"""Compaction: hourly aggregate cells older than a horizon are rolled up into daily cells.

A drift report over two months of hourly cells reads 1,440 hours of a few hundred
cells each, and reading them, not the statistics, was the cost (3.2 s for 10 million
predictions). Cells merge by addition, so hours that no report needs one by one can
be added up per day: reports then read 24 times fewer rows for old data and the
table stays bounded by days, not hours.

Readers take the *sum* of both tables (``aggregates`` for hours, ``aggregates_daily``
for days), so compaction changes no total: a day is rolled up by one transaction
that adds its hourly cells to the daily ones and deletes them. An event back-filled
into a day already compacted lands in a new hourly cell, is counted by readers at
once, and is folded into the day at the next compaction. What is lost is only the
hour within an old day: periods that start or end inside a compacted day count the
day's cells when the day *starts* in the period, as hourly cells count when their
hour does. The horizon (``DETWATCH_AGGREGATE_HOURLY_DAYS``, 7 days by default) keeps
recent windows such as ``last 24h`` exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from detwatch.storage._schema import CELL_SUMS

if TYPE_CHECKING:
    from detwatch.storage._schema import Dialect
    from detwatch.storage._transaction import Transaction

SECONDS_PER_DAY: Final = 86_400

_ROLL_UP: Final = f"""
INSERT INTO aggregates_daily (model_id, model_version, ab_variant, day_unix, kind, key, {", ".join(CELL_SUMS)})
SELECT model_id, model_version, ab_variant, ?, kind, key, {", ".join(f"total_{c}" for c in CELL_SUMS)} FROM (
    SELECT model_id, model_version, ab_variant, kind, key, {", ".join(f"SUM({c}) AS total_{c}" for c in CELL_SUMS)}
    FROM aggregates WHERE hour_unix >= ? AND hour_unix < ?
    GROUP BY model_id, model_version, ab_variant, kind, key
) AS day_cells WHERE true
ON CONFLICT (model_id, model_version, ab_variant, day_unix, kind, key) DO UPDATE SET
    {", ".join(f"{c} = aggregates_daily.{c} + excluded.{c}" for c in CELL_SUMS)}
"""


def oldest_day_before(tx: Transaction, before_day: int) -> int | None:
    """The start of the oldest day with hourly cells before ``before_day`` (seconds), or None."""
    rows = tx.query("SELECT MIN(hour_unix) FROM aggregates WHERE hour_unix < ?", (before_day,))
    if not rows or rows[0][0] is None:
        return None
    hour = int(rows[0][0])
    return hour - hour % SECONDS_PER_DAY


def roll_up_day(tx: Transaction, *, dialect: Dialect, day: int) -> int:
    """Move the hourly cells of the day starting at ``day`` into daily cells; the hourly rows removed."""
    if dialect == "postgresql":
        # Ingest's upserts wait while a day moves (milliseconds): a cell updated between
        # the roll-up's read and its delete would otherwise lose that update. SQLite's
        # write lock, taken at BEGIN, already keeps every other writer out.
        tx.execute("LOCK TABLE aggregates IN SHARE ROW EXCLUSIVE MODE")
    end = day + SECONDS_PER_DAY
    tx.execute(_ROLL_UP, (day, day, end))
    return tx.execute("DELETE FROM aggregates WHERE hour_unix >= ? AND hour_unix < ?", (day, end))
