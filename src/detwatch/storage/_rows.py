"""How a prediction is kept in a row of ``predictions``, both ways (shared by the SQL modules of storage)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import orjson

from detwatch.contract.predictions import DetectionRecord, ImageRef, Prediction

_PREDICTION_COLUMNS: Final = (
    "prediction_id, model_id, model_version, ab_variant, time_unix_nano, latency_ms, image_key, image_uri, "
    "image_width, image_height, trace_id, span_id, detections, attributes, received_unix_nano"
)
_PREDICTION_WIDTH: Final = 15


def _dumps(value: Any) -> str:
    # orjson, not json.dumps: re-encoding the detections (mostly floats) was the
    # largest share of ingest CPU (29%); orjson does it about ten times faster.
    # User-supplied JSON (metadata, attributes) may hold integers beyond 64 bits,
    # which orjson refuses: the standard library takes those.
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=str)


_encode_detections = msgspec.json.Encoder().encode
_decode_detections = msgspec.json.Decoder(tuple[DetectionRecord, ...]).decode


def _prediction_row(p: Prediction, received: int) -> tuple[Any, ...]:
    # DetectionRecord encodes itself as {"class", "confidence", "box"}: no intermediate dicts.
    return (
        p.prediction_id,
        p.model_id,
        p.model_version,
        p.ab_variant,
        p.time_unix_nano,
        p.latency_ms,
        p.image.key,
        p.image.uri,
        p.image.width,
        p.image.height,
        p.trace_id,
        p.span_id,
        _encode_detections(p.detections).decode(),
        _dumps(dict(p.attributes)) if p.attributes else "{}",
        received,
    )


def _prediction_from_row(row: Sequence[Any]) -> Prediction:
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
