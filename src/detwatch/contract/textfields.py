"""What the companion accepts in a text field: one rule, for the validators and the OpenAPI document.

Two rules, each written once, here, as a regular expression that means the same in
Python's ``re`` and in ECMA-262 (the dialect of JSON Schema's ``pattern``, which
OpenAPI tools and schemathesis evaluate): explicit character classes only, no
``\\s`` or ``\\S``, whose meaning differs between the two (Python's ``str.isspace()``
and ``\\s`` include U+001C..U+001F and U+0085; ECMA's ``\\s`` has U+FEFF instead).

- **No NUL.** No text field holds U+0000. PostgreSQL cannot store it in ``text``
  (SQLite can): refusing it when a field is validated is what makes both backends
  answer alike, a 4xx naming the field (in a batch, that item is rejected and the
  others are stored). Free-form JSON objects (a model's ``metadata``, a job's
  ``options``, a prediction's ``attributes``) are stored as JSON text, in which a NUL
  is the escape ``\\u0000``, and may hold one.
- **One line.** An image's key and URI name files and lines of files in the dataset
  exports (COCO's ``file_name``, YOLO's ``images.txt``): no control character at all.
- **Not blank.** A name holds at least one visible character: one that is neither
  whitespace (in either dialect's sense) nor a control character. ``"\\u001c"`` is
  blank, as ``str.strip()`` says, and so is ``"\\ufeff"``, as ECMA's ``\\s`` says.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "LINE_PATTERN",
    "MAX_TEXT",
    "NAME_PATTERN",
    "NO_NUL_PATTERN",
    "NUL",
    "NUL_MESSAGE",
    "holds_nul",
    "line_problem",
    "name_problem",
    "python_pattern",
]

NUL: Final = "\x00"
MAX_TEXT: Final = 4096
"""Longest free text (a comment, a description), in characters."""

_INVISIBLE: Final = r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
"""Control characters (C0, DEL, C1) and every character either dialect calls whitespace."""

NO_NUL_PATTERN: Final = r"^[^\u0000]*$"
"""JSON Schema ``pattern`` of a text field: no U+0000 anywhere."""

NAME_PATTERN: Final = rf"^[^\u0000]*[^{_INVISIBLE}][^\u0000]*$"
"""JSON Schema ``pattern`` of a name: no U+0000, and at least one visible character."""

LINE_PATTERN: Final = r"^[^\u0000-\u001f\u007f]*$"
"""JSON Schema ``pattern`` of a text that names a file or fills one line of one: no control character."""


def python_pattern(pattern: str) -> str:
    """``pattern`` (``^...$``) for Python's ``re``, whose ``$`` also matches before a final newline."""
    assert pattern.startswith("^") and pattern.endswith("$")
    return rf"\A{pattern[1:-1]}\Z"


_NAME: Final = re.compile(python_pattern(NAME_PATTERN))
_LINE: Final = re.compile(python_pattern(LINE_PATTERN))

NUL_MESSAGE: Final = "must not hold the NUL character (U+0000)"


def holds_nul(value: str) -> bool:
    """Whether ``value`` holds U+0000 (which no text field may)."""
    return NUL in value


def line_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file or fill a line (a control character), or ``None`` when it can."""
    if _LINE.search(value) is None:
        return "must not hold control characters (U+0000 to U+001F, U+007F)"
    return None


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name (NUL, or nothing visible), or ``None`` when it can."""
    if NUL in value:
        return NUL_MESSAGE
    if _NAME.search(value) is None:
        return "must hold a visible character (not only spaces or control characters)"
    return None
