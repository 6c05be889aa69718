"""A version's stored detections on given images, found by image key (what comparing two versions reads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from detwatch.storage._transaction import Transaction

_CHUNK: Final = 500
"""Image keys per ``IN`` list: far under either database's limit on bound parameters."""


def detections_by_image_key(
    tx: Transaction, model_id: str, model_version: str, image_keys: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per image key, the detections of the version's newest stored prediction on it (keys it never saw are absent).

    The newest, because a trainer that re-sends its predictions should be read as
    it last answered; within retention only, as every read of predictions is.
    """
    found: dict[str, tuple[int, str, list[dict[str, Any]]]] = {}
    keys = sorted(set(image_keys))
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = tx.query(
            "SELECT image_key, time_unix_nano, prediction_id, detections FROM predictions "
            f"WHERE model_id = ? AND model_version = ? AND image_key IN ({', '.join('?' * len(chunk))})",
            [model_id, model_version, *chunk],
        )
        for key, at, prediction_id, detections in rows:
            order = (int(at), str(prediction_id))
            if key not in found or order > found[key][:2]:
                found[key] = (*order, json.loads(detections))
    return {key: value[2] for key, value in found.items()}
