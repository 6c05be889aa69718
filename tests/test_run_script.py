"""``./run``: the demo installs what the demo needs; the tests and benchmarks add the rest.

``./run demo`` installed the whole test toolchain (a 1.2 GB virtual environment with
pgserver, schemathesis, mypy, supervision and PyAV) before showing a detector. The
script is run here for real, with a stand-in interpreter in its ``.venv`` that records
what it is asked to install, so that no network and no installation is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

from _components import REPO_ROOT

# What only the tests need: heavy, and of no use to someone trying the demo.
TEST_ONLY = {
    "pytest",
    "pytest-timeout",
    "pytest-xdist",
    "mypy",
    "ruff",
    "pgserver",
    "schemathesis",
    "supervision",
    "pycocotools",
}


def names(requirements: list[str]) -> set[str]:
    found = (re.match(r"[A-Za-z0-9._-]+", r) for r in requirements)
    return {m.group(0).lower().replace("_", "-") for m in found if m}


def test_the_demo_extra_and_the_core_hold_no_test_only_package() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    demo, test, core = names(extras["demo"]), names(extras["test"]), names(project["dependencies"])
    assert test >= TEST_ONLY
    assert not (demo | core) & TEST_ONLY, (demo | core) & TEST_ONLY
    assert "detwatch[demo]" in extras["test"]  # the tests run the demo's detector too


def test_each_command_sets_up_its_own_extra() -> None:
    script = (REPO_ROOT / "run").read_text()
    cases = dict(re.findall(r"^    (\w+)\)\n        setup_venv (\w+)", script, re.MULTILINE))
    assert cases == {"demo": "demo", "test": "test", "bench": "test"}


def run(repo: Path, command: str, log: Path) -> list[str]:
    """Run ``./run command`` in ``repo``; the pip installs the stand-in interpreter was asked for."""
    before = log.read_text().splitlines() if log.exists() else []
    env = {**os.environ, "DETWATCH_TEST_LOG": str(log)}
    done = subprocess.run(
        ["bash", str(repo / "run"), command], cwd=repo, env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = log.read_text().splitlines()[len(before) :]
    return [line for line in lines if line.startswith("-m pip install") and "--upgrade pip" not in line]


def test_the_demo_installs_the_demo_extra_and_the_tests_add_theirs(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "instrumentation").mkdir(parents=True)
    for path in ("run", "pyproject.toml", "instrumentation/pyproject.toml"):
        shutil.copy2(REPO_ROOT / path, repo / path)
    python = repo / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$*" >> "$DETWATCH_TEST_LOG"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    stamp = repo / ".venv" / ".detwatch-installed"

    installs = run(repo, "demo", log)
    assert len(installs) == 1 and "-e .[demo]" in installs[0] and "[test]" not in installs[0], installs
    assert stamp.read_text().split()[1] == "demo"
    assert "-m detwatch.demo" in log.read_text().splitlines()[-1]
    assert run(repo, "demo", log) == []  # warm: nothing to install

    installs = run(repo, "bench", log)  # the benchmarks use the tests' helpers: the test extra
    assert len(installs) == 1 and "-e .[test]" in installs[0], installs
    assert stamp.read_text().split()[1] == "test"
    assert run(repo, "demo", log) == []  # the test extra includes the demo's

    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n")
    installs = run(repo, "demo", log)  # changed metadata: installed again, the demo's extra only
    assert len(installs) == 1 and "-e .[demo]" in installs[0], installs
