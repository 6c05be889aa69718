"""Reading a ``/v1`` request: its JSON body, its string fields, NULs in its URL, its token.

Shared by every blueprint of :mod:`detwatch.api`; the blueprints import this module and
never each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from detwatch.api._context import authenticates_itself, bearer_ok
from detwatch.api.errors import APIError
from detwatch.contract.predictions import PredictionError, load_json
from detwatch.contract.shapes import MAX_BATCH
from detwatch.contract.shapes.conform import conform
from detwatch.contract.textfields import NUL_MESSAGE, holds_nul, name_problem

__all__ = [
    "MAX_BATCH",
    "check_shape",
    "field_error",
    "json_body",
    "no_nul_in_url",
    "nul_free_body",
    "object_body",
    "require_token",
    "string_field",
]


def json_body() -> Any:
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "send application/json", "Content-Type")
    try:
        return load_json(request.get_data())
    except ValueError as exc:
        raise APIError(400, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None


def field_error(exc: PredictionError, prefix: str = "") -> APIError:
    return APIError(400, "invalid_field", exc.message, f"{prefix}{exc.field}")


def string_field(data: Mapping[str, Any], key: str, *, required: bool, limit: int = 256) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise APIError(400, "invalid_field", "is required", key)
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise APIError(400, "invalid_field", f"must be a non-empty string of at most {limit} characters", key)
    problem = name_problem(value)
    if problem is not None:
        raise APIError(400, "invalid_field", problem, key)
    return value


def check_shape(data: Mapping[str, Any], shape: object) -> None:
    """Check ``data`` against its declared request shape (:mod:`detwatch.contract.shapes`): types, bounds, enums.

    The shape's error becomes the API's: 400 ``invalid_field``, the message, and the
    field's path (``annotations[0].box``); see :func:`~detwatch.contract.shapes.conform.conform`.
    """
    try:
        conform(data, shape)
    except PredictionError as exc:
        raise field_error(exc) from None


def object_body() -> Mapping[str, Any]:
    data = json_body()
    if not isinstance(data, Mapping):
        raise APIError(400, "invalid_json", "expected a JSON object", "body")
    return data


def nul_free_body(*fields: str) -> Mapping[str, Any]:
    """The JSON object of a body, refused (naming the field) where a string of ``fields`` (all: none named) holds a NUL.

    For bodies read by analyses that take their strings as they come (periods, versions):
    every string of the named fields is text, none is free-form. Unknown keys are ignored.
    """
    data = object_body()
    named = {key: data[key] for key in fields if key in data} if fields else data
    stack: list[tuple[str, Any]] = [("", named)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if holds_nul(node):
                raise APIError(400, "invalid_field", NUL_MESSAGE, where or "body")
        elif isinstance(node, Mapping):
            for key, child in node.items():
                if holds_nul(key):
                    raise APIError(400, "invalid_field", f"a key {NUL_MESSAGE}", where or "body")
                stack.append((f"{where}.{key}" if where else key, child))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(node))
    return data


def no_nul_in_url() -> None:
    """Refuse a NUL in a ``/v1`` path segment or query string (see :mod:`detwatch.contract.textfields`).

    Ids from the URL reach the database as query parameters, which PostgreSQL refuses
    to hold a NUL: ``GET /v1/models/a%00b`` was a 500 there and a 404 on SQLite. A
    caller without the API token hears 401 first, as anywhere else, unless the route
    authenticates it otherwise and does not read the part that holds the NUL.
    """
    if not request.path.startswith("/v1/") or request.routing_exception is not None:
        return  # no route for it (404, 405): the routing error answers, whatever the URL holds
    field = None
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and holds_nul(value):
            field = name
            break
    else:
        for name, value in request.args.items(multi=True):
            if holds_nul(name) or holds_nul(value):
                field = name if not holds_nul(name) else "query"
                break
    if field is None:
        return
    if not bearer_ok():
        # Routes that authenticate by other means (a signature, a job's token) read no query but their own.
        if authenticates_itself(request.endpoint) and field not in (request.view_args or {}):
            return
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")
    raise APIError(400, "invalid_field", NUL_MESSAGE, field)


def require_token() -> None:
    """Refuse a ``/v1`` call without the API token (when one is configured): each blueprint's check."""
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token", "Authorization")
