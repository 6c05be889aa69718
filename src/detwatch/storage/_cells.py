"""One model's aggregate cells of a window, hourly and daily together, as SQL (both backends).

Once compacted (:mod:`._compaction`) a period's cells lie in two tables: the hours of
the last days in ``aggregates``, whole days before them in ``aggregates_daily``. A
read over a period takes both, each cell counted where its hour (or day) starts in the
window, which starts and ends at whole seconds rounded up, as the cells' times are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["cells_window", "filters", "union", "union_params"]

NS_PER_SECOND: Final = 1_000_000_000


def cells_window(model_id: str, start_unix_nano: int, end_unix_nano: int) -> list[Any]:
    """The parameters of one side of :func:`union`, before its filters' own."""
    return [model_id, -(-start_unix_nano // NS_PER_SECOND), -(-end_unix_nano // NS_PER_SECOND)]


def union(columns: str, where: str = "") -> str:
    """A row set ``(...) AS cells`` of ``columns`` from both tables; ``where`` (``" AND kind = ?"``) filters each side.

    Its parameters: :func:`cells_window`'s and ``where``'s, twice (hourly, then daily).
    """
    return (
        f"(SELECT {columns} FROM aggregates WHERE model_id = ? AND hour_unix >= ? AND hour_unix < ?{where} "
        "UNION ALL "
        f"SELECT {columns} FROM aggregates_daily WHERE model_id = ? AND day_unix >= ? AND day_unix < ?{where}"
        ") AS cells"
    )


def union_params(model_id: str, start_unix_nano: int, end_unix_nano: int, extra: Sequence[Any] = ()) -> list[Any]:
    """Both sides' parameters of :func:`union`."""
    side = [*cells_window(model_id, start_unix_nano, end_unix_nano), *extra]
    return side + side


def filters(kind: str, model_version: str | None, ab_variant: str | None) -> tuple[str, list[Any]]:
    """The ``where`` of :func:`union` for one kind (of one version and arm, where given), and its parameters."""
    where = " AND kind = ?"
    params: list[Any] = [kind]
    if model_version is not None:
        where += " AND model_version = ?"
        params.append(model_version)
    if ab_variant is not None:
        where += " AND ab_variant = ?"
        params.append(ab_variant)
    return where, params
