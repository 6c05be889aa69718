"""What every benchmark shares: aligned plain-text tables, PASS/FAIL verdicts, argument types."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

__all__ = ["positive_int", "table", "verdict"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """Lines of a table: first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return line.rstrip()

    yield fmt(headers)
    yield "  ".join("-" * w for w in widths)
    for r in rows:
        yield fmt(r)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value
