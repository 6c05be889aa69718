"""The period a quality report covers: a window ending now (``7d``, ``24h``, ``last 2w``).

Labelled items carry their prediction's own time, so any window is answered exactly
(no hourly cells to align to, unlike drift's periods).
"""

from __future__ import annotations

import re
from typing import Final

from detwatch.contract.shapes.quality import WINDOW_PATTERN

__all__ = ["parse_window"]

_WINDOW: Final = re.compile(WINDOW_PATTERN)
_PARTS: Final = re.compile(r"(?:last +)?([0-9]+) *([a-z]+)")
_UNIT_S: Final = {"m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_NS: Final = 1_000_000_000


def parse_window(text: str, *, now_unix_nano: int) -> tuple[int, int]:
    """``(since, until)`` in unix nanoseconds of ``text`` ending at ``now``; ``ValueError`` for another form."""
    parts = _PARTS.fullmatch(text) if _WINDOW.fullmatch(text) else None
    if parts is None:
        raise ValueError("a window ending now, e.g. 7d, 24h or last 2w (a whole number from 1, units m, h, d, w)")
    amount, unit = parts.groups()
    length = int(amount) * _UNIT_S[unit] * _NS  # the pattern admits no 0
    return (max(0, now_unix_nano - length), now_unix_nano)
