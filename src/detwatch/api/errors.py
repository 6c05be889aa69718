"""The companion's one JSON error shape, and the handlers that guarantee it.

Every error the service answers, whatever raised it, is::

    {"error": {"code": "invalid_field", "message": "confidence must be between 0 and 1",
               "field": "detections[0].confidence"}}

``field`` names what to fix when there is one. Bad input is a 4xx, never a 500 and
never an HTML page; a database that cannot take writes is a 503 with
``Retry-After``, so senders retry instead of dropping data. A 503 says why in a
word (``disk full``, ``read-only``, ...) and nothing more: callers of the webhook
routes are authenticated by a signature only, and the database's own message (file
paths, the server's socket, the statement) belongs in the log. Only a caller holding
the API token (where one is configured) gets that message too.
"""

from __future__ import annotations

import errno
import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from detwatch.api._context import bearer_ok, settings
from detwatch.storage import StorageUnavailable

__all__ = [
    "APIError",
    "data_dir_unavailable",
    "error_body",
    "error_response",
    "init_app",
    "os_error_reason",
    "unavailable_message",
]

_logger = logging.getLogger("detwatch.api")

RETRY_AFTER_S = 2


class APIError(Exception):
    """An error to answer as JSON: status, machine-readable code, message, field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    """The one error shape, as data (also written by the gunicorn worker for what it answers itself)."""
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify(error_body(code, message, field))
    response.status_code = status
    if status in (429, 503):
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def unavailable_message(exc: StorageUnavailable) -> str:
    """What a caller is told when the database cannot take writes (no detail of the database)."""
    return f"the database cannot take writes now ({exc.reason}); retry later"


def os_error_reason(exc: OSError) -> str:
    """The one word a caller is told for a failed write to a file (``disk full``, ``read-only``, ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if exc.errno == errno.EROFS or isinstance(exc, PermissionError):
        return "read-only"
    return "unavailable"


def data_dir_unavailable(exc: OSError, what: str) -> APIError:
    """A 503 for a write to the data dir that failed; the path and the error go to the log only."""
    _logger.warning("data dir unavailable (%s): %s", what, exc)
    return APIError(503, "storage_unavailable", f"the data dir cannot take writes now ({os_error_reason(exc)}): {what}")


def _holds_the_token() -> bool:
    """Whether the request carries the API token (one is configured): not a webhook sender, not anonymous."""
    return bool(settings().api_token) and bearer_ok()


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into the JSON shape."""

    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(StorageUnavailable)
    def _unavailable(exc: StorageUnavailable) -> Response:
        _logger.warning("storage unavailable: %s", exc)
        message = unavailable_message(exc)
        if _holds_the_token():  # the operator, who may read the service's log anyway, is told more
            message = f"{message}: {exc}"
        return error_response(503, "storage_unavailable", message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status, "http_error")
        response = error_response(status, code, exc.description or exc.name)
        allowed = getattr(exc, "valid_methods", None)  # a 405 says what is allowed
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _logger.exception("unexpected error")
        return error_response(500, "internal_error", "internal error; see the service log")
