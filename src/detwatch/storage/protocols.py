"""The storage interface: what the companion asks of a backend, one protocol per concern.

A backend is any class with these methods; it need not inherit from anything (nor
from :class:`~detwatch.storage._sql.SQLStorage`). :class:`Storage` combines the
concerns; code that needs one concern may ask for that protocol alone.

Ingest hooks (:class:`IngestHook`) are how a policy above storage (the review
package's flagging) acts inside the storage's own ingest and feedback transactions,
through a narrow :class:`FlagWriter`, so that what it writes is stored exactly when
the event that caused it is, without SQL above storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from detwatch.contract.feedback import FeedbackInput
from detwatch.contract.predictions import Prediction
from detwatch.storage.records import (
    ABTestRecord,
    AggregateRow,
    AlertRecord,
    AlertWrite,
    DatasetRecord,
    DatasetSnapshotRecord,
    DatasetVersionRecord,
    FeedbackRecord,
    FlaggedItemRecord,
    FlagPage,
    IngestResult,
    ItemPage,
    ModelRecord,
    NewFlag,
    PolicyRecord,
    ReviewProgress,
    TrainingJobRecord,
)

__all__ = [
    "MAX_LABELLED_ITEMS",
    "ABTestStorage",
    "FeedbackStorage",
    "FlagFunction",
    "FlagWriter",
    "IngestHook",
    "PredictionStorage",
    "QualityStorage",
    "RegistryStorage",
    "ReviewStorage",
    "Storage",
]


class FlagWriter(Protocol):
    """What an ingest hook may read and write inside the storage's transaction."""

    def policies(self, model_ids: Sequence[str]) -> dict[str, PolicyRecord]:
        """The stored flagging policies of those of ``model_ids`` that have one."""
        ...

    def box_area_counts(self, model_id: str, since_hour_unix: int) -> list[tuple[str, int]]:
        """``(key, count)`` of the model's ``box_area`` aggregate cells since an hour (hours summed)."""
        ...

    def objections(self, prediction_ids: Sequence[str]) -> dict[str, set[str]]:
        """The feedback types other than ``correct`` stored for each of ``prediction_ids`` (those with any)."""
        ...

    def insert_flags(self, flags: Sequence[NewFlag]) -> None:
        """Add items to the review queue; a prediction already in its dataset's queue keeps its item."""
        ...

    def insert_flag(self, flag: NewFlag) -> bool:
        """Add one item; ``False`` when its prediction has one in the dataset already."""
        ...

    def add_reason(self, dataset_id: str, prediction_id: str, reason: str, now: int) -> bool | None:
        """Add ``reason`` to the prediction's item (read locked): ``None`` without one, else whether added."""
        ...

    def prediction(self, prediction_id: str) -> Prediction | None: ...


FlagFunction = Callable[[FlagWriter, Sequence[Prediction]], int]
"""Flags what it selects of stored predictions through the writer; returns how many it flagged."""


class AlertStore(Protocol):
    """Alert definitions shared by every replica, and one revision number for the whole set."""

    def alerts_revision(self) -> int:
        """The set's revision: it changes with every write, so that what was derived from the set can be reused."""
        ...

    def list_alerts(self) -> list[AlertRecord]:
        """Every stored alert, by slug."""
        ...

    def put_alert(self, *, slug: str, name: str, model_id: str, definition: dict[str, Any]) -> AlertWrite:
        """Create or replace (by slug) an alert, raising the revision, in one transaction.

        Raises :class:`AlertNameTaken` when another model's alert holds the slug; writers
        at once are serialised, so of two replicas creating one name for two models, the
        second is refused.
        """
        ...

    def import_alerts(self, alerts: Sequence[tuple[str, str, str, dict[str, Any]]]) -> int:
        """Store ``(slug, name, model_id, definition)`` rows whose slug is absent (one transaction); how many."""
        ...


class IngestHook(Protocol):
    """Called by storage inside the transaction that stores predictions or feedback."""

    def predictions_stored(self, writer: FlagWriter, new: Sequence[Prediction], feedback_joined: int) -> int:
        """``new`` were just stored; ``feedback_joined`` waiting feedback rows were joined to them (0: none)."""
        ...

    def feedback_stored(self, writer: FlagWriter, records: Sequence[FeedbackRecord]) -> int:
        """``records`` were just stored (duplicates marked ``duplicate``)."""
        ...


class PredictionStorage(Protocol):
    """The database itself, predictions and their aggregates. Implementations are thread-safe."""

    url: str

    def migrate(self) -> int:
        """Apply pending migrations (idempotent, safe from several processes); returns the schema version."""
        ...

    def close(self) -> None: ...

    def check_writable(self) -> None:
        """Start a write and roll it back; raises :class:`StorageUnavailable` if it cannot be made now.

        The readiness probe (``/readyz``): it finds a server that is down, a read-only
        database (a standby, a read-only file) and a lock held too long, and commits nothing.
        """
        ...

    def ingest_predictions(self, predictions: Sequence[Prediction]) -> IngestResult:
        """Insert new predictions (by ``prediction_id``), update models and aggregates, join waiting feedback.

        Each event is stored in one transaction together with its aggregates and joins:
        a whole batch on PostgreSQL, chunks of a batch on SQLite (whose single write lock
        feedback waits for). A batch that fails part-way may be partly stored; nothing
        is acknowledged then, and the sender's retry stores the rest without duplicates.
        Raises :class:`StorageUnavailable` when the database cannot take writes.
        """
        ...

    def get_prediction(self, prediction_id: str) -> Prediction | None: ...

    def find_predictions_by_span(self, trace_id: str, span_id: str) -> list[Prediction]: ...

    def aggregates(
        self, model_id: str, start_unix_nano: int, end_unix_nano: int, kinds: Sequence[str] | None = None
    ) -> list[AggregateRow]:
        """Cells of ``model_id`` whose hour *starts* in ``[start, end)``, all kinds or those named."""
        ...

    def aggregate_counts(
        self,
        model_id: str,
        start_unix_nano: int,
        end_unix_nano: int,
        kind: str,
        *,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> dict[str, int]:
        """Per key, the summed ``count`` of the cells of one ``kind`` that :meth:`aggregates` would return.

        Of one version and one arm where given. The sum is the database's: a month of
        hourly cells is one row per key, not one object per cell.
        """
        ...

    def compact_aggregates(self, before_unix_nano: int) -> int:
        """Roll hourly cells of whole days before the cutoff into daily cells; the hourly rows removed."""
        ...

    def expire_predictions(self, before_unix_nano: int) -> int:
        """Delete raw predictions older than the retention window; aggregates stay."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts per table, for ``detwatch status`` and tests."""
        ...

    def add_ingest_hook(self, hook: IngestHook) -> None:
        """Call ``hook`` inside every later ingest and feedback transaction (after the storage's own writes).

        An exception from a hook rolls the transaction back: the event is stored with its
        consequences or not at all.
        """
        ...


class FeedbackStorage(Protocol):
    """Feedback on predictions, joined to them (also when it arrives first)."""

    def add_feedback(self, items: Sequence[FeedbackInput]) -> list[FeedbackRecord]:
        """Store feedback (one transaction); an item whose idempotency key was seen returns the stored record
        with ``duplicate=True`` and is not stored again.

        Feedback naming a span that holds several predictions (a batch) keeps the span and
        ``detection_index`` with ``prediction_id`` None (the model is filled in); feedback
        naming a prediction not stored yet is joined when it arrives.
        """
        ...

    def list_feedback(self, *, model_id: str | None = None, limit: int = 100) -> list[FeedbackRecord]: ...


class RegistryStorage(Protocol):
    """Models and datasets (the registry)."""

    def register_model(self, model_id: str, version: str | None, metadata: dict[str, Any]) -> ModelRecord:
        """Create the model (or add ``version`` to it); non-empty ``metadata`` replaces the stored one."""
        ...

    def get_model(self, model_id: str) -> ModelRecord | None: ...

    def list_models(self) -> list[ModelRecord]: ...

    def create_dataset(self, name: str, description: str) -> DatasetRecord:
        """A new dataset with its first, empty version named ``v1``."""
        ...

    def get_dataset(self, dataset_id: str) -> DatasetRecord | None: ...

    def create_dataset_version(self, dataset_id: str, name: str, parent_version_id: str | None) -> DatasetVersionRecord:
        """A version ordered after the existing ones; raises ``LookupError`` for an unknown dataset."""
        ...


class ABTestStorage(Protocol):
    """A/B tests and the per-arm sums their results read."""

    def create_ab_test(
        self,
        *,
        name: str,
        model_a_id: str,
        model_b_id: str,
        config: dict[str, Any],
        start_unix_nano: int,
        end_unix_nano: int,
    ) -> ABTestRecord: ...

    def get_ab_test(self, ab_test_id: str) -> ABTestRecord | None: ...

    def list_ab_tests(self, limit: int = 100) -> list[ABTestRecord]: ...

    def set_ab_test_status(self, ab_test_id: str, status: str, end_unix_nano: int | None = None) -> bool:
        """Set ``status`` (and move the end, e.g. when stopped early); False for an unknown test or one already in it.

        A test already in ``status`` keeps its end: of two stops at once, the first one's stands.
        """
        ...

    def ab_arm_sums(
        self,
        *,
        model_id: str,
        version: str | None,
        variant: str | None,
        start_hour: int,
        end_hour: int,
        kinds: Sequence[str],
        by_hour: bool,
    ) -> list[tuple[int, str, str, int, float, float, int, float, float, float, float]]:
        """One A/B arm's cells summed per hour (keys added up) or per key (hours added up); hours in seconds.

        ``variant`` ``None`` takes the model's (and version's) traffic whatever its A/B tag.

        Each row is ``(hour_unix, kind, key, count, value, value_sq, images, count_sq,
        image_value_sq, count_value, count_total)``.
        """
        ...

    def ab_feedback_counts(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, str, int]]:
        """``(hour_unix, type, count)`` of feedback on one arm's predictions in ``[start, end)``."""
        ...

    def ab_feedback_image_sums(
        self, model_id: str, version: str | None, variant: str | None, start_unix_nano: int, end_unix_nano: int
    ) -> list[tuple[int, int, int, int, int, int, int]]:
        """Feedback on one arm's predictions summed per image, then per hour (``_abtests.feedback_image_sums``)."""
        ...


class ReviewStorage(Protocol):
    """The data engine: flagging policies, the review queue, dataset snapshots and training jobs."""

    def set_flag_policy(self, model_id: str, config: Mapping[str, Any], target_dataset_id: str) -> PolicyRecord:
        """Store the model's flagging policy; ``LookupError`` when the dataset does not exist."""
        ...

    def get_flag_policy(self, model_id: str) -> PolicyRecord | None: ...

    def box_area_counts(self, model_id: str, since_hour_unix: int) -> list[tuple[str, int]]:
        """``(key, count)`` of the model's ``box_area`` aggregate cells since an hour (hours summed)."""
        ...

    def flag_predictions_page(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        before: tuple[int, str] | None,
        limit: int,
        flag: FlagFunction,
    ) -> FlagPage:
        """In one write transaction: the model's next ``limit`` predictions of ``[since, until]``, newest first
        (before the keyset ``(time, id)`` when given), those not in its dataset's queue passed to ``flag``."""
        ...

    def predictions_named_by_feedback(
        self, model_id: str, *, since_unix_nano: int, until_unix_nano: int, older_than: int, limit: int
    ) -> list[str]:
        """Stored predictions older than ``older_than`` that feedback other than ``correct`` of the window names."""
        ...

    def flag_named_predictions(self, model_id: str, prediction_ids: Sequence[str], flag: FlagFunction) -> FlagPage:
        """As :meth:`flag_predictions_page`, for the model's stored predictions among ``prediction_ids``."""
        ...

    def dataset_exists(self, dataset_id: str) -> bool: ...

    def list_flagged_items(
        self, dataset_id: str, *, status: str | None, limit: int, after: tuple[int, str] | None = None
    ) -> ItemPage:
        """One page of the dataset's items, oldest first, after the keyset ``(created_unix_nano, id)``."""
        ...

    def get_flagged_item(self, dataset_id: str, item_id: str) -> FlaggedItemRecord | None: ...

    def claim_flagged_items(
        self, dataset_id: str, *, reviewer: str, limit: int, lease_s: float, skip: Sequence[str] = ()
    ) -> list[FlaggedItemRecord]:
        """Move up to ``limit`` of the oldest ``needs_review`` items (not in ``skip``) to ``in_review``.

        Never one item to two reviewers; claims older than ``lease_s`` go back to the queue first.
        """
        ...

    def claimed_flagged_items(self, dataset_id: str, *, reviewer: str, lease_s: float) -> list[FlaggedItemRecord]:
        """The items ``reviewer`` holds (claims younger than ``lease_s``), oldest first."""
        ...

    def release_flagged_item(self, dataset_id: str, item_id: str, *, reviewer: str) -> bool:
        """Give ``reviewer``'s claim on the item back to the queue; whether they held it."""
        ...

    def review_progress(self, dataset_id: str) -> ReviewProgress:
        """Items per status, and per reviewer per status."""
        ...

    def review_flagged_item(
        self,
        dataset_id: str,
        item_id: str,
        *,
        outcome: Literal["labeled", "rejected"],
        annotations: Sequence[Mapping[str, Any]] | None,
        reviewer: str | None,
    ) -> FlaggedItemRecord | None:
        """Label or reject an item; ``None`` if unknown; ``ConflictError`` if its state forbids it."""
        ...

    def expire_reviewed(self, before_unix_nano: int, *, chunk: int = 5000) -> int:
        """Delete reviewed items last changed before the cutoff whose review lives on elsewhere.

        Rejected items go; labelled ones go once a dataset version holds them with the
        same label. Items waiting for review never expire. Chunked (short write locks).
        """
        ...

    def snapshot_dataset_version(
        self, dataset_id: str, name: str, parent_version_id: str | None
    ) -> DatasetSnapshotRecord:
        """An immutable snapshot: the parent's items plus every labelled item; ``LookupError`` for no dataset."""
        ...

    def get_dataset_snapshot(self, dataset_id: str, version_id: str) -> DatasetSnapshotRecord | None: ...

    def dataset_snapshot_items(self, version_id: str) -> dict[str, dict[str, Any]]:
        """The snapshot's content: items by prediction id (``{"image": {...}, "annotations": [...]}``)."""
        ...

    def create_training_job(
        self,
        *,
        name: str,
        dataset_id: str,
        version_id: str,
        base_model_id: str | None,
        options: Mapping[str, Any],
        callback_url_base: str | None,
        gate: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord:
        """Record a job (``queued``, due now); ``LookupError`` naming the unknown field."""
        ...

    def get_training_job(self, job_id: str) -> TrainingJobRecord | None: ...

    def take_due_training_job(self, *, lease_s: float) -> TrainingJobRecord | None:
        """Lease the next job due for hand-off (due again ``lease_s`` later), or ``None``; never to two callers."""
        ...

    def next_training_job_due(self) -> int | None:
        """When the next job is due (unix nanoseconds), ``None`` when none waits."""
        ...

    def record_training_dispatch(self, job_id: str, *, error: str | None, retry_in_s: float | None) -> None:
        """After a hand-off attempt: done (``error`` None), retry later, or give up (``retry_in_s`` None)."""
        ...

    def update_training_job_status(
        self,
        job_id: str,
        *,
        status: str,
        model_version: str | None,
        message: str | None,
        metrics: Mapping[str, Any],
        gate_result: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord | None:
        """A trainer's status callback (``gated``: a success its gate refused); ``ConflictError`` for a
        transition the job's state forbids."""
        ...

    def put_training_job_detections(self, job_id: str, detections: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Store a job's candidate detections per image key (a key sent again replaces its detections)."""
        ...

    def training_job_detections(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """A job's candidate detections per image key."""
        ...


MAX_LABELLED_ITEMS: Final = 100_000
"""Most labelled items one quality read returns (the newest): bounds a report's memory and time."""


class QualityStorage(Protocol):
    """What model quality reads: the reviewers' labels beside the predictions they judge."""

    def labelled_items(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        model_version: str | None = None,
        limit: int = MAX_LABELLED_ITEMS,
        ab_variant: str | None = None,
    ) -> list[FlaggedItemRecord]:
        """The model's labelled items (any dataset) predicted in ``[since, until)``, oldest first.

        At most ``limit``, the newest. Each carries its ``inclusion_probability``; the
        feedback on it is left out (empty). ``ab_variant``: only that arm's items.
        """
        ...

    def missed_object_counts(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> tuple[int, int]:
        """``(missed_object feedback posts, predicted images)`` of the model in ``[since, until)``.

        Counts only (``storage._missed_objects``): posts by their time, images from the
        aggregate cells of the hours starting in the period. With a version or arm, only
        posts whose stored prediction is of it.
        """
        ...

    def detections_by_image_key(
        self, model_id: str, model_version: str, image_keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Per image key, the detections of the version's newest stored prediction on it.

        Keys the version has no stored prediction for (never sent, or past retention)
        are absent: comparing two versions pairs only images both predicted.
        """
        ...


class Storage(
    PredictionStorage,
    FeedbackStorage,
    RegistryStorage,
    ReviewStorage,
    QualityStorage,
    ABTestStorage,
    AlertStore,
    Protocol,
):
    """Everything the companion needs from a database."""
