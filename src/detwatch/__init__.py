"""detwatch: production monitoring for object-detection models.

This distribution holds the application side: :func:`configure_opentelemetry` sets
up the SDK for the decorator of ``detwatch_instrumentation``; :class:`Client` talks
to the companion service (``detwatch serve``, :mod:`detwatch.app`); the analyses and
the generators of dashboards and rules build on them.
"""

from detwatch.client import Client, Record
from detwatch.exceptions import (
    AuthenticationError,
    DetwatchError,
    InvalidRequestError,
    NotAvailableError,
    NotFoundError,
    ResponseError,
    TransportError,
    UnavailableError,
)
from detwatch.telemetry import Telemetry, configure_opentelemetry
from detwatch.version import __version__

__all__ = [
    "AuthenticationError",
    "Client",
    "DetwatchError",
    "InvalidRequestError",
    "NotAvailableError",
    "NotFoundError",
    "Record",
    "ResponseError",
    "Telemetry",
    "TransportError",
    "UnavailableError",
    "__version__",
    "configure_opentelemetry",
]
