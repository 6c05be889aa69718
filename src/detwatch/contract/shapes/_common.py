"""Field types every ``/v1`` shape shares: identifiers, names, boxes, times, the error body.

Each is an ``Annotated`` type whose ``msgspec.Meta`` carries the bounds the validators
apply, so that the OpenAPI document (generated from these, see
:func:`detwatch.contract.shapes.schema_components`) and the server say the same thing.
Rules a JSON Schema cannot say alone (NUL, blank names) are written once in
:mod:`detwatch.contract.textfields`; the patterns here are its patterns.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, NotRequired, TypedDict

import msgspec

from detwatch.contract.predictions import MAX_COORDINATE, MAX_ID_LENGTH, MAX_YEAR, MIN_YEAR
from detwatch.contract.textfields import LINE_PATTERN, NAME_PATTERN, NO_NUL_PATTERN

__all__ = [
    "MAX_BATCH",
    "TIME_DESCRIPTION",
    "Box",
    "Error",
    "ErrorDetail",
    "Hex16",
    "Hex32",
    "Id",
    "Line",
    "Name",
    "Object",
    "RejectedItem",
    "Time",
    "one_of",
    "present",
]

MAX_BATCH: Final = 10_000
"""Most items in one batch post (predictions, feedback)."""

Object = dict[str, Any]
"""A free-form JSON object (``metadata``, ``options``, ``attributes``): stored as JSON text."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_NUL_PATTERN, description="no NUL")]
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=NAME_PATTERN,
        description="not blank: a visible character, no NUL",
    ),
]
"""A name, as :func:`detwatch.contract.textfields.name_problem` checks it."""
Line = Annotated[str, msgspec.Meta(min_length=1, pattern=LINE_PATTERN, description="no control character")]
Hex32 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
Hex16 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{16}$")]
Coordinate = Annotated[float, msgspec.Meta(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Box = Annotated[
    list[Coordinate],
    msgspec.Meta(min_length=4, max_length=4, description="[x1, y1, x2, y2] in absolute pixels, x2 > x1 and y2 > y1"),
]
TIME_DESCRIPTION: Final = f"RFC 3339 with a time zone, years {MIN_YEAR} to {MAX_YEAR}"
_TIME_SCHEMA: Final = {"format": "date-time"}
# The year, as written: nanoseconds since the epoch must fit a BIGINT.
_YEAR_PATTERN: Final = "^(?:19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-"
Time = Annotated[str, msgspec.Meta(pattern=_YEAR_PATTERN, description=TIME_DESCRIPTION, extra_json_schema=_TIME_SCHEMA)]


def one_of(values: tuple[str, ...] | list[str], description: str | None = None) -> msgspec.Meta:
    """A closed set kept as a runtime tuple by its owner (``Annotated[str, one_of(X)]``)."""
    if description is None:
        return msgspec.Meta(extra_json_schema={"enum": list(values)})
    return msgspec.Meta(description=description, extra_json_schema={"enum": list(values)})


def present(*names: str) -> dict[str, Any]:
    """JSON Schema: the fields are there and not null (null means absent)."""
    return {"required": list(names), "properties": {name: {"not": {"type": "null"}} for name in names}}


class ErrorDetail(TypedDict):
    """What went wrong: a stable code, a message, and the field to fix when there is one."""

    code: Annotated[str, msgspec.Meta(min_length=1)]
    message: Annotated[str, msgspec.Meta(min_length=1)]
    field: NotRequired[Annotated[str, msgspec.Meta(description="what to fix")]]


class Error(TypedDict):
    """Every error answer of the service (one JSON error shape)."""

    error: ErrorDetail


class RejectedItem(TypedDict):
    """An item of a batch that was not stored, with the field to fix."""

    index: int
    field: str
    error: str


CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    "Error": {"additionalProperties": False},
    "ErrorDetail": {"additionalProperties": False},
}
"""Schema keywords a TypedDict cannot carry (closed objects, rules across fields), by shape name."""
