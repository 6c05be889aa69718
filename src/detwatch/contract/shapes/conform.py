"""Whether a request body conforms to its declared shape: the one check of types, bounds and enums.

The routes and the contract's own parsers (:func:`detwatch.contract.feedback.parse_feedback`)
call :func:`conform` first, so that what the OpenAPI document allows is what the server
accepts, with the same bounds; the parsers then apply what a shape cannot say (a box's
``x2 > x1``, the rules across fields). A failure is a
:class:`~detwatch.contract.predictions.PredictionError` naming the field by its path
(``feedback[2].corrected_box``), the contract's one field error.

Why the messages are rewritten: msgspec reports a text rule as the regular expression
that failed, which tells a user nothing. A string holding NUL, or nothing visible where a
name is expected, gets the words of :mod:`detwatch.contract.textfields` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from detwatch.contract.predictions import PredictionError
from detwatch.contract.textfields import NAME_PATTERN, NUL_MESSAGE, holds_nul, name_problem

__all__ = ["conform", "json_numbers"]

_MISSING: Final = re.compile(r"Object missing required field `(?P<name>[^`]*)`(?: - at `\$(?P<at>[^`]*)`)?")
_AT: Final = re.compile(r"(?P<message>.*) - at `\$(?P<at>[^`]*)`", re.DOTALL)
_STEP: Final = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>[0-9]+)\]|\['(?P<quoted>(?:[^'\\]|\\.)*)'\]")
_PATTERN_FAILED: Final = "Expected `str` matching regex "


def conform(data: Any, shape: object) -> None:
    """Raise :class:`PredictionError` (field path, message) unless ``data`` is a valid ``shape``.

    Numbers are read as JSON Schema reads them (``5.0`` is an integer). Nothing is
    converted for the caller: it reads the values from ``data``, where free-form objects
    are kept as sent.
    """
    try:
        msgspec.convert(json_numbers(data), shape, strict=True)
    except msgspec.ValidationError as exc:
        raise _field_error(str(exc), data) from None


def json_numbers(value: Any) -> Any:
    """``value`` with every integral float an ``int``: JSON Schema's integer, which msgspec's is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    return value


def _field_error(message: str, data: Any) -> PredictionError:
    missing = _MISSING.fullmatch(message)
    if missing is not None:
        at = (missing.group("at") or "").lstrip(".")
        return PredictionError(f"{at}.{missing['name']}" if at else missing["name"], "is required")
    found = _AT.fullmatch(message)
    if found is None:
        return PredictionError("body", message)
    at = found["at"]
    field = at.lstrip(".") or "body"
    text = found["message"]
    if text.startswith(_PATTERN_FAILED):
        value = _value_at(data, at)
        if isinstance(value, str) and holds_nul(value):
            text = NUL_MESSAGE
        elif isinstance(value, str) and text == f"{_PATTERN_FAILED}'{NAME_PATTERN}'":
            text = name_problem(value) or text
    return PredictionError(field, text)


def _value_at(data: Any, path: str) -> Any:
    """The value at msgspec's ``path`` (``.a[0]['b c']``) of ``data``; ``None`` where it cannot be followed."""
    node = data
    for step in _STEP.finditer(path):
        key = step["key"] if step["key"] is not None else step["quoted"]
        if key is not None and isinstance(node, Mapping):
            node = node.get(key)
        elif step["index"] is not None and isinstance(node, list) and int(step["index"]) < len(node):
            node = node[int(step["index"])]
        else:
            return None
    return node
