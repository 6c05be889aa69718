"""Printing benchmark results: aligned plain-text tables and PASS/FAIL verdicts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

__all__ = ["table", "verdict"]


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
