"""The companion's tree shows its architecture: layers import downward only, with no cycles.

DESIGN.md's "Companion layout": the wire format (``contract/``) at the bottom, then
storage, then the analyses (drift, A/B tests, review, quality, alerting), then the HTTP layer
(``api/``), the background jobs, and the entry points on top. A module may import
from its own layer's package and from any layer below it, never from above, and the
analyses do not import each other (what they share lives lower, in ``stats/``,
``contract/`` or ``storage/``). Every import counts, also one inside a function or
under ``TYPE_CHECKING``: a deferred import is still a dependency, and deferring one is
how cycles hide. Flask belongs to the HTTP layer and the wiring above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A key is a module or a package of the companion; its rank is its layer.
LAYERS: dict[str, int] = {
    "detwatch.version": 0,
    "detwatch.exceptions": 0,
    "detwatch.stats": 0,
    "detwatch.telemetry": 0,
    "detwatch.instruments": 0,
    "detwatch.contract": 1,
    "detwatch.config": 2,
    "detwatch.storage": 3,
    "detwatch.drift": 4,
    "detwatch.abtest": 4,
    "detwatch.review": 4,
    "detwatch.alerting": 4,
    "detwatch.quality": 4,
    "detwatch.api": 5,
    "detwatch.jobs": 6,
    "detwatch.client": 7,
    "detwatch.app": 7,
    "detwatch.cli": 7,
    "detwatch.demo": 7,
    "detwatch.gunicorn_config": 7,
    "detwatch.gunicorn_worker": 7,
    "detwatch": 7,
}
# Layers whose members may not import one another (peers with nothing in common above stats).
ISOLATED_PEERS = {4}
FLASK_LAYERS = {5, 6, 7}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "detwatch").rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports, with the line, wherever the statement sits."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from detwatch.drift import _report`` depends on the submodule, not on the
            # package's ``__init__`` (which Python runs first whatever the form); a name that is
            # not a module is resolved to the module that defines it by ``_graph``.
            for alias in node.names:
                yield (module if alias.name == "*" else f"{module}.{alias.name}"), node.lineno


def _owner(module: str) -> str | None:
    """The layer key a module belongs to: the longest key that is it or a package above it."""
    best = None
    for key in LAYERS:
        if (module == key or module.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for imported, line in _imports(name, path):
            target = imported
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # an attribute of a module
            is_module = target in modules and target != name
            if is_module or target.split(".")[0] in {"flask", "werkzeug"}:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def test_every_companion_module_has_a_layer() -> None:
    unplaced = [name for name in _modules() if _owner(name) is None]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_layers_import_downward_only() -> None:
    wrong = []
    for name, edges in _graph().items():
        source = _owner(name)
        assert source is not None
        rank = LAYERS[source]
        for target, line in edges.items():
            if target.split(".")[0] in {"flask", "werkzeug"}:
                if rank not in FLASK_LAYERS:
                    wrong.append(f"{name}:{line} imports {target} (Flask belongs to the HTTP layer)")
                continue
            owner = _owner(target)
            assert owner is not None
            if owner == source or (owner == "detwatch" and target == "detwatch"):
                continue
            if LAYERS[owner] > rank:
                wrong.append(f"{name}:{line} imports {target} from a higher layer")
            elif LAYERS[owner] == rank and rank in ISOLATED_PEERS:
                wrong.append(f"{name}:{line} imports {target}, a peer analysis")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {name: [t for t in edges if t in _modules()] for name, edges in _graph().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("example", ["from detwatch.api import review", "import detwatch.api.review"])
def test_the_reader_sees_imports_inside_functions(tmp_path: Path, example: str) -> None:
    """The check would pass vacuously if it missed a deferred import: it must not."""
    path = tmp_path / "m.py"
    path.write_text(f"def f() -> None:\n    {example}\n")
    assert ("detwatch.api.review", 2) in set(_imports("detwatch.storage.m", path))


def test_private_modules_are_imported_only_inside_their_package() -> None:
    """``storage._sql`` is one backend's machinery: the data engine reached into it (``_run``), now nothing does.

    A module whose name starts with ``_`` belongs to its package; others use what the
    package exports (its protocols and records), so a new backend can replace it.
    """
    wrong = []
    for name, edges in _graph().items():
        for target, line in edges.items():
            parts = target.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_") and not part.startswith("__")]
            if not private:
                continue
            package = ".".join(parts[: private[0]])
            if name != package and not name.startswith(package + "."):
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_reaches_into_a_backend_transaction_runner() -> None:
    uses = [
        f"{name}:{node.lineno}"
        for name, path in _modules().items()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute)
        and node.attr == "_run"
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert not uses, uses
