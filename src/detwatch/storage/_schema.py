"""Numbered schema migrations, shared by the SQLite and PostgreSQL backends.

A migration is ``(version, statements)``; it is applied once, in one transaction
together with its ``schema_migrations`` row, under the backend's migration lock
(SQLite's write lock, a PostgreSQL advisory lock), so that several processes
starting at once apply each version exactly once. Never edit a released migration:
append a new one.

The SQL is written once for both databases: ids are TEXT generated in Python
(``uuid4().hex``), times are BIGINT nanoseconds (or seconds for ``hour_unix``),
floats DOUBLE PRECISION (SQLite gives it REAL affinity), JSON is TEXT. A statement
that must differ is a :class:`Variant`; none needs to so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SCHEMA_MIGRATIONS_TABLE", "TABLES", "Dialect", "Variant", "statements_for"]

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class Variant:
    """A statement spelled differently per dialect."""

    sqlite: str
    postgresql: str

    def for_dialect(self, dialect: Dialect) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgresql


Statement = str | Variant

SCHEMA_MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_unix_nano BIGINT NOT NULL
)
"""

_V1: Final[tuple[Statement, ...]] = (
    """
    CREATE TABLE models (
        model_id TEXT PRIMARY KEY,
        metadata TEXT NOT NULL DEFAULT '{}',
        first_seen_unix_nano BIGINT NOT NULL,
        last_seen_unix_nano BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE model_versions (
        model_id TEXT NOT NULL,
        version TEXT NOT NULL,
        first_seen_unix_nano BIGINT NOT NULL,
        last_seen_unix_nano BIGINT NOT NULL,
        PRIMARY KEY (model_id, version)
    )
    """,
    """
    CREATE TABLE predictions (
        prediction_id TEXT PRIMARY KEY,
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        ab_variant TEXT,
        time_unix_nano BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION,
        image_key TEXT,
        image_uri TEXT,
        image_width INTEGER,
        image_height INTEGER,
        trace_id TEXT,
        span_id TEXT,
        detections TEXT NOT NULL,
        attributes TEXT NOT NULL,
        received_unix_nano BIGINT NOT NULL
    )
    """,
    "CREATE INDEX predictions_model_time ON predictions (model_id, time_unix_nano)",
    "CREATE INDEX predictions_span ON predictions (trace_id, span_id)",
    # expire_predictions deletes by time across models.
    "CREATE INDEX predictions_time ON predictions (time_unix_nano)",
    """
    CREATE TABLE feedback (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        prediction_id TEXT,
        trace_id TEXT,
        span_id TEXT,
        model_id TEXT,
        type TEXT NOT NULL,
        detection_index INTEGER,
        corrected_class TEXT,
        corrected_box TEXT,
        reviewer TEXT,
        comment TEXT,
        time_unix_nano BIGINT NOT NULL,
        received_unix_nano BIGINT NOT NULL
    )
    """,
    "CREATE INDEX feedback_prediction ON feedback (prediction_id)",
    "CREATE INDEX feedback_span ON feedback (trace_id, span_id)",
    "CREATE INDEX feedback_model_time ON feedback (model_id, time_unix_nano)",
    """
    CREATE TABLE aggregates (
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        ab_variant TEXT NOT NULL,
        hour_unix BIGINT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        count BIGINT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (model_id, model_version, ab_variant, hour_unix, kind, key)
    )
    """,
    # Reports read one model over a period, whatever the version or arm.
    "CREATE INDEX aggregates_model_hour ON aggregates (model_id, hour_unix)",
    """
    CREATE TABLE datasets (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        created_unix_nano BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE dataset_versions (
        id TEXT PRIMARY KEY,
        dataset_id TEXT NOT NULL,
        name TEXT NOT NULL,
        parent_version_id TEXT,
        created_unix_nano BIGINT NOT NULL
    )
    """,
    "CREATE INDEX dataset_versions_dataset ON dataset_versions (dataset_id, created_unix_nano)",
)

MIGRATIONS: Final[tuple[tuple[int, tuple[Statement, ...]], ...]] = ((1, _V1),)
"""Every migration, in order; versions are consecutive from 1."""

LATEST_VERSION: Final = MIGRATIONS[-1][0]

TABLES: Final = (
    "models",
    "model_versions",
    "predictions",
    "feedback",
    "aggregates",
    "datasets",
    "dataset_versions",
)
"""The tables :meth:`Storage.counts` reports."""


def statements_for(statements: tuple[Statement, ...], dialect: Dialect) -> list[str]:
    """The statements of one migration as ``dialect`` spells them."""
    return [s.for_dialect(dialect) if isinstance(s, Variant) else s for s in statements]
