"""Run every benchmark module's ``main()`` in turn (``./run bench``).

The benchmarks are the ``bench_*.py`` modules of this folder (the companion's) and of
``instrumentation/benchmarks`` (the decorator's overhead, carried by the distribution it
measures, as its tests are); that folder also holds the helpers both share (``_report``),
so it goes on ``sys.path`` here, below the companion's, as the distributions depend.

Each benchmark prints its own table and returns an exit status (0 when its targets
are met). Arguments after the runner's own are passed to every benchmark's
``main(argv)``; ``--only NAME`` (repeatable) restricts the run to the benchmarks
whose module name contains ``NAME``. The runner's status is the worst of theirs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
INSTRUMENTATION = HERE.parent / "instrumentation" / "benchmarks"
FOLDERS = (HERE, INSTRUMENTATION)

Main = Callable[[Sequence[str]], int | None]


def _load(path: Path) -> Main:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if not callable(main):
        raise AttributeError(f"{path.name} has no main()")
    return cast(Main, main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only matching benchmarks")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args, rest = parser.parse_known_args(argv)
    for folder in FOLDERS:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    paths = sorted((p for folder in FOLDERS for p in folder.glob("bench_*.py")), key=lambda p: p.stem)
    if args.only:
        paths = [p for p in paths if any(name in p.stem for name in args.only)]
    if args.list or not paths:
        for p in paths:
            print(p.stem)
        return 0 if paths else 2
    status = 0
    for path in paths:
        print(f"==== {path.stem}", flush=True)
        code = _load(path)(rest)
        status = max(status, code or 0)
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
