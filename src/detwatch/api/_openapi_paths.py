"""The building blocks of the OpenAPI document's paths: operations that name shapes.

An operation names its request shape and its answer shapes (from
:mod:`detwatch.contract.shapes`); the schemas themselves are generated from those
shapes, never written here. Shared by :mod:`detwatch.api.openapi` and its parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from detwatch.contract.predictions import MAX_ID_LENGTH
from detwatch.contract.shapes import REF_PREFIX, Error

__all__ = [
    "BODY_ERRORS",
    "JSON",
    "NOT_FOUND",
    "READ_ERRORS",
    "answer",
    "body",
    "operation",
    "path_id",
    "ref",
]

JSON: Final = "application/json"


def ref(shape: Any) -> dict[str, Any]:
    """A reference to a shape's generated schema (its name is the TypedDict's)."""
    return {"$ref": f"{REF_PREFIX}{shape.__name__}"}


def answer(description: str, shape: Any = None, *, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An answer with a JSON body of ``shape`` (or a composed ``schema`` of shapes), or none."""
    if shape is not None:
        schema = ref(shape)
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def body(shape: Any = None, *, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A required JSON request body of ``shape`` (or a composed ``schema`` of shapes)."""
    return {"required": True, "content": {JSON: {"schema": ref(shape) if shape is not None else schema}}}


def path_id(name: str, *, max_length: int | None = MAX_ID_LENGTH) -> dict[str, Any]:
    """A path parameter holding an id."""
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_length is not None:
        schema["maxLength"] = max_length
    return {"name": name, "in": "path", "required": True, "schema": schema}


def operation(
    summary: str,
    answers: Mapping[str, dict[str, Any]],
    *,
    request: Any = None,
    parameters: Sequence[dict[str, Any]] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: its summary, request shape (if any), parameters and answers by status."""
    out: dict[str, Any] = {"summary": summary}
    if description is not None:
        out["description"] = description
    if parameters:
        out["parameters"] = list(parameters)
    if request is not None:
        out["requestBody"] = body(request)
    out["responses"] = dict(answers)
    return out


UNAUTHORIZED: Final = {"401": answer("missing or wrong credentials", Error)}
NOT_FOUND: Final = {"404": answer("unknown", Error)}
UNAVAILABLE: Final = {"503": answer("the database cannot take writes now; retry after Retry-After", Error)}
BODY_ERRORS: Final = {
    "400": answer("invalid input; the error names the field", Error),
    **UNAUTHORIZED,
    "413": answer("body (or batch) too large", Error),
    "415": answer("unsupported Content-Type (or Content-Encoding)", Error),
    **UNAVAILABLE,
}
READ_ERRORS: Final = {**UNAUTHORIZED, **UNAVAILABLE}
