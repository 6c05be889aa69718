"""SQL of alert definitions (both backends): one row per alert, one revision for the set.

Every write first raises ``alerts_revision.revision`` (``UPDATE ... SET revision =
revision + 1``). On PostgreSQL that row lock is held until commit, so two replicas
writing at once queue there, and the second then reads the first's committed rows
(READ COMMITTED takes a new snapshot per statement): the check that a name is not
another model's and the write that follows see one consistent set. SQLite's write
lock, taken at BEGIN, gives the same order. Readers compare the revision to what they
derived earlier: one small read instead of the whole set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from detwatch.storage.records import AlertNameTaken, AlertRecord, AlertWrite

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction

_COLUMNS: Final = "slug, name, model_id, definition, revision, created_unix_nano, updated_unix_nano"


def _record(row: Sequence[Any]) -> AlertRecord:
    return AlertRecord(
        slug=row[0],
        name=row[1],
        model_id=row[2],
        definition=json.loads(row[3]),
        revision=int(row[4]),
        created_unix_nano=int(row[5]),
        updated_unix_nano=int(row[6]),
    )


def revision(tx: Transaction) -> int:
    rows = tx.query("SELECT revision FROM alerts_revision WHERE id = 1")
    return int(rows[0][0]) if rows else 0


def _next_revision(tx: Transaction) -> int:
    """Raise the set's revision; the row stays locked to the end of the transaction (writers queue here)."""
    tx.execute("UPDATE alerts_revision SET revision = revision + 1 WHERE id = 1")
    return revision(tx)


def list_all(tx: Transaction) -> list[AlertRecord]:
    return [_record(r) for r in tx.query(f"SELECT {_COLUMNS} FROM alerts ORDER BY slug")]


def _get(tx: Transaction, slug: str) -> AlertRecord | None:
    rows = tx.query(f"SELECT {_COLUMNS} FROM alerts WHERE slug = ?", (slug,))
    return _record(rows[0]) if rows else None


def _dumps(definition: dict[str, Any]) -> str:
    return json.dumps(definition, separators=(",", ":"), sort_keys=True)


def put(
    tx: Transaction, *, slug: str, name: str, model_id: str, definition: dict[str, Any], now_unix_nano: int
) -> AlertWrite:
    """Create or replace the alert ``slug`` of ``model_id``; :class:`AlertNameTaken` if another model holds it."""
    new_revision = _next_revision(tx)
    existing = _get(tx, slug)
    if existing is not None and existing.model_id != model_id:
        raise AlertNameTaken(existing)
    created = existing.created_unix_nano if existing is not None else now_unix_nano
    tx.execute(
        f"INSERT INTO alerts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (slug) DO UPDATE SET name = excluded.name, model_id = excluded.model_id, "
        "definition = excluded.definition, revision = excluded.revision, "
        "updated_unix_nano = excluded.updated_unix_nano",
        (slug, name, model_id, _dumps(definition), new_revision, created, now_unix_nano),
    )
    record = AlertRecord(
        slug=slug,
        name=name,
        model_id=model_id,
        definition=definition,
        revision=new_revision,
        created_unix_nano=created,
        updated_unix_nano=now_unix_nano,
    )
    return AlertWrite(record=record, replaced=existing is not None)


def insert_missing(tx: Transaction, alerts: Sequence[tuple[str, str, str, dict[str, Any]]], now_unix_nano: int) -> int:
    """Insert ``(slug, name, model_id, definition)`` rows whose slug is not stored; how many were inserted.

    Stored rows win: importing the same files twice, or after the alert was changed
    through the API, changes nothing. The revision moves only when a row was added.
    """
    if not alerts:
        return 0
    new_revision = _next_revision(tx)
    inserted = 0
    for slug, name, model_id, definition in alerts:
        inserted += tx.execute(
            f"INSERT INTO alerts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slug) DO NOTHING",
            (slug, name, model_id, _dumps(definition), new_revision, now_unix_nano, now_unix_nano),
        )
    if inserted == 0:
        # Nothing changed: put the counter back, so that readers keep what they derived.
        tx.execute("UPDATE alerts_revision SET revision = revision - 1 WHERE id = 1")
    return inserted
