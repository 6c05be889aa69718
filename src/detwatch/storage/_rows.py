"""Rows of the shared tables read back as the contract's values, for every module of storage.

Its own module so that the data engine's SQL (:mod:`detwatch.storage.review`) reads
prediction rows the way :mod:`detwatch.storage._sql` does without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from detwatch.contract.predictions import DetectionRecord, ImageRef, Prediction

__all__ = ["prediction_from_row"]

_decode_detections = msgspec.json.Decoder(tuple[DetectionRecord, ...]).decode


def prediction_from_row(row: Sequence[Any]) -> Prediction:
    detections = _decode_detections(row[12])
    return Prediction(
        prediction_id=row[0],
        time_unix_nano=int(row[4]),
        model_id=row[1],
        model_version=row[2],
        detections=detections,
        ab_variant=row[3],
        latency_ms=None if row[5] is None else float(row[5]),
        image=ImageRef(key=row[6], uri=row[7], width=row[8], height=row[9]),
        trace_id=row[10],
        span_id=row[11],
        attributes=json.loads(row[13]),
    )
