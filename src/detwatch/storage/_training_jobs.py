"""SQL of training jobs: their records, the hand-off lease, and the trainer's status callbacks.

A job is due for hand-off while ``next_attempt_unix_nano`` is set; a dispatcher
leases it by moving that time ahead (:func:`take_due`), so one that dies holding a
lease loses nothing: the job is due again when the lease ends. The dispatcher and the
status callback both read the job's history locked before writing it back, so
neither drops the other's entry (PostgreSQL's READ COMMITTED; SQLite serialises
writers anyway).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from detwatch.contract.shapes.review import FINISHED_JOB_STATUSES
from detwatch.storage._schema import Dialect
from detwatch.storage.records import ConflictError, TrainingJobRecord

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction

_JOB_NEXT: Final[dict[str, tuple[str, ...]]] = {
    "queued": ("running", "succeeded", "failed", "gated"),
    "running": ("succeeded", "failed", "gated"),
    "succeeded": (),
    "failed": (),
    "gated": (),
}
_COLUMNS: Final = (
    "id, name, dataset_id, version_id, base_model_id, options, status, callback_url, callback_token, attempts, "
    "next_attempt_unix_nano, dispatched_unix_nano, last_error, model_version, history, created_unix_nano, "
    "updated_unix_nano, gate, gate_result"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _lock(dialect: Dialect) -> str:
    return " FOR UPDATE" if dialect == "postgresql" else ""


def _record(r: Sequence[Any]) -> TrainingJobRecord:
    return TrainingJobRecord(
        id=r[0],
        name=r[1],
        dataset_id=r[2],
        version_id=r[3],
        base_model_id=r[4],
        options=json.loads(r[5]),
        status=r[6],
        callback_url=r[7],
        callback_token=r[8],
        attempts=int(r[9]),
        handed_off=r[11] is not None,
        last_error=r[12],
        model_version=r[13],
        history=json.loads(r[14]),
        created_unix_nano=int(r[15]),
        updated_unix_nano=int(r[16]),
        gate=None if r[17] is None else json.loads(r[17]),
        gate_result=None if r[18] is None else json.loads(r[18]),
    )


def get(tx: Transaction, job_id: str) -> TrainingJobRecord | None:
    rows = tx.query(f"SELECT {_COLUMNS} FROM training_jobs WHERE id = ?", (job_id,))
    return _record(rows[0]) if rows else None


def insert(
    tx: Transaction,
    *,
    job_id: str,
    name: str,
    dataset_id: str,
    version_id: str,
    base_model_id: str | None,
    options: Mapping[str, Any],
    callback_url: str | None,
    now: int,
    gate: Mapping[str, Any] | None = None,
) -> TrainingJobRecord:
    """Record a job (``queued``, due for hand-off now); ``LookupError`` naming the unknown field."""
    if not tx.query("SELECT 1 FROM dataset_versions WHERE id = ? AND dataset_id = ?", (version_id, dataset_id)):
        field = "dataset_id" if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)) else "version_id"
        raise LookupError(field)
    history = [{"status": "queued", "time_unix_nano": now, "message": "recorded"}]
    tx.execute(
        "INSERT INTO training_jobs (id, name, dataset_id, version_id, base_model_id, options, status, "
        "callback_url, callback_token, attempts, next_attempt_unix_nano, dispatched_unix_nano, last_error, "
        "model_version, history, created_unix_nano, updated_unix_nano, gate) "
        "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, 0, ?, NULL, NULL, NULL, ?, ?, ?, ?)",
        (job_id, name, dataset_id, version_id, base_model_id, _dumps(dict(options)), callback_url,
         secrets.token_urlsafe(24), now, _dumps(history), now, now, None if gate is None else _dumps(dict(gate))),
    )  # fmt: skip
    found = get(tx, job_id)
    assert found is not None
    return found


def take_due(tx: Transaction, dialect: Dialect, *, lease_s: float, now: int) -> TrainingJobRecord | None:
    skip_locked = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
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
    return get(tx, rows[0][0])


def next_due(tx: Transaction) -> int | None:
    rows = tx.query("SELECT MIN(next_attempt_unix_nano) FROM training_jobs WHERE next_attempt_unix_nano IS NOT NULL")
    return None if not rows or rows[0][0] is None else int(rows[0][0])


def record_dispatch(
    tx: Transaction, dialect: Dialect, job_id: str, *, error: str | None, retry_in_s: float | None, now: int
) -> None:
    # Locked, as the status callback locks it: the trainer may report "running" while
    # this runs, and a history read before that commit and written back after it
    # would drop the trainer's entry.
    rows = tx.query(f"SELECT status, history FROM training_jobs WHERE id = ?{_lock(dialect)}", (job_id,))
    if not rows:
        return
    status, history_text = rows[0]
    history = json.loads(history_text)
    if status in FINISHED_JOB_STATUSES:  # the trainer reported before the hand-off returned
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


def update_status(
    tx: Transaction,
    dialect: Dialect,
    job_id: str,
    *,
    status: str,
    model_version: str | None,
    message: str | None,
    metrics: Mapping[str, Any],
    now: int,
    gate_result: Mapping[str, Any] | None = None,
) -> TrainingJobRecord | None:
    """A trainer's status callback; a ``succeeded`` job registers ``model_version`` of its base model.

    ``gated`` is what a success becomes when the job's gate judged the candidate worse
    than its base (``gate_result`` says why): terminal, and no version is registered.
    """
    rows = tx.query(f"SELECT status, history, base_model_id FROM training_jobs WHERE id = ?{_lock(dialect)}", (job_id,))
    if not rows:
        return None
    current, history_text, base_model_id = rows[0]
    if status == current or (current == "gated" and status == "succeeded"):
        return get(tx, job_id)  # a repeated callback (a trainer retrying its success): nothing changes
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
        "next_attempt_unix_nano = NULL, updated_unix_nano = ?, gate_result = COALESCE(?, gate_result) WHERE id = ?",
        (status, version if status == "succeeded" else None, _dumps(history), now,
         None if gate_result is None else _dumps(dict(gate_result)), job_id),
    )  # fmt: skip
    return get(tx, job_id)


def put_detections(tx: Transaction, job_id: str, detections: Mapping[str, Any], now: int) -> None:
    """Store the candidate's detections per image key; a key sent again replaces what it had."""
    rows = sorted((job_id, key, _dumps(list(found)), now) for key, found in detections.items())
    tx.executemany(
        "INSERT INTO training_job_detections (job_id, image_key, detections, received_unix_nano) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (job_id, image_key) DO UPDATE SET detections = excluded.detections, "
        "received_unix_nano = excluded.received_unix_nano",
        rows,
    )


def detections(tx: Transaction, job_id: str) -> dict[str, list[dict[str, Any]]]:
    """The candidate's detections per image key, as its trainer last sent them."""
    rows = tx.query("SELECT image_key, detections FROM training_job_detections WHERE job_id = ?", (job_id,))
    return {str(key): json.loads(found) for key, found in rows}


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
