"""The distribution's tests need the distribution only: nothing here imports the companion.

``pip install detwatch-instrumentation[test]`` and ``python -m pytest`` in this directory
must work without ``detwatch`` installed, as OpenTelemetry contrib's packages test alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DISTRIBUTION = HERE.parent


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted([*HERE.glob("*.py"), *(DISTRIBUTION / "src").rglob("*.py")]), ids=str)
def test_nothing_of_the_distribution_imports_the_companion(path: Path) -> None:
    assert "detwatch" not in _imported(path), f"{path.name} imports the companion (detwatch)"


def test_the_reader_sees_a_deferred_import(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f() -> None:\n    from detwatch.config import Settings\n")
    assert "detwatch" in _imported(path)
