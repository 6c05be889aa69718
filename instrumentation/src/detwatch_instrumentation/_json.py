"""The encoder of the prediction event's JSON body: orjson when installed, else the standard library.

The body carries every detection's confidence and box, about a hundred floats per
image; the standard library spends ~0.5 µs on each float's shortest repr (about 65 µs
per image of 20 detections, a tenth of all the recording thread's work), orjson
about 3 µs for the whole body. The instrumentation depends on the OpenTelemetry API
only, so orjson is optional (``detwatch-instrumentation[fast]``, and the ``detwatch``
distribution installs it); both encoders produce the same JSON value, shortest
round-trip floats included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_stdlib: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def stdlib_dumps(value: Any) -> str:
    """Encode with the standard library (compact, UTF-8 text, NaN refused)."""
    return _stdlib(value)


def _orjson_dumps_factory() -> Callable[[Any], str] | None:
    try:
        import orjson
    except ImportError:
        return None
    encode = orjson.dumps

    def orjson_dumps(value: Any) -> str:
        try:
            return encode(value).decode()
        except TypeError:
            # Integers beyond 64 bits or other values orjson refuses: the standard
            # library takes them (or raises ValueError/TypeError as it would alone).
            return _stdlib(value)

    return orjson_dumps


_fast = _orjson_dumps_factory()

dumps: Callable[[Any], str] = _fast or stdlib_dumps
"""Encode a prediction body; callers pass only finite floats (orjson would write NaN as null)."""

HAVE_ORJSON = _fast is not None
