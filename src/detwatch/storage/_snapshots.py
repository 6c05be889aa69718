"""SQL of dataset versions as content-addressed snapshots (the data engine's datasets).

A dataset version copies its items (parent's plus the newly labelled ones, the latest
label winning) and is never changed afterwards; its ``content_hash`` is SHA-256 over a
canonical JSON of the items keyed by prediction id, so the same content gives the same
hash in any database.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from detwatch.storage.records import DatasetSnapshotRecord

if TYPE_CHECKING:
    from detwatch.storage._transaction import Transaction


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _box(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values]


def canonical_annotations(annotations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{"class", "box"}`` annotations in the one order snapshots hold them (so equal labels compare equal)."""
    return sorted(
        ({"class": str(a["class"]), "box": _box(a["box"])} for a in annotations),
        key=lambda a: (a["class"], a["box"]),
    )


def _entry(key: Any, uri: Any, width: Any, height: Any, annotations: list[Any]) -> dict[str, Any]:
    return {
        "image": {
            "key": key,
            "uri": uri,
            "width": None if width is None else int(width),
            "height": None if height is None else int(height),
        },
        "annotations": canonical_annotations(annotations),
    }


def snapshot_items(tx: Transaction, version_id: str) -> dict[str, dict[str, Any]]:
    """The snapshot's items by prediction id (``{"image": {...}, "annotations": [...]}``): the hashed document."""
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


def diff(parent: Mapping[str, Mapping[str, Any]], items: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
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


def create(
    tx: Transaction, version_id: str, dataset_id: str, name: str, parent_version_id: str | None
) -> DatasetSnapshotRecord:
    """An immutable snapshot: the parent's items plus every labelled item (latest label wins)."""
    if not tx.query("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)):
        raise LookupError(dataset_id)
    parent_items = snapshot_items(tx, parent_version_id) if parent_version_id else {}
    items = dict(parent_items)
    for r in tx.query(
        "SELECT prediction_id, image_key, image_uri, image_width, image_height, label FROM flagged_items "
        "WHERE dataset_id = ? AND status = 'labeled' ORDER BY prediction_id",
        (dataset_id,),
    ):
        items[r[0]] = _entry(r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else [])
    content_hash = content_hash_of(items)
    counts = class_counts(items)
    changes = diff(parent_items, items)
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
        (version_id, content_hash, len(items), _dumps(counts), _dumps(changes)),
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
    return DatasetSnapshotRecord(
        version_id, dataset_id, name, parent_version_id, created, content_hash, len(items), counts, changes
    )


def get(tx: Transaction, dataset_id: str, version_id: str) -> DatasetSnapshotRecord | None:
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
        return DatasetSnapshotRecord(r[0], r[1], r[2], r[3], int(r[4]), content_hash_of({}), 0, {}, diff({}, {}))
    return DatasetSnapshotRecord(r[0], r[1], r[2], r[3], int(r[4]), r[5], int(r[6]), json.loads(r[7]), json.loads(r[8]))
