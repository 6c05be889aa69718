"""The one guard around telemetry work.

Instrumentation must never break the inference it observes: any exception raised
while building or recording telemetry is caught here, logged at debug level (with
its traceback, for whoever turns debug logging on), and swallowed. Exceptions from
the *wrapped* function never pass through this guard; they propagate unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_logger = logging.getLogger("detwatch_instrumentation")

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")


def guarded(default: D) -> Callable[[Callable[P, R]], Callable[P, R | D]]:
    """Run the decorated telemetry function; on any exception log it and return ``default``."""

    def decorate(func: Callable[P, R]) -> Callable[P, R | D]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | D:
            try:
                return func(*args, **kwargs)
            except Exception:
                _logger.debug("detwatch telemetry failed in %s", func.__qualname__, exc_info=True)
                return default

        return wrapper

    return decorate


def log_failure(where: str) -> None:
    """Log the exception being handled, for code that cannot use :func:`guarded`."""
    _logger.debug("detwatch telemetry failed in %s", where, exc_info=True)
