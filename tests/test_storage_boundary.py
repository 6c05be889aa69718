"""Storage owns every SQL statement: above it the companion talks to the storage protocols only.

A backend implements :mod:`detwatch.storage.protocols` without subclassing
``SQLStorage``; that holds only while nothing above storage reaches into the shared SQL
implementation (its module, its transactions, its private ``_run``) or writes SQL of
its own. Read from the source, so that a deferred import or a helper's attribute use
counts as well.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "detwatch"
STORAGE = SRC / "storage"
PRIVATE_ATTRIBUTES = {"_run", "_ingest_run", "_pool"}
PRIVATE_NAMES = {"Transaction", "SQLStorage"}
SQL = re.compile(r"\b(SELECT\s+\S+.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.S)


def _above_storage() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if STORAGE not in p.parents]


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(SRC.parent) if SRC.parent in path.parents else path.name
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            if node.module == "detwatch.storage":
                modules += [f"detwatch.storage.{a.name}" for a in node.names]
        for module in modules:
            if module.startswith("detwatch.storage._"):
                found.append(f"{where}:{getattr(node, 'lineno', 0)} imports {module}, a private module of storage")
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.append(f"{where}:{node.lineno} uses .{node.attr}, the storage's own transactions")
        if isinstance(node, ast.Name) and node.id in PRIVATE_NAMES:
            found.append(f"{where}:{node.lineno} names {node.id}")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and SQL.search(node.value)
        ):
            found.append(f"{where}:{node.lineno} holds SQL: {node.value[:60]!r}")
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_nothing_above_storage_reaches_into_its_sql_implementation() -> None:
    wrong = [v for path in _above_storage() for v in _violations(path)]
    assert not wrong, "\n".join(wrong)


def test_the_check_finds_what_it_forbids(tmp_path: Path) -> None:
    """The detector itself: each kind of reach into storage is reported (else the test above proves nothing)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from detwatch.storage._sql import SQLStorage\n"
        "from detwatch.storage import _review\n"
        "def f(storage, tx: Transaction):\n"
        "    assert isinstance(storage, SQLStorage)\n"
        "    storage._run(lambda tx: tx.query('SELECT id FROM flagged_items'), write=False)\n"
    )
    reported = "\n".join(_violations(sample))
    for expected in ("imports detwatch.storage._sql", "detwatch.storage._review", "uses ._run", "names Transaction",
                     "names SQLStorage", "holds SQL"):  # fmt: skip
        assert expected in reported, (expected, reported)
