"""detwatch: production monitoring for object-detection models.

This distribution holds the application side: :func:`configure_opentelemetry` sets
up the SDK for the decorator of ``detwatch_instrumentation``; :class:`Client` talks
to the companion service (``detwatch serve``, :mod:`detwatch.app`); the analyses and
the generators of dashboards and rules build on them.
"""

from .client import Client as Client
from .client import Record as Record
from .exceptions import AuthenticationError as AuthenticationError
from .exceptions import DetwatchError as DetwatchError
from .exceptions import InvalidRequestError as InvalidRequestError
from .exceptions import NotAvailableError as NotAvailableError
from .exceptions import NotFoundError as NotFoundError
from .exceptions import ResponseError as ResponseError
from .exceptions import TransportError as TransportError
from .exceptions import UnavailableError as UnavailableError
from .telemetry import Telemetry as Telemetry
from .telemetry import configure_opentelemetry as configure_opentelemetry
from .version import __version__ as __version__

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
