"""SQL of the data engine's review queue: flagging policies, flagged items, claims, reviews, expiry.

What gets flagged is decided above storage (:mod:`detwatch.review`); this module
stores and reads what that policy decides, on the transactions of the storage.
:class:`SQLFlagWriter` (a :class:`~detwatch.storage.protocols.FlagWriter`) is what an
ingest hook writes through, inside the ingest or feedback transaction, so a flag is
stored exactly when the event that caused it is.

Decisions the code cannot show:

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
- **Reasons merged under a lock.** Two feedback posts on one prediction may run at
  once (PostgreSQL, READ COMMITTED): the insert that loses the race on
  ``(dataset_id, prediction_id)`` inserts nothing, and the caller then merges its
  reason into the winner's row, read locked, so that no reason is lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from detwatch.contract.predictions import ImageRef, Prediction
from detwatch.storage._rows import _PREDICTION_COLUMNS, _prediction_from_row
from detwatch.storage._schema import Dialect
from detwatch.storage._snapshots import canonical_annotations
from detwatch.storage.records import (
    ConflictError,
    FlaggedItemRecord,
    FlagPage,
    ItemFeedback,
    ItemPage,
    NewFlag,
    PolicyRecord,
    ReviewProgress,
)

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction
    from detwatch.storage.protocols import FlagFunction

CHUNK: Final = 500


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _lock(dialect: Dialect) -> str:
    return " FOR UPDATE" if dialect == "postgresql" else ""


# ---------------------------------------------------------------- policies


def set_policy(tx: Transaction, model_id: str, config: Mapping[str, Any], target_dataset_id: str, now: int) -> None:
    """Store the model's policy; ``LookupError`` when the dataset does not exist."""
    if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (target_dataset_id,)):
        raise LookupError(target_dataset_id)
    tx.execute(
        "INSERT INTO data_engine_configs (model_id, config, target_dataset_id, updated_unix_nano) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (model_id) DO UPDATE SET config = excluded.config, "
        "target_dataset_id = excluded.target_dataset_id, updated_unix_nano = excluded.updated_unix_nano",
        (model_id, _dumps(dict(config)), target_dataset_id, now),
    )


def policies(tx: Transaction, model_ids: Sequence[str]) -> dict[str, PolicyRecord]:
    """The stored policies of those of ``model_ids`` that have one (a query per chunk of ids)."""
    found: dict[str, PolicyRecord] = {}
    models = sorted(set(model_ids))
    for start in range(0, len(models), CHUNK):
        chunk = models[start : start + CHUNK]
        for model_id, config, dataset_id, updated in tx.query(
            "SELECT model_id, config, target_dataset_id, updated_unix_nano FROM data_engine_configs "
            f"WHERE model_id IN ({_marks(len(chunk))})",
            chunk,
        ):
            found[model_id] = PolicyRecord(model_id, json.loads(config), dataset_id, int(updated))
    return found


def box_area_counts(tx: Transaction, model_id: str, since_hour_unix: int) -> list[tuple[str, int]]:
    """``(key, count)`` of the model's ``box_area`` cells since an hour, summed over the hours."""
    return [
        (str(key), int(count))
        for key, count in tx.query(
            "SELECT key, SUM(count) FROM aggregates WHERE model_id = ? AND kind = 'box_area' AND hour_unix >= ? "
            "GROUP BY key",
            (model_id, since_hour_unix),
        )
    ]


# ---------------------------------------------------------------- flag writes (inside ingest/feedback)


_ITEM_COLUMNS: Final = (
    "id, dataset_id, prediction_id, model_id, model_version, time_unix_nano, reasons, detections, image_key, "
    "image_uri, image_width, image_height, status, assignee, claimed_unix_nano, label, reviewer, created_unix_nano, "
    "updated_unix_nano, inclusion_probability, ab_variant"
)
_INSERT_ITEM: Final = (
    f"INSERT INTO flagged_items ({_ITEM_COLUMNS}) VALUES ({_marks(21)}) "
    "ON CONFLICT (dataset_id, prediction_id) DO NOTHING"
)


def _detections_json(p: Prediction) -> str:
    # orjson, as the storage encodes the same detections: this runs for every flagged event.
    return orjson.dumps(
        [{"class": d.class_name, "confidence": d.confidence, "box": d.box} for d in p.detections]
    ).decode()


def _item_row(flag: NewFlag) -> tuple[Any, ...]:
    p = flag.prediction
    now = flag.created_unix_nano
    return (
        uuid.uuid4().hex,
        flag.dataset_id,
        p.prediction_id,
        p.model_id,
        p.model_version,
        p.time_unix_nano,
        orjson.dumps(list(flag.reasons)).decode(),
        _detections_json(p),
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
        flag.inclusion_probability,
        p.ab_variant,
    )


class SQLFlagWriter:
    """What an ingest hook reads and writes inside the storage's transaction (no SQL above storage)."""

    def __init__(self, tx: Transaction, dialect: Dialect) -> None:
        self._tx = tx
        self._dialect = dialect

    def policies(self, model_ids: Sequence[str]) -> dict[str, PolicyRecord]:
        return policies(self._tx, model_ids)

    def box_area_counts(self, model_id: str, since_hour_unix: int) -> list[tuple[str, int]]:
        return box_area_counts(self._tx, model_id, since_hour_unix)

    def objections(self, prediction_ids: Sequence[str]) -> dict[str, set[str]]:
        """The feedback types other than ``correct`` stored for each of ``prediction_ids`` (those with any)."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(prediction_ids), CHUNK):
            chunk = prediction_ids[start : start + CHUNK]
            for prediction_id, kind in self._tx.query(
                "SELECT prediction_id, type FROM feedback "
                f"WHERE type <> 'correct' AND prediction_id IN ({_marks(len(chunk))})",
                chunk,
            ):
                found.setdefault(prediction_id, set()).add(kind)
        return found

    def insert_flags(self, flags: Sequence[NewFlag]) -> None:
        """Add items to the review queue; one already there for its dataset and prediction stays unchanged."""
        rows = sorted((_item_row(f) for f in flags), key=lambda r: (r[1], r[2]))  # lock order: (dataset, prediction)
        self._tx.executemany(_INSERT_ITEM, rows)

    def insert_flag(self, flag: NewFlag) -> bool:
        """Add one item; ``False`` when the prediction has one in the dataset already (a concurrent post's)."""
        return bool(self._tx.execute(_INSERT_ITEM, _item_row(flag)))

    def add_reason(self, dataset_id: str, prediction_id: str, reason: str, now: int) -> bool | None:
        """Add ``reason`` to the item of ``prediction_id`` (read locked): ``None`` without one, else whether added."""
        existing = self._tx.query(
            f"SELECT id, reasons FROM flagged_items WHERE dataset_id = ? AND prediction_id = ?{_lock(self._dialect)}",
            (dataset_id, prediction_id),
        )
        if not existing:
            return None
        reasons = json.loads(existing[0][1])
        if reason in reasons:
            return False
        self._tx.execute(
            "UPDATE flagged_items SET reasons = ?, updated_unix_nano = ? WHERE id = ?",
            (_dumps([*reasons, reason]), now, existing[0][0]),
        )
        return True

    def prediction(self, prediction_id: str) -> Prediction | None:
        rows = self._tx.query(
            f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE prediction_id = ?", (prediction_id,)
        )
        return _prediction_from_row(rows[0]) if rows else None


# ---------------------------------------------------------------- backfill pages


def _flag_unflagged(
    tx: Transaction, writer: SQLFlagWriter, model_id: str, rows: Sequence[tuple[Any, ...]], flag: FlagFunction
) -> int:
    config = tx.query("SELECT target_dataset_id FROM data_engine_configs WHERE model_id = ?", (model_id,))
    if not config or not rows:
        return 0
    ids = [r[0] for r in rows]
    present = {
        r[0]
        for r in tx.query(
            f"SELECT prediction_id FROM flagged_items WHERE dataset_id = ? AND prediction_id IN ({_marks(len(ids))})",
            (config[0][0], *ids),
        )
    }
    return flag(writer, [_prediction_from_row(r) for r in rows if r[0] not in present])


def flag_page(
    tx: Transaction,
    writer: SQLFlagWriter,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    before: tuple[int, str] | None,
    limit: int,
    flag: FlagFunction,
) -> FlagPage:
    """Evaluate one page (newest first) of the model's predictions in the window not yet in its review queue."""
    sql = f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE model_id = ? AND time_unix_nano >= ? "
    params: list[Any] = [model_id, since_unix_nano]
    if before is None:
        sql += "AND time_unix_nano <= ? "
        params.append(until_unix_nano)
    else:
        sql += "AND (time_unix_nano, prediction_id) < (?, ?) "
        params += [before[0], before[1]]
    rows = tx.query(sql + "ORDER BY time_unix_nano DESC, prediction_id DESC LIMIT ?", [*params, limit])
    last = (int(rows[-1][4]), str(rows[-1][0])) if rows else (0, "")
    return FlagPage(len(rows), _flag_unflagged(tx, writer, model_id, rows, flag), last)


def named_by_feedback(
    tx: Transaction, model_id: str, *, since_unix_nano: int, until_unix_nano: int, older_than: int, limit: int
) -> list[str]:
    """Predictions older than ``older_than`` named by feedback other than ``correct`` given in ``[since, until]``."""
    return [
        str(r[0])
        for r in tx.query(
            "SELECT DISTINCT f.prediction_id FROM feedback f "
            "JOIN predictions p ON p.prediction_id = f.prediction_id "
            "WHERE f.model_id = ? AND f.type <> 'correct' AND f.time_unix_nano >= ? AND f.time_unix_nano <= ? "
            "AND p.time_unix_nano < ? ORDER BY f.prediction_id LIMIT ?",
            (model_id, since_unix_nano, until_unix_nano, older_than, max(0, limit)),
        )
    ]


def flag_named(
    tx: Transaction, writer: SQLFlagWriter, model_id: str, prediction_ids: Sequence[str], flag: FlagFunction
) -> FlagPage:
    rows = tx.query(
        f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE model_id = ? "
        f"AND prediction_id IN ({_marks(len(prediction_ids))})",
        (model_id, *prediction_ids),
    )
    return FlagPage(len(rows), _flag_unflagged(tx, writer, model_id, rows, flag), (0, ""))


# ---------------------------------------------------------------- the review queue


def dataset_exists(tx: Transaction, dataset_id: str) -> bool:
    return bool(tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)))


def _items(tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> list[FlaggedItemRecord]:
    """Item records of ``rows``, each with the feedback on its prediction."""
    ids = sorted({r[2] for r in rows})
    feedback: dict[str, list[ItemFeedback]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        for f in tx.query(
            "SELECT id, prediction_id, type, detection_index, corrected_class, corrected_box, reviewer, comment, "
            f"time_unix_nano FROM feedback WHERE prediction_id IN ({_marks(len(chunk))}) "
            "ORDER BY time_unix_nano, id",
            chunk,
        ):
            feedback.setdefault(f[1], []).append(
                ItemFeedback(
                    id=f[0],
                    type=f[2],
                    detection_index=f[3],
                    corrected_class=f[4],
                    corrected_box=json.loads(f[5]) if f[5] else None,
                    reviewer=f[6],
                    comment=f[7],
                    time_unix_nano=int(f[8]),
                )
            )
    return [_item(r, tuple(feedback.get(r[2], ()))) for r in rows]


def _item(r: Sequence[Any], feedback: tuple[ItemFeedback, ...]) -> FlaggedItemRecord:
    return FlaggedItemRecord(
        id=r[0],
        dataset_id=r[1],
        prediction_id=r[2],
        model_id=r[3],
        model_version=r[4],
        time_unix_nano=int(r[5]),
        reasons=json.loads(r[6]),
        detections=json.loads(r[7]),
        image=ImageRef(key=r[8], uri=r[9], width=r[10], height=r[11]),
        status=r[12],
        assignee=r[13],
        claimed_unix_nano=None if r[14] is None else int(r[14]),
        label=None if r[15] is None else json.loads(r[15]),
        reviewer=r[16],
        feedback=feedback,
        created_unix_nano=int(r[17]),
        updated_unix_nano=int(r[18]),
        inclusion_probability=None if r[19] is None else float(r[19]),
        ab_variant=r[20],
    )


def labelled_items(
    tx: Transaction,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None,
    limit: int,
    ab_variant: str | None = None,
) -> list[FlaggedItemRecord]:
    """The model's labelled items whose prediction falls in ``[since, until)``, oldest first, the newest ``limit``.

    ``ab_variant``: only items whose prediction was routed to that arm (kept with the item
    when it was flagged, as raw predictions expire).
    """
    sql = (
        f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE model_id = ? AND status = 'labeled' "
        "AND time_unix_nano >= ? AND time_unix_nano < ?"
    )
    params: list[Any] = [model_id, since_unix_nano, until_unix_nano]
    if model_version is not None:
        sql += " AND model_version = ?"
        params.append(model_version)
    if ab_variant is not None:
        sql += " AND ab_variant = ?"
        params.append(ab_variant)
    rows = tx.query(sql + " ORDER BY time_unix_nano DESC, id DESC LIMIT ?", [*params, limit])
    # No feedback join: quality reads the boxes, not the comments on them.
    return [_item(r, ()) for r in reversed(rows)]


def list_items(
    tx: Transaction, dataset_id: str, *, status: str | None, limit: int, after: tuple[int, str] | None
) -> ItemPage:
    sql = f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE dataset_id = ?"
    params: list[Any] = [dataset_id]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if after is not None:
        # A row-value comparison: both databases read it as one range of the queue index.
        sql += " AND (created_unix_nano, id) > (?, ?)"
        params += [after[0], after[1]]
    sql += " ORDER BY created_unix_nano, id LIMIT ?"
    params.append(limit + 1)
    rows = tx.query(sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    next_key = (int(rows[-1][17]), str(rows[-1][0])) if more and rows else None
    return ItemPage(_items(tx, rows), next_key)


def get_item(tx: Transaction, dataset_id: str, item_id: str) -> FlaggedItemRecord | None:
    rows = tx.query(f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE dataset_id = ? AND id = ?", (dataset_id, item_id))
    return _items(tx, rows)[0] if rows else None


def claim(
    tx: Transaction,
    dialect: Dialect,
    dataset_id: str,
    *,
    reviewer: str,
    limit: int,
    lease_s: float,
    now: int,
    skip: Sequence[str] = (),
) -> list[FlaggedItemRecord]:
    skip_locked = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    not_skipped = f" AND id NOT IN ({_marks(len(skip))})" if skip else ""
    # Claims past their lease go back to the queue first (a reviewer who left).
    tx.execute(
        "UPDATE flagged_items SET status = 'needs_review', assignee = NULL, claimed_unix_nano = NULL "
        "WHERE dataset_id = ? AND status = 'in_review' AND claimed_unix_nano < ?",
        (dataset_id, now - int(lease_s * 1e9)),
    )
    picked = [
        r[0]
        for r in tx.query(
            f"SELECT id FROM flagged_items WHERE dataset_id = ? AND status = 'needs_review'{not_skipped} "
            f"ORDER BY created_unix_nano, id LIMIT ?{skip_locked}",
            (dataset_id, *skip, limit),
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
    return _items(tx, rows)


def claimed_by(tx: Transaction, dataset_id: str, reviewer: str, *, lease_s: float, now: int) -> list[FlaggedItemRecord]:
    """The items ``reviewer`` holds in ``dataset_id`` whose claim has not run out, oldest first."""
    rows = tx.query(
        f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE dataset_id = ? AND status = 'in_review' AND assignee = ? "
        "AND claimed_unix_nano >= ? ORDER BY created_unix_nano, id",
        (dataset_id, reviewer, now - int(lease_s * 1e9)),
    )
    return _items(tx, rows)


def release(tx: Transaction, dataset_id: str, item_id: str, reviewer: str, now: int) -> bool:
    """Give ``reviewer``'s claim on the item back to the queue; whether they held it."""
    changed = tx.execute(
        "UPDATE flagged_items SET status = 'needs_review', assignee = NULL, claimed_unix_nano = NULL, "
        "updated_unix_nano = ? WHERE dataset_id = ? AND id = ? AND status = 'in_review' AND assignee = ?",
        (now, dataset_id, item_id, reviewer),
    )
    return changed > 0


def progress(tx: Transaction, dataset_id: str) -> ReviewProgress:
    """Items per status, and per reviewer (the claim's holder, or who reviewed) per status."""
    rows = tx.query(
        "SELECT status, COALESCE(reviewer, assignee), COUNT(*) FROM flagged_items WHERE dataset_id = ? "
        "GROUP BY status, COALESCE(reviewer, assignee)",
        (dataset_id,),
    )
    by_status = dict.fromkeys(("needs_review", "in_review", "labeled", "rejected"), 0)
    by_reviewer: dict[str, dict[str, int]] = {}
    for status, person, count in rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        if person is not None:
            mine = by_reviewer.setdefault(person, {})
            mine[status] = mine.get(status, 0) + int(count)
    return ReviewProgress(by_status=by_status, by_reviewer=dict(sorted(by_reviewer.items())))


def review(
    tx: Transaction,
    dialect: Dialect,
    dataset_id: str,
    item_id: str,
    *,
    outcome: Literal["labeled", "rejected"],
    annotations: Sequence[Mapping[str, Any]] | None,
    reviewer: str | None,
    now: int,
) -> FlaggedItemRecord | None:
    rows = tx.query(
        f"SELECT status, assignee FROM flagged_items WHERE dataset_id = ? AND id = ?{_lock(dialect)}",
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
    label = _dumps(canonical_annotations(annotations)) if annotations is not None else None
    tx.execute(
        "UPDATE flagged_items SET status = ?, label = ?, reviewer = ?, updated_unix_nano = ? WHERE id = ?",
        (outcome, label, reviewer or assignee, now, item_id),
    )
    found = tx.query(f"SELECT {_ITEM_COLUMNS} FROM flagged_items WHERE id = ?", (item_id,))
    return _items(tx, found)[0]


def _expirable(item: str) -> str:
    """SQL: flagged item ``item`` (a table or alias) was last changed before ``?`` and its review lives on elsewhere."""
    return (
        f"{item}.updated_unix_nano < ? AND ({item}.status = 'rejected' OR ({item}.status = 'labeled' AND "
        "EXISTS (SELECT 1 FROM dataset_version_items i JOIN dataset_versions v ON v.id = i.version_id "
        f"WHERE v.dataset_id = {item}.dataset_id AND i.item_id = {item}.prediction_id AND i.annotations = "
        f"{item}.label)))"
    )


# The outer DELETE repeats the condition: on PostgreSQL a row that a review or a feedback
# post changes while the DELETE waits for it is re-checked against the outer WHERE only
# (not the sub-select that chose it), and a changed row is newer than the cutoff.
_EXPIRE: Final = (
    f"DELETE FROM flagged_items WHERE id IN (SELECT f.id FROM flagged_items f WHERE {_expirable('f')} LIMIT ?) "
    f"AND {_expirable('flagged_items')}"
)


def expire_reviewed_chunk(tx: Transaction, before_unix_nano: int, chunk: int) -> int:
    return tx.execute(_EXPIRE, (before_unix_nano, chunk, before_unix_nano))
