"""The distribution's tests need the distribution only: nothing here imports the companion.

``pip install detwatch-instrumentation[test]`` and ``python -m pytest`` in this directory
must work without ``detwatch`` installed, as OpenTelemetry contrib's packages test alone.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


# Runs pytest with ``detwatch`` unimportable, as where only this distribution is installed:
# the import-reading test above sees this distribution's files, this one also what they load.
_WITHOUT_COMPANION = """
import sys


class NoCompanion:
    def find_spec(self, name, path=None, target=None):
        if name == "detwatch" or name.startswith("detwatch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoCompanion())
try:
    import detwatch
except ModuleNotFoundError:
    pass
else:
    sys.exit("the companion is still importable")
import pytest

sys.exit(pytest.main(sys.argv[1:]))
"""


def test_the_tests_pass_with_the_companion_not_installed() -> None:
    name = test_the_tests_pass_with_the_companion_not_installed.__name__
    env = {**os.environ, "PYTHONPATH": str(DISTRIBUTION / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_COMPANION, "-q", "-p", "no:cacheprovider", "-k", f"not {name}", "tests"],
        cwd=DISTRIBUTION,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert " passed" in proc.stdout
