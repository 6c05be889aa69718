"""detwatch: production monitoring for object-detection models.

This distribution holds the application side: :func:`configure_opentelemetry` sets
up the SDK for the decorator of ``detwatch_instrumentation``; the companion service,
its client, the analyses and the generators of dashboards and rules build on it.
"""

from .telemetry import Telemetry as Telemetry
from .telemetry import configure_opentelemetry as configure_opentelemetry

__version__ = "0.1.0"

__all__ = ["Telemetry", "__version__", "configure_opentelemetry"]
