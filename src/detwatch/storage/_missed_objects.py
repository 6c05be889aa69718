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

from typing import TYPE_CHECKING, Any

from detwatch.storage import _cells

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction

__all__ = ["missed_object_counts"]


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
    filters = ""
    if model_version is not None:
        filters += " AND p.model_version = ?"
        feedback_params.append(model_version)
    if ab_variant is not None:
        filters += " AND p.ab_variant = ?"
        feedback_params.append(ab_variant)
    cells_filter, cells_params = _cells.filters("images", model_version, ab_variant)
    join = " JOIN predictions p ON p.prediction_id = f.prediction_id" if filters else ""
    cells = f"SELECT COALESCE(SUM(count), 0) FROM {_cells.union('count', cells_filter)}"
    sql = f"SELECT ({feedback.format(join=join, filters=filters)}), ({cells})"
    params = _cells.union_params(model_id, since_unix_nano, until_unix_nano, cells_params)
    rows = tx.query(sql, [*feedback_params, *params])
    return int(rows[0][0]), int(rows[0][1])
