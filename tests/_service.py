"""The companion run for real: gunicorn on a loopback port, stopped after the tests.

Tests that concern the HTTP stack (the client, the CLI, the SDK's OTLP exporter
posting to ``/v1/logs``) talk to this server, not to Flask's test client, so that
what they prove holds for the production server and its worker processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pytest

from _components import free_port


class Companion:
    """``gunicorn 'detwatch.app:create_app()'`` with its own data dir (and database URL)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        workers: int = 2,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The test's own DETWATCH_* settings only: none leaks in from the environment.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DETWATCH_")}
        self.env = {**inherited, "DETWATCH_DATA_DIR": str(data_dir), "DETWATCH_PUBLIC_URL": self.url, **(env or {})}
        if database_url:
            self.env["DETWATCH_DATABASE_URL"] = database_url
        self.log_path = data_dir / "gunicorn.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._spawn(log)
        self._wait_until_healthy()

    def _spawn(self, log: IO[bytes]) -> None:
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--timeout", "30",
            "--graceful-timeout", "5",
            "--config", "python:detwatch.gunicorn_config",
            "detwatch.app:create_app()",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer in 30 s: {self.log_path.read_text()[-4000:]}")

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes (children of the gunicorn master)."""
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]

    def serving_worker_pids(self) -> list[int]:
        """Workers holding an open client connection now: in the middle of a request (Linux /proc only)."""
        serving: set[str] = set()  # socket inodes of established connections to the service's port
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == self.port and fields[3] == "01":
                        serving.add(f"socket:[{fields[9]}]")
        busy = []
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                fds = Path(f"/proc/{pid}/fd")
                if any(os.readlink(fd) in serving for fd in fds.iterdir()):
                    busy.append(pid)
        return busy

    def wait_for_workers(self, count: int, *, exclude: Collection[int] = (), timeout: float = 30) -> list[int]:
        """The worker PIDs once ``count`` run, none of them in ``exclude`` (killed ones, for their replacements)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-4000:]}")
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) >= count:
                return pids
            if time.monotonic() > deadline:
                log = self.log_path.read_text()[-4000:]
                raise RuntimeError(f"{len(pids)} of {count} workers after {timeout} s: {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def companion_on(backend: str, request: pytest.FixtureRequest, data_dir: Path, **options: Any) -> Iterator[Companion]:
    """The companion on ``backend`` (``sqlite``, or ``postgresql``: a fresh database on the
    session's server, dropped afterwards); ``options`` go to :class:`Companion`."""
    database_url = None
    server = None
    if backend == "postgresql":
        server = request.getfixturevalue("postgres")
        database_url = server.create_database()
    try:
        with Companion(data_dir, database_url=database_url, **options) as service:
            yield service
    finally:
        if server is not None and database_url is not None:
            server.drop_database(database_url)
