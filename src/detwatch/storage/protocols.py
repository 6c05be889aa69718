"""The storage interface: what the companion asks of a backend.

A backend is any class with these methods; it need not inherit from anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from detwatch.contract.feedback import FeedbackInput
from detwatch.contract.predictions import Prediction
from detwatch.storage._transaction import Transactional
from detwatch.storage.records import (
    ABTestRecord,
    AggregateRow,
    DatasetRecord,
    DatasetVersionRecord,
    FeedbackRecord,
    IngestResult,
    ModelRecord,
)


class Storage(Transactional, Protocol):
    """What the companion needs from a database. Implementations are thread-safe."""

    def on_flagged(self, listener: Callable[[Mapping[str, int]], None]) -> None:
        """Tell ``listener`` ``{reason: count}`` of what each ingest or feedback transaction flags for review."""
        ...

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

    def add_feedback(self, items: Sequence[FeedbackInput]) -> list[FeedbackRecord]:
        """Store feedback (one transaction); an item whose idempotency key was seen returns the stored record
        with ``duplicate=True`` and is not stored again.

        Feedback naming a span that holds several predictions (a batch) keeps the span and
        ``detection_index`` with ``prediction_id`` None (the model is filled in); feedback
        naming a prediction not stored yet is joined when it arrives.
        """
        ...

    def list_feedback(self, *, model_id: str | None = None, limit: int = 100) -> list[FeedbackRecord]: ...

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

    def aggregates(
        self, model_id: str, start_unix_nano: int, end_unix_nano: int, kinds: Sequence[str] | None = None
    ) -> list[AggregateRow]:
        """Cells of ``model_id`` whose hour *starts* in ``[start, end)``, all kinds or those named."""
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
