"""The data engine's storage: review queue, policies, dataset snapshots and training jobs (both backends).

Every SQL statement of the data engine lives here, in storage, on the shared
transactions of :mod:`detwatch.storage._sql`; the ingest and feedback transactions
call :func:`flag_ingested` and :func:`flag_feedback` so that a flag is stored exactly
when the event or feedback that caused it is. What to flag is the model's
:class:`~detwatch_instrumentation.flagging.FlaggingPolicy` (a value configured per
model and stored with it); who hears of a flag (the companion's
``objdet.review.flagged`` counter) is a listener the application injects
(:meth:`SQLStorage.on_flagged <detwatch.storage._sql.SQLStorage.on_flagged>`), never an
instrument created at import.

Decisions the code cannot show:

- **Cheap at ingest.** The hook reads the policies of the batch's models by primary
  key (one query per batch); with none configured it stops there. Parsed policies and
  learned area ranges are cached per process (ranges for :data:`LEARN_TTL_S`), so a
  batch costs a policy evaluation per event plus one insert per *flagged* event.
- **Bounded.** Only flagged predictions are copied into ``flagged_items`` (with what
  review needs: detections and image reference, since raw events expire); they stay
  until reviewed and then live on in the dataset versions that include them.
- **Claims.** Claiming selects the oldest ``needs_review`` items and marks them
  ``in_review`` for one reviewer in one write transaction: PostgreSQL with ``FOR
  UPDATE SKIP LOCKED`` (concurrent claimers skip each other's rows instead of waiting
  or taking the same ones), SQLite under its database write lock (``BEGIN
  IMMEDIATE``), so two reviewers never get the same item. A claim older than
  ``lease_s`` returns to the queue.
- **Paging.** Keyset on ``(created_unix_nano, id)``: a cursor stays valid while items
  are claimed or labelled, and no page skips or repeats an item that stays put.
- **Snapshots.** A dataset version copies its items (parent's plus the newly
  labelled ones, the latest label winning) and is never changed afterwards; its
  ``content_hash`` is SHA-256 over a canonical JSON of the items keyed by prediction
  id, so the same content gives the same hash in any database.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import orjson

from detwatch.contract.bins import AREA_BINS, area_edges
from detwatch.contract.shapes.review import ITEM_STATUSES, JOB_STATUSES
from detwatch.storage._rows import prediction_from_row
from detwatch.storage._transaction import Transaction
from detwatch_instrumentation.flagging import FEEDBACK_REASON_PREFIX, FlaggingPolicy, learn_area_ranges

if TYPE_CHECKING:
    from detwatch.contract.predictions import Prediction
    from detwatch.storage.protocols import Storage
    from detwatch.storage.records import FeedbackRecord

__all__ = [
    "ITEM_STATUSES",
    "JOB_STATUSES",
    "MAX_BACKFILL",
    "Backfill",
    "ConflictError",
    "DataEngineStore",
    "PolicyRecord",
    "flag_feedback",
    "flag_ingested",
]

_JOB_NEXT: Final[dict[str, tuple[str, ...]]] = {
    "queued": ("running", "succeeded", "failed"),
    "running": ("succeeded", "failed"),
    "succeeded": (),
    "failed": (),
}

LEARN_TTL_S: Final = 60.0
"""How long learned area ranges are reused before the aggregates are read again."""
LEARN_WINDOW_S: Final = 7 * 24 * 3600
"""Aggregates the usual box sizes are learned from: the last week."""
CHUNK: Final = 500
MAX_BACKFILL: Final = 50_000
"""Most predictions one policy change evaluates (newest first): about 4 s where every one is flagged."""
CURSOR_PATTERN: Final = re.compile(r"(0|[1-9][0-9]{0,17}|[1-8][0-9]{18}):[0-9a-f]{32}")
"""A page cursor: the last item's creation time (fits a BIGINT) and id."""

FlagListener = Callable[[Mapping[str, int]], None]
"""Told ``{reason: count}`` of the items a transaction flagged (the companion's ``objdet.review.flagged``)."""


class ConflictError(Exception):
    """A state change that the item's or job's current state does not allow (409)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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


@dataclass(frozen=True)
class PolicyRecord:
    model_id: str
    config: dict[str, Any]
    target_dataset_id: str
    updated_unix_nano: int


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- policy cache (per process)

_cache_lock = threading.Lock()
_parsed: dict[tuple[str, str], FlaggingPolicy] = {}
_learned: dict[str, tuple[float, dict[str, tuple[float, float]]]] = {}


def _policy(model_id: str, config: str) -> FlaggingPolicy:
    key = (model_id, config)
    with _cache_lock:
        policy = _parsed.get(key)
    if policy is None:
        policy = FlaggingPolicy.from_config(json.loads(config))
        with _cache_lock:
            if len(_parsed) > 1024:
                _parsed.clear()
            _parsed[key] = policy
    return policy


def learned_ranges(tx: Transaction, model_id: str, policy: FlaggingPolicy) -> dict[str, tuple[float, float]]:
    """Per-class usual relative-area ranges of ``model_id``, from its ``box_area`` aggregates (cached)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _learned.get(model_id)
    if cached is not None and now < cached[0]:
        return cached[1]
    since = int(time.time()) - LEARN_WINDOW_S
    histograms: dict[str, list[int]] = {}
    for key, count in tx.query(
        "SELECT key, SUM(count) FROM aggregates WHERE model_id = ? AND kind = 'box_area' AND hour_unix >= ? "
        "GROUP BY key",
        (model_id, since),
    ):
        name, _, bin_ = str(key).rpartition("|")
        histograms.setdefault(name, [0] * AREA_BINS)[int(bin_)] += int(count)
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


def _effective(tx: Transaction, model_id: str, config: str) -> FlaggingPolicy:
    policy = _policy(model_id, config)
    if "unusual_size" in policy.edge_conditions and policy.unusual_size.learn:
        return policy.with_learned(learned_ranges(tx, model_id, policy))
    return policy


# ---------------------------------------------------------------- hooks called by the storage


def _detections_json(detections: Iterable[Any]) -> str:
    # orjson, as the storage encodes the same detections: this runs for every flagged event.
    return orjson.dumps(
        [{"class": d.class_name, "confidence": d.confidence, "box": d.box} for d in detections]
    ).decode()


def flag_ingested(
    tx: Transaction, new: Sequence[Prediction], feedback_joined: int = 1, notify: FlagListener | None = None
) -> int:
    """Flag newly stored predictions per their model's policy (inside the ingest transaction).

    ``feedback_joined``: how many waiting feedback rows the ingest just joined to these
    predictions; 0 spares the look-up of their feedback (none can exist otherwise: feedback
    for a prediction not yet stored always waits to be joined).
    """
    models = sorted({p.model_id for p in new})
    configs: dict[str, tuple[str, str]] = {}
    for start in range(0, len(models), CHUNK):
        chunk = models[start : start + CHUNK]
        for model_id, config, dataset_id in tx.query(
            "SELECT model_id, config, target_dataset_id FROM data_engine_configs "
            f"WHERE model_id IN ({_marks(len(chunk))})",
            chunk,
        ):
            configs[model_id] = (config, dataset_id)
    if not configs:
        return 0
    candidates = [p for p in new if p.model_id in configs]
    # Feedback that arrived before its prediction: non-correct feedback flags it now.
    feedback: dict[str, set[str]] = {}
    ids = [p.prediction_id for p in candidates] if feedback_joined else []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for prediction_id, kind in tx.query(
            "SELECT prediction_id, type FROM feedback "
            f"WHERE type <> 'correct' AND prediction_id IN ({_marks(len(chunk))})",
            chunk,
        ):
            feedback.setdefault(prediction_id, set()).add(FEEDBACK_REASON_PREFIX + kind)
    policies = {m: _effective(tx, m, c) for m, (c, _) in configs.items()}
    now = time.time_ns()
    rows: list[tuple[Any, ...]] = []
    counts: dict[str, int] = {}
    for p in candidates:
        reasons = list(policies[p.model_id].evaluate(p.prediction_id, p.detections, p.image.width, p.image.height))
        reasons += sorted(feedback.get(p.prediction_id, ()))
        if not reasons:
            continue
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
        rows.append(_item_row(configs[p.model_id][1], p, reasons, now))
    if rows:
        rows.sort(key=lambda r: (r[1], r[2]))  # lock order: (dataset, prediction)
        tx.executemany(_INSERT_ITEM, rows)
        if notify is not None and counts:
            notify(counts)
    return len(rows)


_ITEM_COLUMNS: Final = (
    "id, dataset_id, prediction_id, model_id, model_version, time_unix_nano, reasons, detections, image_key, "
    "image_uri, image_width, image_height, status, assignee, claimed_unix_nano, label, reviewer, created_unix_nano, "
    "updated_unix_nano"
)
_INSERT_ITEM: Final = (
    f"INSERT INTO flagged_items ({_ITEM_COLUMNS}) VALUES ({_marks(19)}) "
    "ON CONFLICT (dataset_id, prediction_id) DO NOTHING"
)


def _item_row(dataset_id: str, p: Prediction, reasons: Sequence[str], now: int) -> tuple[Any, ...]:
    return (
        uuid.uuid4().hex,
        dataset_id,
        p.prediction_id,
        p.model_id,
        p.model_version,
        p.time_unix_nano,
        orjson.dumps(list(reasons)).decode(),
        _detections_json(p.detections),
        p.image.key,
        p.image.uri,
        p.image.width,
        p.image.height,
        "needs_review",
        None,
        None,
        None,
        None,
        now,
        now,
    )


def flag_feedback(tx: Transaction, records: Sequence[FeedbackRecord], notify: FlagListener | None = None) -> int:
    """Flag the predictions that feedback other than ``correct`` names (inside the feedback transaction).

    Two feedback posts on one prediction may run at once (PostgreSQL, READ COMMITTED):
    the insert that loses the race on ``(dataset_id, prediction_id)`` waits for the
    winner, inserts nothing, and then merges its reason into the winner's row, which
    it reads locked, so that no reason is lost.
    """
    wanted = [r for r in records if r.type != "correct" and not r.duplicate and r.prediction_id and r.model_id]
    if not wanted:
        return 0
    flagged = 0
    now = time.time_ns()
    counts: dict[str, int] = {}
    for record in sorted(wanted, key=lambda r: str(r.prediction_id)):
        config = tx.query("SELECT target_dataset_id FROM data_engine_configs WHERE model_id = ?", (record.model_id,))
        if not config:
            continue
        dataset_id = config[0][0]
        reason = FEEDBACK_REASON_PREFIX + record.type
        added = _merge_reason(tx, dataset_id, str(record.prediction_id), reason, now)
        if added is None:
            rows = tx.query(
                f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE prediction_id = ?", (record.prediction_id,)
            )
            if not rows:
                continue  # expired: nothing to review any more
            item = _item_row(dataset_id, prediction_from_row(rows[0]), [reason], now)
            if tx.execute(_INSERT_ITEM, item):
                flagged += 1
                added = True
            else:  # a concurrent post inserted it first
                added = _merge_reason(tx, dataset_id, str(record.prediction_id), reason, now)
        if added:
            counts[reason] = counts.get(reason, 0) + 1
    if notify is not None and counts:
        notify(counts)
    return flagged


def _merge_reason(tx: Transaction, dataset_id: str, prediction_id: str, reason: str, now: int) -> bool | None:
    """Add ``reason`` to the item of ``prediction_id`` (read locked): ``None`` without one, else whether added."""
    lock = " FOR UPDATE" if _dialect(tx) == "postgresql" else ""
    existing = tx.query(
        f"SELECT id, reasons FROM flagged_items WHERE dataset_id = ? AND prediction_id = ?{lock}",
        (dataset_id, prediction_id),
    )
    if not existing:
        return None
    reasons = json.loads(existing[0][1])
    if reason in reasons:
        return False
    tx.execute(
        "UPDATE flagged_items SET reasons = ?, updated_unix_nano = ? WHERE id = ?",
        (_dumps([*reasons, reason]), now, existing[0][0]),
    )
    return True


def _dialect(tx: Transaction) -> str:
    # psycopg placeholders are converted by the PostgreSQL backend; a sqlite3 cursor says what it is.
    return "sqlite" if type(getattr(tx, "_cursor", None)).__module__.startswith("sqlite3") else "postgresql"


_PREDICTION_COLUMNS: Final = (
    "prediction_id, model_id, model_version, ab_variant, time_unix_nano, latency_ms, image_key, image_uri, "
    "image_width, image_height, trace_id, span_id, detections, attributes, received_unix_nano"
)


# ---------------------------------------------------------------- the store used by the API


def _encode_cursor(created: int, item_id: str) -> str:
    return f"{created}:{item_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(created_unix_nano, id)`` of a cursor (``"<created>:<id>"``, opaque to clients); ``ValueError`` otherwise."""
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValueError("not a cursor this service returned")
    created, _, item_id = cursor.partition(":")
    return int(created), item_id


def _box(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values]


def suggested_label(
    detections: Sequence[Mapping[str, Any]], feedback: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The label a reviewer starts from: the detections with the feedback's corrections applied.

    ``wrong_label`` changes the class of the detection it names, ``wrong_box`` its box,
    ``false_positive`` removes it, ``missed_object`` adds the corrected box and class;
    feedback that names no detection changes nothing but is shown beside the item.
    Applied in feedback time order; the latest correction of a detection wins.
    """
    boxes: list[dict[str, Any] | None] = [{"class": d["class"], "box": _box(d["box"])} for d in detections]
    added: list[dict[str, Any]] = []
    for f in sorted(feedback, key=lambda f: (f["time_unix_nano"], f["id"])):
        index = f.get("detection_index")
        kind = f["type"]
        if kind == "missed_object" and f.get("corrected_box") and f.get("corrected_class"):
            added.append({"class": f["corrected_class"], "box": _box(f["corrected_box"])})
            continue
        if index is None or not 0 <= index < len(boxes) or boxes[index] is None:
            continue
        current = cast(dict[str, Any], boxes[index])
        if kind == "false_positive":
            boxes[index] = None
        elif kind == "wrong_label" and f.get("corrected_class"):
            current["class"] = f["corrected_class"]
            if f.get("corrected_box"):
                current["box"] = _box(f["corrected_box"])
        elif kind == "wrong_box" and f.get("corrected_box"):
            current["box"] = _box(f["corrected_box"])
            if f.get("corrected_class"):
                current["class"] = f["corrected_class"]
    return [b for b in boxes if b is not None] + added


class DataEngineStore:
    """Policies, review queue, dataset snapshots and training jobs on a companion storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.dialect = storage.dialect

    def _run(self, work: Any, *, write: bool) -> Any:
        return self.storage.run_transaction(work, write=write)

    # ------------------------------------------------------------ policies

    def set_policy(self, model_id: str, policy: FlaggingPolicy, target_dataset_id: str) -> PolicyRecord:
        """Store the model's policy; ``LookupError`` when the dataset does not exist."""
        now = time.time_ns()
        config = policy.to_config()
        text = _dumps(config)

        def work(tx: Transaction) -> None:
            if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (target_dataset_id,)):
                raise LookupError(target_dataset_id)
            tx.execute(
                "INSERT INTO data_engine_configs (model_id, config, target_dataset_id, updated_unix_nano) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (model_id) DO UPDATE SET config = excluded.config, "
                "target_dataset_id = excluded.target_dataset_id, updated_unix_nano = excluded.updated_unix_nano",
                (model_id, text, target_dataset_id, now),
            )

        self._run(work, write=True)
        forget_learned(model_id)
        return PolicyRecord(model_id, config, target_dataset_id, now)

    def backfill(
        self, model_id: str, *, since_unix_nano: int, until_unix_nano: int, limit: int = MAX_BACKFILL, chunk: int = 2000
    ) -> Backfill:
        """Apply the model's stored policy to its retained predictions of a window.

        Ingest flags a prediction only against the policy in place when it arrives, so
        predictions (and feedback) from before a policy was configured or changed would
        never reach the review queue. This evaluates, exactly as ingest does
        (:func:`flag_ingested`: the same reasons, feedback other than ``correct`` included),

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

        def flag(tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> int:
            config = tx.query("SELECT target_dataset_id FROM data_engine_configs WHERE model_id = ?", (model_id,))
            if not config or not rows:
                return 0
            ids = [r[0] for r in rows]
            present = {
                r[0]
                for r in tx.query(
                    "SELECT prediction_id FROM flagged_items WHERE dataset_id = ? "
                    f"AND prediction_id IN ({_marks(len(ids))})",
                    (config[0][0], *ids),
                )
            }
            return flag_ingested(tx, [prediction_from_row(r) for r in rows if r[0] not in present])

        examined = flagged = 0
        oldest, complete = since_unix_nano, True
        before: tuple[int, str] | None = None  # the keyset: the last (oldest) prediction evaluated
        while True:
            want = min(chunk, limit - examined)

            def page(
                tx: Transaction, before: tuple[int, str] | None = before, want: int = want
            ) -> tuple[int, int, tuple[int, str]]:
                sql = f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE model_id = ? AND time_unix_nano >= ? "
                params: list[Any] = [model_id, since_unix_nano]
                if before is None:
                    sql += "AND time_unix_nano <= ? "
                    params.append(until_unix_nano)
                else:
                    sql += "AND (time_unix_nano, prediction_id) < (?, ?) "
                    params += [before[0], before[1]]
                rows = tx.query(sql + "ORDER BY time_unix_nano DESC, prediction_id DESC LIMIT ?", [*params, want])
                last = (int(rows[-1][4]), str(rows[-1][0])) if rows else (0, "")
                return len(rows), flag(tx, rows), last

            n, f, last = self._run(page, write=True)
            examined += n
            flagged += f
            if n < want:
                break  # the window is exhausted
            before = last
            if examined >= limit:
                oldest, complete = last[0], False  # cut at the limit: the window actually covered starts here
                break

        def named_by_feedback(tx: Transaction) -> list[str]:
            return [
                str(r[0])
                for r in tx.query(
                    "SELECT DISTINCT f.prediction_id FROM feedback f "
                    "JOIN predictions p ON p.prediction_id = f.prediction_id "
                    "WHERE f.model_id = ? AND f.type <> 'correct' AND f.time_unix_nano >= ? AND f.time_unix_nano <= ? "
                    "AND p.time_unix_nano < ? ORDER BY f.prediction_id LIMIT ?",
                    (model_id, oldest, until_unix_nano, oldest, max(0, limit - examined)),
                )
            ]

        older = self._run(named_by_feedback, write=False) if examined < limit else []
        for begin in range(0, len(older), chunk):
            ids = older[begin : begin + chunk]

            def named(tx: Transaction, ids: list[str] = ids) -> tuple[int, int]:
                rows = tx.query(
                    f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE model_id = ? "
                    f"AND prediction_id IN ({_marks(len(ids))})",
                    (model_id, *ids),
                )
                return len(rows), flag(tx, rows)

            n, f = self._run(named, write=True)
            examined += n
            flagged += f
        return Backfill(oldest, until_unix_nano, examined, flagged, complete)

    def get_policy(self, model_id: str) -> tuple[PolicyRecord, FlaggingPolicy] | None:
        """The stored policy and the effective one (with the learned size ranges)."""

        def work(tx: Transaction) -> tuple[PolicyRecord, FlaggingPolicy] | None:
            rows = tx.query(
                "SELECT config, target_dataset_id, updated_unix_nano FROM data_engine_configs WHERE model_id = ?",
                (model_id,),
            )
            if not rows:
                return None
            config, dataset_id, updated = rows[0]
            record = PolicyRecord(model_id, json.loads(config), dataset_id, int(updated))
            return record, _effective(tx, model_id, config)

        return cast("tuple[PolicyRecord, FlaggingPolicy] | None", self._run(work, write=False))

    # ------------------------------------------------------------ review queue

    def dataset_exists(self, dataset_id: str) -> bool:
        return bool(self._run(lambda tx: tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)), write=False))

    def list_items(
        self, dataset_id: str, *, status: str | None, limit: int, cursor: tuple[int, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the dataset's items (oldest first) and the cursor of the next page (``None`` at the end)."""

        def work(tx: Transaction) -> tuple[list[dict[str, Any]], str | None]:
            sql = f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE dataset_id = ?"
            params: list[Any] = [dataset_id]
            if status is not None:
                sql += " AND status = ?"
                params.append(status)
            if cursor is not None:
                # A row-value comparison: both databases read it as one range of the queue index.
                sql += " AND (created_unix_nano, id) > (?, ?)"
                params += [cursor[0], cursor[1]]
            sql += " ORDER BY created_unix_nano, id LIMIT ?"
            params.append(limit + 1)
            rows = tx.query(sql, params)
            more = len(rows) > limit
            rows = rows[:limit]
            items = self._items_with_feedback(tx, rows)
            next_cursor = _encode_cursor(int(rows[-1][17]), rows[-1][0]) if more and rows else None
            return items, next_cursor

        return cast("tuple[list[dict[str, Any]], str | None]", self._run(work, write=False))

    def get_item(self, dataset_id: str, item_id: str) -> dict[str, Any] | None:
        def work(tx: Transaction) -> dict[str, Any] | None:
            rows = tx.query(
                f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE dataset_id = ? AND id = ?", (dataset_id, item_id)
            )
            return self._items_with_feedback(tx, rows)[0] if rows else None

        return cast("dict[str, Any] | None", self._run(work, write=False))

    def _items_with_feedback(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        ids = sorted({r[2] for r in rows})
        feedback: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for f in tx.query(
                "SELECT id, prediction_id, type, detection_index, corrected_class, corrected_box, reviewer, comment, "
                f"time_unix_nano FROM feedback WHERE prediction_id IN ({_marks(len(chunk))}) "
                "ORDER BY time_unix_nano, id",
                chunk,
            ):
                feedback.setdefault(f[1], []).append(
                    {
                        "id": f[0],
                        "type": f[2],
                        "detection_index": f[3],
                        "corrected_class": f[4],
                        "corrected_box": json.loads(f[5]) if f[5] else None,
                        "reviewer": f[6],
                        "comment": f[7],
                        "time_unix_nano": int(f[8]),
                    }
                )
        return [_item_json(r, feedback.get(r[2], [])) for r in rows]

    def claim_items(self, dataset_id: str, *, reviewer: str, limit: int, lease_s: float) -> list[dict[str, Any]]:
        """Move up to ``limit`` of the oldest ``needs_review`` items to ``in_review`` for ``reviewer``."""
        now = time.time_ns()
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""

        def work(tx: Transaction) -> list[dict[str, Any]]:
            # Claims past their lease go back to the queue first (a reviewer who left).
            tx.execute(
                "UPDATE flagged_items SET status = 'needs_review', assignee = NULL, claimed_unix_nano = NULL "
                "WHERE dataset_id = ? AND status = 'in_review' AND claimed_unix_nano < ?",
                (dataset_id, now - int(lease_s * 1e9)),
            )
            picked = [
                r[0]
                for r in tx.query(
                    "SELECT id FROM flagged_items WHERE dataset_id = ? AND status = 'needs_review' "
                    f"ORDER BY created_unix_nano, id LIMIT ?{skip_locked}",
                    (dataset_id, limit),
                )
            ]
            if not picked:
                return []
            marks = _marks(len(picked))
            tx.execute(
                "UPDATE flagged_items SET status = 'in_review', assignee = ?, claimed_unix_nano = ?, "
                f"updated_unix_nano = ? WHERE status = 'needs_review' AND id IN ({marks})",
                (reviewer, now, now, *picked),
            )
            rows = tx.query(
                f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE id IN ({marks}) AND assignee = ? "
                "AND claimed_unix_nano = ? ORDER BY created_unix_nano, id",
                (*picked, reviewer, now),
            )
            return self._items_with_feedback(tx, rows)

        return cast("list[dict[str, Any]]", self._run(work, write=True))

    def review_item(
        self,
        dataset_id: str,
        item_id: str,
        *,
        outcome: Literal["labeled", "rejected"],
        annotations: Sequence[Mapping[str, Any]] | None,
        reviewer: str | None,
    ) -> dict[str, Any] | None:
        """Label or reject an item; ``None`` if unknown; :class:`ConflictError` if its state forbids it."""
        now = time.time_ns()

        def work(tx: Transaction) -> dict[str, Any] | None:
            lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
            rows = tx.query(
                f"SELECT status, assignee FROM flagged_items WHERE dataset_id = ? AND id = ?{lock}",
                (dataset_id, item_id),
            )
            if not rows:
                return None
            status, assignee = rows[0]
            if status == "rejected" or (status == "labeled" and outcome == "rejected"):
                raise ConflictError(f"the item is {status} already", "status")
            if status == "in_review" and reviewer is not None and assignee not in (None, reviewer):
                raise ConflictError(f"the item is in review by {assignee!r}", "reviewer")
            # Canonical (sorted, as snapshots hold it): a version's copy compares equal as text.
            label = (
                _dumps(_entry(None, None, None, None, list(annotations))["annotations"])
                if annotations is not None
                else None
            )
            tx.execute(
                "UPDATE flagged_items SET status = ?, label = ?, reviewer = ?, updated_unix_nano = ? WHERE id = ?",
                (outcome, label, reviewer or assignee, now, item_id),
            )
            found = tx.query(f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE id = ?", (item_id,))
            return self._items_with_feedback(tx, found)[0]

        return cast("dict[str, Any] | None", self._run(work, write=True))

    def expire_reviewed(self, before_unix_nano: int, *, chunk: int = 5000) -> int:
        """Delete reviewed items last changed before the cutoff whose review lives on elsewhere.

        Rejected items go; labelled ones go once a dataset version holds them with the
        same label (the snapshot keeps the content, so versions built on it lose
        nothing). Items waiting for review are never expired: the queue holds them
        until reviewed. Chunked, so that the write lock is never held long.
        """
        # The outer DELETE repeats the condition: on PostgreSQL a row that a review or a feedback
        # post changes while the DELETE waits for it is re-checked against the outer WHERE only
        # (not the sub-select that chose it), and a changed row is newer than the cutoff.
        condition = _expirable("f")
        delete = (
            f"DELETE FROM flagged_items WHERE id IN (SELECT f.id FROM flagged_items f WHERE {condition} LIMIT ?) "
            f"AND {_expirable('flagged_items')}"
        )
        total = 0
        while True:
            deleted = int(
                self._run(
                    lambda tx: tx.execute(delete, (before_unix_nano, chunk, before_unix_nano)),
                    write=True,
                )
            )
            total += deleted
            if deleted < chunk:
                return total

    # ------------------------------------------------------------ dataset versions

    def create_version(self, dataset_id: str, name: str, parent_version_id: str | None) -> dict[str, Any]:
        """An immutable snapshot: the parent's items plus every labelled item (latest label wins)."""
        version_id = uuid.uuid4().hex

        def work(tx: Transaction) -> dict[str, Any]:
            if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)):
                raise LookupError(dataset_id)
            parent_items = _snapshot_items(tx, parent_version_id) if parent_version_id else {}
            items = dict(parent_items)
            for r in tx.query(
                "SELECT prediction_id, image_key, image_uri, image_width, image_height, label FROM flagged_items "
                "WHERE dataset_id = ? AND status = 'labeled' ORDER BY prediction_id",
                (dataset_id,),
            ):
                items[r[0]] = _entry(r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else [])
            content_hash = content_hash_of(items)
            counts = class_counts(items)
            diff = _diff(parent_items, items)
            latest = tx.query("SELECT MAX(created_unix_nano) FROM dataset_versions WHERE dataset_id = ?", (dataset_id,))
            created = max(time.time_ns(), int(latest[0][0] or 0) + 1)
            tx.execute(
                "INSERT INTO dataset_versions (id, dataset_id, name, parent_version_id, created_unix_nano) "
                "VALUES (?, ?, ?, ?, ?)",
                (version_id, dataset_id, name, parent_version_id, created),
            )
            tx.execute(
                "INSERT INTO dataset_version_contents (version_id, content_hash, item_count, class_counts, diff) "
                "VALUES (?, ?, ?, ?, ?)",
                (version_id, content_hash, len(items), _dumps(counts), _dumps(diff)),
            )
            tx.executemany(
                "INSERT INTO dataset_version_items (version_id, item_id, prediction_id, image_key, image_uri, "
                "image_width, image_height, annotations) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (version_id, pid, pid, e["image"]["key"], e["image"]["uri"], e["image"]["width"],
                     e["image"]["height"], _dumps(e["annotations"]))
                    for pid, e in sorted(items.items())
                ],
            )  # fmt: skip
            return _version_json(
                (version_id, dataset_id, name, parent_version_id, created, content_hash, len(items), counts, diff)
            )

        return cast("dict[str, Any]", self._run(work, write=True))

    def get_version(self, dataset_id: str, version_id: str) -> dict[str, Any] | None:
        def work(tx: Transaction) -> dict[str, Any] | None:
            rows = tx.query(
                "SELECT v.id, v.dataset_id, v.name, v.parent_version_id, v.created_unix_nano, c.content_hash, "
                "c.item_count, c.class_counts, c.diff FROM dataset_versions v "
                "LEFT JOIN dataset_version_contents c ON c.version_id = v.id WHERE v.dataset_id = ? AND v.id = ?",
                (dataset_id, version_id),
            )
            if not rows:
                return None
            r = rows[0]
            if r[5] is None:  # a version made before the data engine (a dataset's first, empty one)
                return _version_json((*r[:5], content_hash_of({}), 0, {}, _diff({}, {})))
            return _version_json((*r[:5], r[5], int(r[6]), json.loads(r[7]), json.loads(r[8])))

        return cast("dict[str, Any] | None", self._run(work, write=False))

    def version_items(self, version_id: str) -> dict[str, dict[str, Any]]:
        """The snapshot's items by prediction id (``{"image": {...}, "annotations": [...]}``)."""
        return cast("dict[str, dict[str, Any]]", self._run(lambda tx: _snapshot_items(tx, version_id), write=False))

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
    ) -> dict[str, Any]:
        """Record a job (``queued``, due for hand-off now); ``LookupError`` naming the unknown field.

        ``callback_base`` is the configured public URL (``None``: none yet); the hand-off
        builds its URLs from the configuration of its own time.
        """
        now = time.time_ns()
        job_id = uuid.uuid4().hex
        callback_url = f"{callback_base}/v1/training-jobs/{job_id}/status" if callback_base else None

        def work(tx: Transaction) -> dict[str, Any]:
            if not tx.query("SELECT 1 FROM dataset_versions WHERE id = ? AND dataset_id = ?", (version_id, dataset_id)):
                field = (
                    "dataset_id" if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)) else "version_id"
                )
                raise LookupError(field)
            history = [{"status": "queued", "time_unix_nano": now, "message": "recorded"}]
            tx.execute(
                "INSERT INTO training_jobs (id, name, dataset_id, version_id, base_model_id, options, status, "
                "callback_url, callback_token, attempts, next_attempt_unix_nano, dispatched_unix_nano, last_error, "
                "model_version, history, created_unix_nano, updated_unix_nano) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, 0, ?, NULL, NULL, NULL, ?, ?, ?)",
                (job_id, name, dataset_id, version_id, base_model_id, _dumps(dict(options)), callback_url,
                 secrets.token_urlsafe(24), now, _dumps(history), now, now),
            )  # fmt: skip
            return self._job(tx, job_id, secret=True) or {}

        return cast("dict[str, Any]", self._run(work, write=True))

    def get_job(self, job_id: str, *, secret: bool = False) -> dict[str, Any] | None:
        return cast("dict[str, Any] | None", self._run(lambda tx: self._job(tx, job_id, secret=secret), write=False))

    def _job(self, tx: Transaction, job_id: str, *, secret: bool = False) -> dict[str, Any] | None:
        rows = tx.query(f"SELECT {_JOB_COLUMNS} FROM training_jobs WHERE id = ?", (job_id,))
        return _job_json(rows[0], secret=secret) if rows else None

    def take_due_job(self, *, lease_s: float) -> dict[str, Any] | None:
        """Lease the next job due for hand-off (its ``next_attempt`` moves ``lease_s`` ahead), or ``None``.

        A dispatcher that dies holding a lease loses nothing: the job is due again when
        the lease ends. Two dispatchers never hold the same job.
        """
        now = time.time_ns()
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""

        def work(tx: Transaction) -> dict[str, Any] | None:
            rows = tx.query(
                "SELECT id FROM training_jobs WHERE next_attempt_unix_nano IS NOT NULL AND next_attempt_unix_nano <= ? "
                f"ORDER BY next_attempt_unix_nano, id LIMIT 1{skip_locked}",
                (now,),
            )
            if not rows:
                return None
            tx.execute(
                "UPDATE training_jobs SET next_attempt_unix_nano = ?, attempts = attempts + 1 WHERE id = ?",
                (now + int(lease_s * 1e9), rows[0][0]),
            )
            return self._job(tx, rows[0][0], secret=True)

        return cast("dict[str, Any] | None", self._run(work, write=True))

    def next_due_in(self) -> float | None:
        """Seconds until the next job is due (0 when one is due now), ``None`` when none waits."""
        rows = self._run(
            lambda tx: tx.query(
                "SELECT MIN(next_attempt_unix_nano) FROM training_jobs WHERE next_attempt_unix_nano IS NOT NULL"
            ),
            write=False,
        )
        if not rows or rows[0][0] is None:
            return None
        return max(0.0, (int(rows[0][0]) - time.time_ns()) / 1e9)

    def record_dispatch(self, job_id: str, *, error: str | None, retry_in_s: float | None) -> None:
        """After a hand-off attempt: done (``error`` None), retry later, or give up (``retry_in_s`` None)."""
        now = time.time_ns()
        # Locked, as the status callback locks it: the trainer may report "running" while
        # this runs, and a history read before that commit and written back after it
        # would drop the trainer's entry (READ COMMITTED; SQLite serialises writers anyway).
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""

        def work(tx: Transaction) -> None:
            rows = tx.query(f"SELECT status, history FROM training_jobs WHERE id = ?{lock}", (job_id,))
            if not rows:
                return
            status, history_text = rows[0]
            history = json.loads(history_text)
            if status in ("succeeded", "failed"):  # the trainer reported before the hand-off returned
                tx.execute("UPDATE training_jobs SET next_attempt_unix_nano = NULL WHERE id = ?", (job_id,))
                return
            if error is None:
                if status == "queued":  # not yet "running": say where the job is
                    history.append({"status": status, "time_unix_nano": now, "message": "handed to the trainer"})
                tx.execute(
                    "UPDATE training_jobs SET next_attempt_unix_nano = NULL, dispatched_unix_nano = ?, "
                    "last_error = NULL, history = ?, updated_unix_nano = ? WHERE id = ?",
                    (now, _dumps(history), now, job_id),
                )
            elif retry_in_s is not None:
                history.append({"status": status, "time_unix_nano": now, "message": f"hand-off failed: {error}"})
                tx.execute(
                    "UPDATE training_jobs SET next_attempt_unix_nano = ?, last_error = ?, history = ?, "
                    "updated_unix_nano = ? WHERE id = ?",
                    (now + int(retry_in_s * 1e9), error, _dumps(history), now, job_id),
                )
            else:
                history.append({"status": "failed", "time_unix_nano": now, "message": f"gave up: {error}"})
                tx.execute(
                    "UPDATE training_jobs SET status = 'failed', next_attempt_unix_nano = NULL, last_error = ?, "
                    "history = ?, updated_unix_nano = ? WHERE id = ? AND status IN ('queued', 'running')",
                    (error, _dumps(history), now, job_id),
                )

        self._run(work, write=True)

    def update_job_status(
        self, job_id: str, *, status: str, model_version: str | None, message: str | None, metrics: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A trainer's status callback; a ``succeeded`` job registers ``model_version`` of its base model."""
        now = time.time_ns()

        def work(tx: Transaction) -> dict[str, Any] | None:
            lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
            rows = tx.query(f"SELECT status, history, base_model_id FROM training_jobs WHERE id = ?{lock}", (job_id,))
            if not rows:
                return None
            current, history_text, base_model_id = rows[0]
            if status == current:
                return self._job(tx, job_id)  # a repeated callback: nothing changes
            if status not in _JOB_NEXT[current]:
                raise ConflictError(f"a {current} job cannot become {status}", "status")
            version = model_version
            if status == "succeeded":
                version = version or f"job-{job_id[:8]}"
                if base_model_id:
                    _register_version(tx, base_model_id, version, now)
            history = json.loads(history_text)
            entry: dict[str, Any] = {"status": status, "time_unix_nano": now, "message": message or ""}
            if metrics:
                entry["metrics"] = dict(metrics)
            history.append(entry)
            tx.execute(
                "UPDATE training_jobs SET status = ?, model_version = COALESCE(?, model_version), history = ?, "
                "next_attempt_unix_nano = NULL, updated_unix_nano = ? WHERE id = ?",
                (status, version if status == "succeeded" else None, _dumps(history), now, job_id),
            )
            return self._job(tx, job_id)

        return cast("dict[str, Any] | None", self._run(work, write=True))


def _expirable(item: str) -> str:
    """SQL: flagged item ``item`` (a table or alias) was last changed before ``?`` and its review lives on elsewhere."""
    return (
        f"{item}.updated_unix_nano < ? AND ({item}.status = 'rejected' OR ({item}.status = 'labeled' AND "
        "EXISTS (SELECT 1 FROM dataset_version_items i JOIN dataset_versions v ON v.id = i.version_id "
        f"WHERE v.dataset_id = {item}.dataset_id AND i.item_id = {item}.prediction_id AND i.annotations = "
        f"{item}.label)))"
    )


def _register_version(tx: Transaction, model_id: str, version: str, now: int) -> None:
    tx.execute(
        "INSERT INTO models (model_id, metadata, first_seen_unix_nano, last_seen_unix_nano) VALUES (?, '{}', ?, ?) "
        "ON CONFLICT (model_id) DO NOTHING",
        (model_id, now, now),
    )
    tx.execute(
        "INSERT INTO model_versions (model_id, version, first_seen_unix_nano, last_seen_unix_nano) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (model_id, version) DO NOTHING",
        (model_id, version, now, now),
    )


_JOB_COLUMNS: Final = (
    "id, name, dataset_id, version_id, base_model_id, options, status, callback_url, callback_token, attempts, "
    "next_attempt_unix_nano, dispatched_unix_nano, last_error, model_version, history, created_unix_nano, "
    "updated_unix_nano"
)


def _job_json(r: Sequence[Any], *, secret: bool) -> dict[str, Any]:
    out = {
        "id": r[0],
        "name": r[1],
        "dataset_id": r[2],
        "version_id": r[3],
        "base_model_id": r[4],
        "options": json.loads(r[5]),
        "status": r[6],
        "attempts": int(r[9]),
        "handed_off": r[11] is not None,
        "last_error": r[12],
        "model_version": r[13],
        "history": json.loads(r[14]),
        "created_unix_nano": int(r[15]),
        "updated_unix_nano": int(r[16]),
    }
    if secret:  # only for the dispatcher: what the trainer needs to call back
        out["callback_url"] = r[7]
        out["callback_token"] = r[8]
    return out


def _entry(key: Any, uri: Any, width: Any, height: Any, annotations: list[Any]) -> dict[str, Any]:
    return {
        "image": {
            "key": key,
            "uri": uri,
            "width": None if width is None else int(width),
            "height": None if height is None else int(height),
        },
        "annotations": sorted(
            ({"class": str(a["class"]), "box": _box(a["box"])} for a in annotations),
            key=lambda a: (a["class"], a["box"]),
        ),
    }


def _snapshot_items(tx: Transaction, version_id: str) -> dict[str, dict[str, Any]]:
    return {
        r[0]: _entry(r[1], r[2], r[3], r[4], json.loads(r[5]))
        for r in tx.query(
            "SELECT item_id, image_key, image_uri, image_width, image_height, annotations FROM dataset_version_items "
            "WHERE version_id = ? ORDER BY item_id",
            (version_id,),
        )
    }


def content_hash_of(items: Mapping[str, Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of ``{prediction_id: {"image", "annotations"}}`` (sorted keys, no spaces)."""
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def class_counts(items: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in items.values():
        for a in entry["annotations"]:
            counts[a["class"]] = counts.get(a["class"], 0) + 1
    return dict(sorted(counts.items()))


def _diff(parent: Mapping[str, Mapping[str, Any]], items: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    added = sorted(set(items) - set(parent))
    removed = sorted(set(parent) - set(items))
    changed = sorted(k for k in set(items) & set(parent) if items[k] != parent[k])
    before, after = class_counts(parent), class_counts(items)
    delta = {c: after.get(c, 0) - before.get(c, 0) for c in sorted(set(before) | set(after))}
    return {
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "class_counts": {c: d for c, d in delta.items() if d},
        "added_items": added[:1000],
        "changed_items": changed[:1000],
    }


def _version_json(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "dataset_id": r[1],
        "name": r[2],
        "parent_version_id": r[3],
        "created_unix_nano": int(r[4]),
        "content_hash": r[5],
        "item_count": r[6],
        "class_counts": r[7],
        "diff": r[8],
    }


def _item_json(r: Sequence[Any], feedback: list[dict[str, Any]]) -> dict[str, Any]:
    detections = json.loads(r[7])
    return {
        "id": r[0],
        "dataset_id": r[1],
        "prediction_id": r[2],
        "model_id": r[3],
        "model_version": r[4],
        "time_unix_nano": int(r[5]),
        "reasons": json.loads(r[6]),
        "detections": detections,
        "image": {"key": r[8], "uri": r[9], "width": r[10], "height": r[11]},
        "status": r[12],
        "assignee": r[13],
        "claimed_unix_nano": None if r[14] is None else int(r[14]),
        "label": None if r[15] is None else json.loads(r[15]),
        "reviewer": r[16],
        "feedback": feedback,
        "suggested_label": suggested_label(detections, feedback),
        "created_unix_nano": int(r[17]),
        "updated_unix_nano": int(r[18]),
    }
