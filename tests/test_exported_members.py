"""The public surface is exactly what ``__all__`` says, as HTTPX checks its own."""

from __future__ import annotations

import types

import pytest

import detwatch
import detwatch_instrumentation
from detwatch_instrumentation import semconv


@pytest.mark.parametrize("module", [detwatch_instrumentation, detwatch, semconv], ids=lambda m: m.__name__)
def test_all_matches_the_public_namespace(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    typing_helpers = {"Final", "Literal", "dataclass", "re", "math"}
    exported = set(module.__all__) - {"__version__"}
    assert exported == public - typing_helpers


def test_public_objects_report_the_public_module() -> None:
    for name in detwatch_instrumentation.__all__:
        if name == "__version__":
            continue
        assert getattr(detwatch_instrumentation, name).__module__ == "detwatch_instrumentation", name


def test_instrumentation_imports_no_sdk_and_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, detwatch_instrumentation\n"
        "bad = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'numpy', 'torch', 'flask', 'scipy'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
