"""One open database transaction, as the shared SQL and its private helpers see it.

Kept apart from :mod:`detwatch.storage._sql` so that the helper modules of storage
(``_abtests``, ``_compaction``) can take a transaction without importing the class that
opens it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

__all__ = ["Dialect", "Transaction", "Transactional"]

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]


class Transaction:
    """One open transaction: runs the shared SQL on a backend cursor."""

    def __init__(
        self,
        cursor: Any,
        convert: Callable[[str], str],
        returning_many: Callable[[Any, str, list[tuple[Any, ...]]], list[tuple[Any, ...]]],
    ) -> None:
        self._cursor = cursor  # a DB-API cursor: sqlite3's and psycopg's fit
        self._convert = convert
        self._returning_many = returning_many

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows (an empty list when it returns none)."""
        self._cursor.execute(self._convert(sql), tuple(params))
        if self._cursor.description is None:
            return []
        return [tuple(row) for row in self._cursor.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        self._cursor.execute(self._convert(sql), tuple(params))
        return int(self._cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._convert(sql), [tuple(r) for r in rows])

    @property
    def cursor(self) -> Any:
        """The driver's cursor, for a backend's own bulk paths (COPY)."""
        return self._cursor

    def query_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Run a one-row statement with ``RETURNING`` once per parameter row; all rows returned."""
        if not rows:
            return []
        return self._returning_many(self._cursor, self._convert(sql), [tuple(r) for r in rows])


class Transactional(Protocol):
    """A backend that runs storage's shared SQL: what the modules of storage (the data engine's) write on."""

    @property
    def dialect(self) -> Dialect:
        """Which SQL the backend speaks, where the shared statements differ (``FOR UPDATE``)."""
        ...

    def run_transaction(self, work: Callable[[Transaction], T], *, write: bool) -> T:
        """Run ``work`` in one transaction (retrying deadlocks); driver errors become ``StorageError``."""
        ...
