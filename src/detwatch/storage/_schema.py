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

__all__ = [
    "CELL_SUMS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "SCHEMA_MIGRATIONS_TABLE",
    "TABLES",
    "Dialect",
    "Variant",
    "statements_for",
]

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

_V2: Final[tuple[Statement, ...]] = (
    # Sums of squares beside the sums, so that variances merge across cells like means do
    # (drift and A/B tests need both). Cells written before this have 0: their raw events
    # may already be expired, so nothing is back-filled.
    "ALTER TABLE aggregates ADD COLUMN value_sq DOUBLE PRECISION NOT NULL DEFAULT 0",
)

_V3: Final[tuple[Statement, ...]] = (
    # A/B tests (detwatch.abtest); their results read the aggregates, not raw rows.
    """
    CREATE TABLE ab_tests (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        model_a_id TEXT NOT NULL,
        model_b_id TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL,
        created_unix_nano BIGINT NOT NULL,
        start_unix_nano BIGINT NOT NULL,
        end_unix_nano BIGINT NOT NULL
    )
    """,
    "CREATE INDEX ab_tests_created ON ab_tests (created_unix_nano)",
    # A/B results read one arm's few kinds over the test's hours. The kinds lead, so the
    # scan skips the other cells of each hour (4x faster over a week of cells); count
    # and value are left out, so that ingest's upserts of existing cells never touch it.
    "CREATE INDEX aggregates_arm ON aggregates (model_id, ab_variant, kind, hour_unix)",
)

_V4: Final[tuple[Statement, ...]] = (
    # The data engine (detwatch.review): policies, the review queue, dataset
    # snapshots and training jobs. Flagged items copy what review needs (detections,
    # image reference) because raw predictions expire; they stay until reviewed.
    """
    CREATE TABLE data_engine_configs (
        model_id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        target_dataset_id TEXT NOT NULL,
        updated_unix_nano BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE flagged_items (
        id TEXT PRIMARY KEY,
        dataset_id TEXT NOT NULL,
        prediction_id TEXT NOT NULL,
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        time_unix_nano BIGINT NOT NULL,
        reasons TEXT NOT NULL,
        detections TEXT NOT NULL,
        image_key TEXT,
        image_uri TEXT,
        image_width INTEGER,
        image_height INTEGER,
        status TEXT NOT NULL,
        assignee TEXT,
        claimed_unix_nano BIGINT,
        label TEXT,
        reviewer TEXT,
        created_unix_nano BIGINT NOT NULL,
        updated_unix_nano BIGINT NOT NULL,
        UNIQUE (dataset_id, prediction_id)
    )
    """,
    # The review queue is read by status in creation order, paged by (created, id).
    "CREATE INDEX flagged_items_queue ON flagged_items (dataset_id, status, created_unix_nano, id)",
    "CREATE INDEX flagged_items_prediction ON flagged_items (prediction_id)",
    """
    CREATE TABLE dataset_version_contents (
        version_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        item_count BIGINT NOT NULL,
        class_counts TEXT NOT NULL,
        diff TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE dataset_version_items (
        version_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        prediction_id TEXT,
        image_key TEXT,
        image_uri TEXT,
        image_width INTEGER,
        image_height INTEGER,
        annotations TEXT NOT NULL,
        PRIMARY KEY (version_id, item_id)
    )
    """,
    """
    CREATE TABLE training_jobs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        dataset_id TEXT NOT NULL,
        version_id TEXT NOT NULL,
        base_model_id TEXT,
        options TEXT NOT NULL,
        status TEXT NOT NULL,
        callback_url TEXT,
        callback_token TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_unix_nano BIGINT,
        dispatched_unix_nano BIGINT,
        last_error TEXT,
        model_version TEXT,
        history TEXT NOT NULL,
        created_unix_nano BIGINT NOT NULL,
        updated_unix_nano BIGINT NOT NULL
    )
    """,
    # Dispatchers look for jobs due to be handed to the trainer.
    "CREATE INDEX training_jobs_due ON training_jobs (next_attempt_unix_nano)",
)

_V5: Final[tuple[Statement, ...]] = (
    # Daily roll-ups of hourly cells older than a horizon (storage/_compaction.py):
    # readers add both tables, so a report over months reads days, not hours.
    """
    CREATE TABLE aggregates_daily (
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL,
        ab_variant TEXT NOT NULL,
        day_unix BIGINT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        count BIGINT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        value_sq DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (model_id, model_version, ab_variant, day_unix, kind, key)
    )
    """,
    "CREATE INDEX aggregates_daily_model_day ON aggregates_daily (model_id, day_unix)",
    "CREATE INDEX aggregates_daily_arm ON aggregates_daily (model_id, ab_variant, kind, day_unix)",
)

_PER_IMAGE_COLUMNS: Final = (
    ("images", "BIGINT"),
    ("count_sq", "DOUBLE PRECISION"),
    ("image_value_sq", "DOUBLE PRECISION"),
    ("count_value", "DOUBLE PRECISION"),
    ("count_total", "DOUBLE PRECISION"),
)

CELL_SUMS: Final = ("count", "value", "value_sq", *(column for column, _ in _PER_IMAGE_COLUMNS))
"""The columns of an aggregate cell that add up, in ``storage._aggregate.Cell``'s order."""

_V6: Final[tuple[Statement, ...]] = tuple(
    # Per-image sums beside the per-item sums (storage.AggregateRow), so that variances
    # that treat the image as the unit of evidence merge across cells (detwatch.stats.clustered).
    # ADD COLUMN with a constant default rewrites no row on either database: cells
    # written before have 0 (images = 0 with count > 0), and readers take their
    # detections as independent, which the reports say.
    f"ALTER TABLE {table} ADD COLUMN {column} {sql_type} NOT NULL DEFAULT 0"
    for table in ("aggregates", "aggregates_daily")
    for column, sql_type in _PER_IMAGE_COLUMNS
)

_V7: Final[tuple[Statement, ...]] = (
    # Alert definitions (detwatch.api.alerts), shared by every replica. The slug is the
    # alert's identity (it names rules and routes notifications), so it is the key: two
    # replicas creating the same name at once meet on it. ``revision`` is the value of
    # the counter below when the row was last written.
    """
    CREATE TABLE alerts (
        slug TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        model_id TEXT NOT NULL,
        definition TEXT NOT NULL,
        revision BIGINT NOT NULL,
        created_unix_nano BIGINT NOT NULL,
        updated_unix_nano BIGINT NOT NULL
    )
    """,
    "CREATE INDEX alerts_model ON alerts (model_id)",
    # One row: the revision of the whole set, raised by every write in the writing
    # transaction. Its row lock queues concurrent writers on PostgreSQL (SQLite's write
    # lock does that already), and a reader compares one number to know whether what
    # it derived from the set (rules, provisioning) is still current.
    "CREATE TABLE alerts_revision (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
    "INSERT INTO alerts_revision (id, revision) VALUES (1, 0)",
)

_V8: Final[tuple[Statement, ...]] = (
    # The chance that the flagging policy selected the item, taken when it was flagged
    # (FlaggingPolicy.inclusion_probability): quality estimates weight a labelled item by
    # its inverse, and the policy that decided may have changed since. NULL for items
    # only feedback flagged (not a probability sample) and for items flagged before.
    "ALTER TABLE flagged_items ADD COLUMN inclusion_probability DOUBLE PRECISION",
    # Quality reads a model's labelled items of a period (storage.labelled_items).
    "CREATE INDEX flagged_items_model ON flagged_items (model_id, status, time_unix_nano)",
)

_V9: Final[tuple[Statement, ...]] = (
    # A training job's gate (detwatch.quality._gate): the rule it was given, and the
    # judgement made when its trainer reported success (JSON; NULL without a gate).
    "ALTER TABLE training_jobs ADD COLUMN gate TEXT",
    "ALTER TABLE training_jobs ADD COLUMN gate_result TEXT",
    # What a gated job's candidate detected on the base model's labelled images. Its own
    # table, not ``predictions``: there they would enter the model's aggregates (drift,
    # A/B, the label-free histograms), the flagging backfill and feedback joins.
    """
    CREATE TABLE training_job_detections (
        job_id TEXT NOT NULL,
        image_key TEXT NOT NULL,
        detections TEXT NOT NULL,
        received_unix_nano BIGINT NOT NULL,
        PRIMARY KEY (job_id, image_key)
    )
    """,
    # Comparing versions reads a version's predictions by image key
    # (storage._version_predictions); without it, every prediction of the model is scanned.
    "CREATE INDEX predictions_version_image ON predictions (model_id, model_version, image_key)",
)

_V10: Final[tuple[Statement, ...]] = (
    # The A/B arm of a flagged item's prediction, kept with the item like its detections:
    # quality per arm (storage.labelled_items(ab_variant=)) must not depend on raw
    # predictions, which expire long before a labelled item does. Items flagged before
    # take it from their prediction while it is retained; the rest stay NULL (no arm).
    "ALTER TABLE flagged_items ADD COLUMN ab_variant TEXT",
    "UPDATE flagged_items SET ab_variant = "
    "(SELECT p.ab_variant FROM predictions p WHERE p.prediction_id = flagged_items.prediction_id)",
)

MIGRATIONS: Final[tuple[tuple[int, tuple[Statement, ...]], ...]] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
    (6, _V6),
    (7, _V7),
    (8, _V8),
    (9, _V9),
    (10, _V10),
)
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
    "ab_tests",
    "data_engine_configs",
    "flagged_items",
    "dataset_version_contents",
    "dataset_version_items",
    "training_jobs",
    "training_job_detections",
    "aggregates_daily",
    "alerts",
)
"""The tables :meth:`Storage.counts` reports."""


def statements_for(statements: tuple[Statement, ...], dialect: Dialect) -> list[str]:
    """The statements of one migration as ``dialect`` spells them."""
    return [s.for_dialect(dialect) if isinstance(s, Variant) else s for s in statements]
