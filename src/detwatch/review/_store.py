"""The data engine's policy and orchestration over the storage protocol (no SQL here).

Storage keeps the review queue, dataset snapshots and training jobs
(:class:`~detwatch.storage.protocols.ReviewStorage`); this module decides what gets
flagged (:class:`Flagger`, an ingest hook the wiring installs on the storage, so that
a flag is stored in the same transaction as the event or feedback that caused it) and
orchestrates the rest (:class:`DataEngineStore`).

Decisions the code cannot show:

- **Cheap at ingest.** The hook reads the policies of the batch's models by primary
  key (one query per batch); with none configured it stops there. Parsed policies and
  learned area ranges are cached per process (ranges for :data:`LEARN_TTL_S`), so a
  batch costs a policy evaluation per event plus one insert per *flagged* event.
- **Counted by the wiring.** The flag counter (``objdet.review.flagged``) is handed
  to the :class:`Flagger` where the app is wired, not created at import: importing
  the package has no effect on the process's telemetry.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from detwatch.contract.bins import AREA_BINS, area_edges
from detwatch.contract.predictions import Prediction
from detwatch.contract.shapes.review import ITEM_STATUSES, JOB_STATUSES
from detwatch.storage.protocols import FlagWriter, Storage
from detwatch.storage.records import (
    ConflictError,
    DatasetSnapshotRecord,
    FeedbackRecord,
    FlaggedItemRecord,
    NewFlag,
    PolicyRecord,
    ReviewProgress,
    TrainingJobRecord,
)
from detwatch_instrumentation import semconv
from detwatch_instrumentation.flagging import FEEDBACK_REASON_PREFIX, FlaggingPolicy, learn_area_ranges

__all__ = [
    "CURSOR_PATTERN",
    "ITEM_STATUSES",
    "JOB_STATUSES",
    "MAX_BACKFILL",
    "Backfill",
    "ConflictError",
    "DataEngineStore",
    "FlagCounter",
    "Flagger",
    "PolicyRecord",
    "decode_cursor",
    "encode_cursor",
    "forget_learned",
]

LEARN_TTL_S: Final = 60.0
"""How long learned area ranges are reused before the aggregates are read again."""
LEARN_WINDOW_S: Final = 7 * 24 * 3600
"""Aggregates the usual box sizes are learned from: the last week."""
MAX_BACKFILL: Final = 50_000
"""Most predictions one policy change evaluates (newest first): about 4 s where every one is flagged."""
CURSOR_PATTERN: Final = re.compile(r"(0|[1-9][0-9]{0,17}|[1-8][0-9]{18}):[0-9a-f]{32}")
"""A page cursor: the last item's creation time (fits a BIGINT) and id."""


class FlagCounter(Protocol):
    """An OpenTelemetry counter's ``add`` (what :class:`Flagger` counts flags with)."""

    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None: ...


@dataclass(frozen=True)
class Backfill:
    """What applying a policy to the retained predictions of a window did (:meth:`DataEngineStore.backfill`)."""

    since_unix_nano: int
    """The start of the window actually covered (later than asked when cut at the limit)."""
    until_unix_nano: int
    examined: int
    """Predictions evaluated."""
    flagged: int
    """Items added to the review queue."""
    complete: bool
    """Whether the whole window asked for was covered."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- policy cache (per process)

_cache_lock = threading.Lock()
_parsed: dict[tuple[str, str], FlaggingPolicy] = {}
_learned: dict[str, tuple[float, dict[str, tuple[float, float]]]] = {}

AreaCounts = Callable[[str, int], Sequence[tuple[str, int]]]
"""``(model_id, since_hour_unix) -> [(key, count)]``: a model's ``box_area`` cells (a storage read)."""


def _policy(record: PolicyRecord) -> FlaggingPolicy:
    key = (record.model_id, _dumps(record.config))
    with _cache_lock:
        policy = _parsed.get(key)
    if policy is None:
        policy = FlaggingPolicy.from_config(record.config)
        with _cache_lock:
            if len(_parsed) > 1024:
                _parsed.clear()
            _parsed[key] = policy
    return policy


def learned_ranges(area_counts: AreaCounts, model_id: str, policy: FlaggingPolicy) -> dict[str, tuple[float, float]]:
    """Per-class usual relative-area ranges of ``model_id``, from its ``box_area`` aggregates (cached)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _learned.get(model_id)
    if cached is not None and now < cached[0]:
        return cached[1]
    since = int(time.time()) - LEARN_WINDOW_S
    histograms: dict[str, list[int]] = {}
    for key, count in area_counts(model_id, since):
        name, _, bin_ = key.rpartition("|")
        histograms.setdefault(name, [0] * AREA_BINS)[int(bin_)] += count
    size = policy.unusual_size
    ranges = learn_area_ranges(histograms, area_edges(), quantile=size.quantile, min_samples=size.min_samples)
    with _cache_lock:
        _learned[model_id] = (now + LEARN_TTL_S, ranges)
    return ranges


def forget_learned(model_id: str | None = None) -> None:
    """Drop cached learned ranges (tests, and a policy change)."""
    with _cache_lock:
        if model_id is None:
            _learned.clear()
        else:
            _learned.pop(model_id, None)


def _effective(area_counts: AreaCounts, record: PolicyRecord) -> FlaggingPolicy:
    policy = _policy(record)
    if "unusual_size" in policy.edge_conditions and policy.unusual_size.learn:
        return policy.with_learned(learned_ranges(area_counts, record.model_id, policy))
    return policy


# ---------------------------------------------------------------- the ingest hook


class Flagger:
    """What gets flagged for review: the storage calls it inside its ingest and feedback transactions.

    Install it where the storage is opened for the companion
    (``storage.add_ingest_hook(Flagger(counter))``).
    """

    def __init__(self, counter: FlagCounter | None = None) -> None:
        self._counter = counter

    def predictions_stored(self, writer: FlagWriter, new: Sequence[Prediction], feedback_joined: int = 1) -> int:
        """Flag newly stored predictions per their model's policy.

        ``feedback_joined``: how many waiting feedback rows the ingest just joined to these
        predictions; 0 spares the look-up of their feedback (none can exist otherwise: feedback
        for a prediction not yet stored always waits to be joined).
        """
        configs = writer.policies([p.model_id for p in new])
        if not configs:
            return 0
        candidates = [p for p in new if p.model_id in configs]
        # Feedback that arrived before its prediction: non-correct feedback flags it now.
        objections = writer.objections([p.prediction_id for p in candidates]) if feedback_joined else {}
        policies = {m: _effective(writer.box_area_counts, r) for m, r in configs.items()}
        now = time.time_ns()
        flags: list[NewFlag] = []
        counts: dict[str, int] = {}
        for p in candidates:
            policy = policies[p.model_id]
            reasons = list(policy.evaluate(p.prediction_id, p.detections, p.image.width, p.image.height))
            # Only a policy's selection is a probability sample; feedback alone is not.
            chance = policy.inclusion_probability(p.detections, p.image.width, p.image.height) if reasons else None
            reasons += sorted(FEEDBACK_REASON_PREFIX + kind for kind in objections.get(p.prediction_id, ()))
            if not reasons:
                continue
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
            flags.append(NewFlag(configs[p.model_id].target_dataset_id, p, tuple(reasons), now, chance))
        if flags:
            writer.insert_flags(flags)
            self._count(counts)
        return len(flags)

    def feedback_stored(self, writer: FlagWriter, records: Sequence[FeedbackRecord]) -> int:
        """Flag the predictions that feedback other than ``correct`` names.

        A prediction with an item already gets the reason added to it; one whose item a
        concurrent post inserted first (the insert finds it there) too.
        """
        wanted = [r for r in records if r.type != "correct" and not r.duplicate and r.prediction_id and r.model_id]
        if not wanted:
            return 0
        flagged = 0
        now = time.time_ns()
        counts: dict[str, int] = {}
        for record in sorted(wanted, key=lambda r: str(r.prediction_id)):
            config = writer.policies([str(record.model_id)]).get(str(record.model_id))
            if config is None:
                continue
            dataset_id = config.target_dataset_id
            prediction_id = str(record.prediction_id)
            reason = FEEDBACK_REASON_PREFIX + record.type
            added = writer.add_reason(dataset_id, prediction_id, reason, now)
            if added is None:
                prediction = writer.prediction(prediction_id)
                if prediction is None:
                    continue  # expired: nothing to review any more
                if writer.insert_flag(NewFlag(dataset_id, prediction, (reason,), now)):
                    flagged += 1
                    added = True
                else:  # a concurrent post inserted it first
                    added = writer.add_reason(dataset_id, prediction_id, reason, now)
            if added:
                counts[reason] = counts.get(reason, 0) + 1
        self._count(counts)
        return flagged

    def _count(self, counts: Mapping[str, int]) -> None:
        # Counted inside the transaction: a rare rollback or retry over-counts, never loses a flag.
        if self._counter is None:
            return
        for reason, n in counts.items():
            self._counter.add(n, {semconv.ATTR_SAMPLING_STRATEGY: reason})


# ---------------------------------------------------------------- cursors


def encode_cursor(key: tuple[int, str]) -> str:
    """The opaque cursor of a page's keyset ``(created_unix_nano, id)``."""
    return f"{key[0]}:{key[1]}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(created_unix_nano, id)`` of a cursor (``"<created>:<id>"``, opaque to clients); ``ValueError`` otherwise."""
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValueError("not a cursor this service returned")
    created, _, item_id = cursor.partition(":")
    return int(created), item_id


# ---------------------------------------------------------------- the service object


class DataEngineStore:
    """Policies, review queue, dataset snapshots and training jobs: orchestration over the storage protocol."""

    def __init__(self, storage: Storage, flagger: Flagger | None = None) -> None:
        self.storage = storage
        self.flagger = flagger if flagger is not None else Flagger()

    # ------------------------------------------------------------ policies

    def set_policy(self, model_id: str, policy: FlaggingPolicy, target_dataset_id: str) -> PolicyRecord:
        """Store the model's policy; ``LookupError`` when the dataset does not exist."""
        record = self.storage.set_flag_policy(model_id, policy.to_config(), target_dataset_id)
        forget_learned(model_id)
        return record

    def backfill(
        self, model_id: str, *, since_unix_nano: int, until_unix_nano: int, limit: int = MAX_BACKFILL, chunk: int = 2000
    ) -> Backfill:
        """Apply the model's stored policy to its retained predictions of a window.

        Ingest flags a prediction only against the policy in place when it arrives, so
        predictions (and feedback) from before a policy was configured or changed would
        never reach the review queue. This evaluates, exactly as ingest does
        (:meth:`Flagger.predictions_stored`: the same reasons, feedback other than
        ``correct`` included),

        - the predictions whose own time lies in ``[since, until]``, newest first, and
        - the predictions named by feedback other than ``correct`` given in that window
          (feedback on an older prediction that is still retained).

        At most ``limit`` predictions, so that the call answers within a client's and a
        worker's timeout: past it the answer says ``complete`` false and ``since`` is
        the time of the oldest prediction evaluated. A prediction that already has an
        item in the target dataset keeps it unchanged (an earlier policy's reasons, a
        review under way). Keyset-paged by ``(time_unix_nano, prediction_id)``, one
        write transaction per ``chunk``, so that ingest is never held up for long; items
        are inserted ``ON CONFLICT DO NOTHING``, so a prediction flagged by a concurrent
        ingest is not flagged twice.
        """
        flag = self.flagger.predictions_stored
        examined = flagged = 0
        oldest, complete = since_unix_nano, True
        before: tuple[int, str] | None = None  # the keyset: the last (oldest) prediction evaluated
        while True:
            want = min(chunk, limit - examined)
            page = self.storage.flag_predictions_page(
                model_id,
                since_unix_nano=since_unix_nano,
                until_unix_nano=until_unix_nano,
                before=before,
                limit=want,
                flag=flag,
            )
            examined += page.examined
            flagged += page.flagged
            if page.examined < want:
                break  # the window is exhausted
            before = page.last
            if examined >= limit:
                oldest, complete = page.last[0], False  # cut at the limit: the window actually covered starts here
                break

        older = (
            self.storage.predictions_named_by_feedback(
                model_id,
                since_unix_nano=oldest,
                until_unix_nano=until_unix_nano,
                older_than=oldest,
                limit=limit - examined,
            )
            if examined < limit
            else []
        )
        for begin in range(0, len(older), chunk):
            named = self.storage.flag_named_predictions(model_id, older[begin : begin + chunk], flag)
            examined += named.examined
            flagged += named.flagged
        return Backfill(oldest, until_unix_nano, examined, flagged, complete)

    def get_policy(self, model_id: str) -> tuple[PolicyRecord, FlaggingPolicy] | None:
        """The stored policy and the effective one (with the learned size ranges)."""
        record = self.storage.get_flag_policy(model_id)
        if record is None:
            return None
        return record, _effective(self.storage.box_area_counts, record)

    # ------------------------------------------------------------ review queue

    def dataset_exists(self, dataset_id: str) -> bool:
        return self.storage.dataset_exists(dataset_id)

    def list_items(
        self, dataset_id: str, *, status: str | None, limit: int, cursor: tuple[int, str] | None = None
    ) -> tuple[list[FlaggedItemRecord], str | None]:
        """One page of the dataset's items (oldest first) and the cursor of the next page (``None`` at the end)."""
        page = self.storage.list_flagged_items(dataset_id, status=status, limit=limit, after=cursor)
        return page.items, None if page.next_key is None else encode_cursor(page.next_key)

    def get_item(self, dataset_id: str, item_id: str) -> FlaggedItemRecord | None:
        return self.storage.get_flagged_item(dataset_id, item_id)

    def claim_items(self, dataset_id: str, *, reviewer: str, limit: int, lease_s: float) -> list[FlaggedItemRecord]:
        """Move up to ``limit`` of the oldest ``needs_review`` items to ``in_review`` for ``reviewer``."""
        return self.storage.claim_flagged_items(dataset_id, reviewer=reviewer, limit=limit, lease_s=lease_s)

    def next_for(
        self, dataset_id: str, *, reviewer: str, lease_s: float, skip: Sequence[str] = ()
    ) -> FlaggedItemRecord | None:
        """What ``reviewer`` works on next: an item they hold already (oldest), else a newly claimed one.

        An item they hold comes first so that a reload, or a second tab, shows the same
        item instead of claiming another; ``skip`` (what they skipped this session) is
        never offered again, also when they still hold it.
        """
        for item in self.storage.claimed_flagged_items(dataset_id, reviewer=reviewer, lease_s=lease_s):
            if item.id not in skip:
                return item
        claimed = self.storage.claim_flagged_items(dataset_id, reviewer=reviewer, limit=1, lease_s=lease_s, skip=skip)
        return claimed[0] if claimed else None

    def skip_item(self, dataset_id: str, item_id: str, *, reviewer: str) -> bool:
        """Give the item back to the queue, for another reviewer; whether ``reviewer`` held it."""
        return self.storage.release_flagged_item(dataset_id, item_id, reviewer=reviewer)

    def progress(self, dataset_id: str) -> ReviewProgress:
        """Items per status, and per reviewer (see :class:`~detwatch.storage.records.ReviewProgress`)."""
        return self.storage.review_progress(dataset_id)

    def review_item(
        self,
        dataset_id: str,
        item_id: str,
        *,
        outcome: Literal["labeled", "rejected"],
        annotations: Sequence[Mapping[str, Any]] | None,
        reviewer: str | None,
    ) -> FlaggedItemRecord | None:
        """Label or reject an item; ``None`` if unknown; :class:`ConflictError` if its state forbids it."""
        return self.storage.review_flagged_item(
            dataset_id, item_id, outcome=outcome, annotations=annotations, reviewer=reviewer
        )

    def expire_reviewed(self, before_unix_nano: int, *, chunk: int = 5000) -> int:
        """Delete reviewed items whose review lives on elsewhere (see :meth:`ReviewStorage.expire_reviewed`)."""
        return self.storage.expire_reviewed(before_unix_nano, chunk=chunk)

    # ------------------------------------------------------------ dataset versions

    def create_version(self, dataset_id: str, name: str, parent_version_id: str | None) -> DatasetSnapshotRecord:
        """An immutable snapshot: the parent's items plus every labelled item (latest label wins)."""
        return self.storage.snapshot_dataset_version(dataset_id, name, parent_version_id)

    def get_version(self, dataset_id: str, version_id: str) -> DatasetSnapshotRecord | None:
        return self.storage.get_dataset_snapshot(dataset_id, version_id)

    def version_items(self, version_id: str) -> dict[str, dict[str, Any]]:
        """The snapshot's items by prediction id (``{"image": {...}, "annotations": [...]}``)."""
        return self.storage.dataset_snapshot_items(version_id)

    # ------------------------------------------------------------ training jobs

    def create_job(
        self,
        *,
        name: str,
        dataset_id: str,
        version_id: str,
        base_model_id: str | None,
        options: Mapping[str, Any],
        callback_base: str | None,
        gate: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord:
        """Record a job (``queued``, due for hand-off now); ``LookupError`` naming the unknown field.

        ``callback_base`` is the configured public URL (``None``: none yet); the hand-off
        builds its URLs from the configuration of its own time.
        """
        return self.storage.create_training_job(
            name=name,
            dataset_id=dataset_id,
            version_id=version_id,
            base_model_id=base_model_id,
            options=options,
            callback_url_base=callback_base,
            gate=gate,
        )

    def get_job(self, job_id: str) -> TrainingJobRecord | None:
        return self.storage.get_training_job(job_id)

    def take_due_job(self, *, lease_s: float) -> TrainingJobRecord | None:
        """Lease the next job due for hand-off (its ``next_attempt`` moves ``lease_s`` ahead), or ``None``.

        A dispatcher that dies holding a lease loses nothing: the job is due again when
        the lease ends. Two dispatchers never hold the same job.
        """
        return self.storage.take_due_training_job(lease_s=lease_s)

    def next_due_in(self) -> float | None:
        """Seconds until the next job is due (0 when one is due now), ``None`` when none waits."""
        due = self.storage.next_training_job_due()
        return None if due is None else max(0.0, (due - time.time_ns()) / 1e9)

    def record_dispatch(self, job_id: str, *, error: str | None, retry_in_s: float | None) -> None:
        """After a hand-off attempt: done (``error`` None), retry later, or give up (``retry_in_s`` None)."""
        self.storage.record_training_dispatch(job_id, error=error, retry_in_s=retry_in_s)

    def update_job_status(
        self,
        job_id: str,
        *,
        status: str,
        model_version: str | None,
        message: str | None,
        metrics: Mapping[str, Any],
        gate_result: Mapping[str, Any] | None = None,
    ) -> TrainingJobRecord | None:
        """A trainer's status callback; a ``succeeded`` job registers ``model_version`` of its base model.

        ``gated`` (with the gate's ``gate_result``) ends a job whose reported success its
        gate refused: no version is registered.
        """
        return self.storage.update_training_job_status(
            job_id,
            status=status,
            model_version=model_version,
            message=message,
            metrics=metrics,
            gate_result=gate_result,
        )

    def put_candidate_detections(self, job_id: str, detections: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Keep what a job's candidate detected per image key, for its gate (never as production predictions)."""
        self.storage.put_training_job_detections(job_id, detections)
