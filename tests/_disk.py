"""A small disk of our own: a tmpfs mounted on a test's directory, to fill or make read-only.

As root in a container ``chmod`` cannot stop root from writing; a read-only mount
does, and a small tmpfs fills for real (ENOSPC). Mounting needs CAP_SYS_ADMIN: where
it is refused the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class Disk:
    """A mounted tmpfs at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _remount(self, options: str) -> None:
        command = ["mount", "-o", f"remount,{options}", str(self.path)]
        subprocess.run(command, check=True, capture_output=True, timeout=30)

    def read_only(self) -> None:
        self._remount("ro")

    def writable(self) -> None:
        self._remount("rw")

    def fill(self) -> None:
        """Write one file until the disk is full, to the last byte (no small file fits afterwards)."""
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for chunk in (1 << 16, 1 << 12, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * chunk)
        finally:
            os.close(fd)


@contextlib.contextmanager
def small_disk(path: Path, size: int = 4 << 20) -> Iterator[Disk]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the ``with`` block."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"a read-only or full disk needs a tmpfs, and mount cannot run here ({exc})")
    if mounted.returncode != 0:
        pytest.skip(f"a read-only or full disk needs a tmpfs, and mounting one is refused ({mounted.stderr.strip()})")
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True, timeout=30)
