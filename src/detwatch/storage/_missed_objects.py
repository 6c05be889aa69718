"""SQL of the ``missed_object`` feedback rate: how often people report an object the model did not detect.

Recall has no label-free estimate (a detector's output says nothing of what it missed);
the one production signal of misses without a labelled sample is this feedback. Both
figures come from counts, in one statement on both backends:

- the ``missed_object`` posts on the model received in ``[since, until)`` (the index
  ``feedback_model_time``); with a version or arm, only those whose prediction is still
  stored and of that version/arm (joined by the predictions' primary key; a post naming
  only a batch span, or whose prediction has expired, has no known version);
- the images the model predicted in the period, from the hourly and daily ``images``
  aggregate cells (the hours starting in the period, as the label-free histograms read
  them), which outlive the raw predictions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction

__all__ = ["missed_object_counts"]

NS_PER_SECOND: Final = 1_000_000_000


def _ceil_seconds(unix_nano: int) -> int:
    return -(-unix_nano // NS_PER_SECOND)


def missed_object_counts(
    tx: Transaction,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None = None,
    ab_variant: str | None = None,
) -> tuple[int, int]:
    """``(missed_object posts, predicted images)`` of the model (version, arm) in ``[since, until)``."""
    feedback = (
        "SELECT COUNT(*) FROM feedback f{join} WHERE f.model_id = ? AND f.time_unix_nano >= ? "
        "AND f.time_unix_nano < ? AND f.type = 'missed_object'{filters}"
    )
    feedback_params: list[Any] = [model_id, since_unix_nano, until_unix_nano]
    cells_filter = ""
    cells_params: list[Any] = [model_id, _ceil_seconds(since_unix_nano), _ceil_seconds(until_unix_nano)]
    filters = ""
    if model_version is not None:
        filters += " AND p.model_version = ?"
        feedback_params.append(model_version)
        cells_filter += " AND model_version = ?"
        cells_params.append(model_version)
    if ab_variant is not None:
        filters += " AND p.ab_variant = ?"
        feedback_params.append(ab_variant)
        cells_filter += " AND ab_variant = ?"
        cells_params.append(ab_variant)
    join = " JOIN predictions p ON p.prediction_id = f.prediction_id" if filters else ""
    cells = (
        "SELECT COALESCE(SUM(n), 0) FROM ("
        f"SELECT count AS n FROM aggregates WHERE model_id = ? AND hour_unix >= ? AND hour_unix < ? "
        f"AND kind = 'images'{cells_filter} UNION ALL "
        f"SELECT count AS n FROM aggregates_daily WHERE model_id = ? AND day_unix >= ? AND day_unix < ? "
        f"AND kind = 'images'{cells_filter}) AS cells"
    )
    sql = f"SELECT ({feedback.format(join=join, filters=filters)}), ({cells})"
    rows = tx.query(sql, [*feedback_params, *cells_params, *cells_params])
    return int(rows[0][0]), int(rows[0][1])
