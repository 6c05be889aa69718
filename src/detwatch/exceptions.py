"""Exceptions the Python client raises: one base class, so callers can catch everything.

::

    DetwatchError
    ├── TransportError            the service could not be reached (connection, timeout)
    └── ResponseError             the service answered with an error (status, code, message, field)
        ├── InvalidRequestError   400, 413, 415: the error's ``field`` says what to fix
        ├── AuthenticationError   401, 403
        ├── NotFoundError         404 for a resource (model, dataset)
        ├── NotAvailableError     the server has no such call (an older companion)
        └── UnavailableError      429, 503 still answered after the client's retries
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "DetwatchError",
    "InvalidRequestError",
    "NotAvailableError",
    "NotFoundError",
    "ResponseError",
    "TransportError",
    "UnavailableError",
]


class DetwatchError(Exception):
    """Base class of every error the client raises."""


class TransportError(DetwatchError):
    """The request did not get an answer (connection refused, timeout, reset)."""


class ResponseError(DetwatchError):
    """The service answered with an error; carries the server's error fields."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        where = f" (field: {field})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class InvalidRequestError(ResponseError):
    """The request was refused as invalid; ``field`` names the offending input."""


class AuthenticationError(ResponseError):
    """The token or the webhook signature was missing or wrong."""


class NotFoundError(ResponseError):
    """The named resource does not exist."""


class NotAvailableError(ResponseError):
    """This companion does not offer the call (it comes with a later version)."""


class UnavailableError(ResponseError):
    """The service stayed overloaded or unable to store (429/503) through all retries."""
