"""PostgreSQL backend: several companion replicas (and their gunicorn workers) on one database.

URL: any libpq connection URI, ``postgresql://user:password@host:5432/dbname``
(``postgres://`` too); its query parameters are libpq's (``sslmode``,
``connect_timeout``, ...). Without a ``connect_timeout`` the backend uses 5 s, so an
unreachable server fails a request instead of hanging it.

How it fits the shared SQL (:mod:`._sql`): psycopg 3 in autocommit mode, with each
operation in an explicit ``BEGIN ... COMMIT`` (reads ``BEGIN READ ONLY``) at READ
COMMITTED; ``?`` placeholders become ``%s``; a small pool per process (no extra
dependency: psycopg_pool is a separate distribution and the pool needed here is
twenty lines). Migrations run under ``pg_advisory_xact_lock``, so replicas
starting together apply each once. A deadlock or serialization failure is retried.

Errors that mean "cannot take writes now" become :class:`StorageUnavailable` (a
503 the sender retries): connection failures (class 08 and no SQLSTATE at all),
insufficient resources (53: disk full, out of memory, too many connections), a
read-only transaction (25006: a hot standby, or ``default_transaction_read_only``),
operator intervention (57: shutdown, cancelled statement), system errors (58), lock
timeouts (55P03) and retries that ran out (40001, 40P01). The rest are
:class:`StorageError`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar, Final

import orjson
import psycopg
from psycopg import conninfo as _conninfo

from detwatch.storage._rows import _PREDICTION_COLUMNS
from detwatch.storage._schema import CELL_SUMS
from detwatch.storage._sql import _INSERT_PREDICTION, LockName, SQLStorage, Transaction
from detwatch.storage.records import StorageError, StorageUnavailable

__all__ = ["PostgresStorage"]

CONNECT_TIMEOUT_S: Final = 5
POOL_TIMEOUT_S: Final = 10.0

# Advisory lock keys: arbitrary constants, unlikely to collide with another application's.
_LOCK_KEYS: Final[dict[LockName, int]] = {
    "migrate": 0x6465_7477_6D69_6701,
    "feedback_join": 0x6465_7477_666A_6E01,
}

_UNAVAILABLE_CLASSES: Final = ("08", "53", "57", "58")
_UNAVAILABLE_STATES: Final = ("25006", "55P03", "40001", "40P01")
_RETRY_STATES: Final = ("40001", "40P01")
# What a caller is told (StorageUnavailable.reason): the error text names the socket,
# the host or the COPY line, so it goes to the log only.
_REASONS: Final = {
    "25006": "read-only",
    "53100": "disk full",
    "53300": "busy",
    "55P03": "busy",
    "40001": "busy",
    "40P01": "busy",
}
_CLASS_REASONS: Final = {"08": "unreachable", "53": "busy", "57": "unreachable"}


def _reason(state: str) -> str:
    if not state:
        return "unreachable"  # a connection failure carries no SQLSTATE
    return _REASONS.get(state) or _CLASS_REASONS.get(state[:2], "unavailable")


_INSERT_IF_NEW: Final = f"{_INSERT_PREDICTION} ON CONFLICT (prediction_id) DO NOTHING RETURNING prediction_id"

# The cells travel as one JSON text, not as nine arrays: psycopg adapts a list element by
# element in Python (about 3.5 ms for a batch's 266 cells, half the statement's time),
# and orjson writes the same values in microseconds. Floats round-trip exactly (shortest
# representation, read back with strtod). json_to_recordset keeps the array's order: the
# cells stay in the lock order they were sorted in.
_UPSERT_AGGREGATES: Final = f"""
INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, {", ".join(CELL_SUMS)})
SELECT * FROM json_to_recordset(%s::json) AS cell(
    model_id text, model_version text, ab_variant text, hour_unix bigint, kind text, key text, count bigint,
    value double precision, value_sq double precision, images bigint, count_sq double precision,
    image_value_sq double precision, count_value double precision, count_total double precision
)
ON CONFLICT (model_id, model_version, ab_variant, hour_unix, kind, key) DO UPDATE SET
    {", ".join(f"{c} = aggregates.{c} + excluded.{c}" for c in CELL_SUMS)}
"""
_CELL_FIELDS: Final = ("model_id", "model_version", "ab_variant", "hour_unix", "kind", "key", *CELL_SUMS)


@functools.lru_cache(maxsize=512)
def _to_pyformat(sql: str) -> str:
    # The shared SQL holds no literal '%' and no '?' other than placeholders.
    return sql.replace("?", "%s")


class PostgresStorage(SQLStorage):
    """The backend for several replicas (see the module docstring)."""

    dialect = "postgresql"
    errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)
    table_exists_sql = "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = ?"

    def __init__(self, url: str, *, pool_size: int = 8, pool_timeout: float = POOL_TIMEOUT_S) -> None:
        if not url.startswith(("postgresql:", "postgres:")):
            raise ValueError(f"postgresql url: expected postgresql://..., got {url!r}")
        try:
            params = _conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"postgresql url: {exc}") from None
        super().__init__(url, pool_size=pool_size, pool_timeout=pool_timeout)
        self._conninfo = url
        self._extra: dict[str, Any] = {"application_name": "detwatch"}
        if "connect_timeout" not in params:
            self._extra["connect_timeout"] = CONNECT_TIMEOUT_S

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self._conninfo, autocommit=True, **self._extra)

    def _usable(self, conn: Any) -> bool:
        return not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    def _begin(self, conn: Any, *, write: bool, bulk: bool = False) -> Any:
        cursor = conn.cursor()
        cursor.execute("BEGIN" if write else "BEGIN READ ONLY")
        return cursor

    def _rollback(self, conn: Any) -> None:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")

    def _convert(self, sql: str) -> str:
        return _to_pyformat(sql)

    def _returning_many(self, cursor: Any, sql: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # One statement, pipelined: a round trip per batch rather than per row, and a short query
        # (psycopg parses a query's placeholders in Python; a 7500-parameter one costs ~40 ms).
        cursor.executemany(sql, rows, returning=True)
        out: list[tuple[Any, ...]] = []
        while True:
            out.extend(tuple(r) for r in cursor.fetchall())
            if not cursor.nextset():
                return out

    # Bulk paths: a batch of 512 events is three statements, not 512 + hundreds of round trips.

    def _existing_ids(self, tx: Transaction, ids: Sequence[str]) -> set[str]:
        """None looked up: COPY finds a stored id itself (see :meth:`_insert_predictions`).

        Almost every batch is new, and a look-up of 512 ids cost about 4 ms (psycopg adapts
        the id list in Python); only a retried batch pays for the fallback instead.
        """
        return set()

    def _insert_predictions(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> set[str] | None:
        # COPY, the driver's fastest insert. When an id is already stored (a retried batch), or
        # another transaction is inserting one right now (READ COMMITTED), COPY fails on the
        # primary key (once that one commits), and the batch falls back, inside a savepoint,
        # to INSERT ... ON CONFLICT DO NOTHING, which says which rows were new.
        cursor = tx.cursor
        cursor.execute("SAVEPOINT detwatch_copy")
        try:
            with cursor.copy(f"COPY predictions ({_PREDICTION_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT detwatch_copy")
            inserted = tx.query_many(_INSERT_IF_NEW, rows)
            return {str(r[0]) for r in inserted}
        cursor.execute("RELEASE SAVEPOINT detwatch_copy")
        return None

    def _upsert_aggregates(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> None:
        # One statement for all cells (distinct, sorted: the lock order).
        if rows:
            cells = orjson.dumps([dict(zip(_CELL_FIELDS, row, strict=True)) for row in rows]).decode()
            tx.cursor.execute(_UPSERT_AGGREGATES, (cells,))

    def _lock(self, tx: Transaction, name: LockName, *, shared: bool = False) -> None:
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        tx.query(f"SELECT {function}({_LOCK_KEYS[name]})")

    def _retryable(self, exc: Exception) -> bool:
        return getattr(exc, "sqlstate", None) in _RETRY_STATES

    def _translate(self, exc: Exception) -> StorageError:
        state = getattr(exc, "sqlstate", None) or ""
        if (
            (isinstance(exc, psycopg.OperationalError) and not state)
            or state[:2] in _UNAVAILABLE_CLASSES
            or state in _UNAVAILABLE_STATES
        ):
            return StorageUnavailable(f"PostgreSQL: {exc}".strip(), reason=_reason(state))
        return StorageError(f"PostgreSQL ({state or type(exc).__name__}): {exc}")
