"""Real components for integration tests, started on loopback.

DESIGN.md asks that integration tests run the real store rather than a mock,
because the Prometheus names our dashboards and rules query depend on the real
OTLP translator. The components are Debian trixie packages that
``scripts/fetch-components`` unpacks into ``.cache/debian/root`` (nothing is
installed into the system), so this module only has to find and run them.

Usage::

    from _components import VictoriaMetrics

    with VictoriaMetrics() as vm:
        post_otlp_metrics(vm.otlp_metrics_url)   # e.g. the SDK's OTLP exporter
        vm.flush()
        assert vm.query("objdet_detections_total")

Configuration:

``DETWATCH_COMPONENTS_DIR``
    The unpacked root to take binaries from (its ``usr/bin``), instead of
    ``<repo>/.cache/debian/root``: for a shared cache or a machine where the
    packages were unpacked elsewhere.

HTTP goes through :mod:`urllib` only, so the test helpers add no dependency.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time as _time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "Alertmanager",
    "ComponentError",
    "VMAlert",
    "VictoriaMetrics",
    "binary",
    "components_root",
    "free_port",
]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
FETCH_SCRIPT: Final = "scripts/fetch-components"

# A proxy from the environment (http_proxy) must never see loopback traffic,
# and a no_proxy that forgets 127.0.0.1 would send it there: bypass proxies.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Finite timeouts everywhere: a wedged component must fail a test, not hang CI.
_HTTP_TIMEOUT: Final = 10.0


def components_root() -> Path:
    """Return the directory the Debian packages were unpacked into.

    ``DETWATCH_COMPONENTS_DIR`` wins so that several work trees can share one
    unpacked copy; otherwise the project-local cache that
    ``scripts/fetch-components`` fills.
    """
    override = os.environ.get("DETWATCH_COMPONENTS_DIR")
    if override:
        return Path(override)
    return REPO_ROOT / ".cache" / "debian" / "root"


def binary(name: str) -> Path:
    """Return the path of an unpacked component binary, e.g. ``victoria-metrics``.

    Raises RuntimeError naming the fix, because a missing cache is the usual
    reason an integration test cannot start on a fresh machine.
    """
    path = components_root() / "usr" / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"component binary {name!r} not found at {path}: "
            f"run {FETCH_SCRIPT} (it unpacks the Debian packages into "
            f"{REPO_ROOT / '.cache' / 'debian' / 'root'}), or point "
            "DETWATCH_COMPONENTS_DIR at an unpacked root"
        )
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before the component binds it, so another process
    may take it in between; :class:`VictoriaMetrics` retries on that.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ComponentError(RuntimeError):
    """A component failed to start or answered an API call with an error."""


class VictoriaMetrics:
    """A private single-node VictoriaMetrics on ``127.0.0.1:<free port>``.

    Used as a context manager: it starts on ``__enter__`` with a fresh
    temporary storage directory and is stopped, and the directory removed, on
    ``__exit__``. The flags are the ones DESIGN.md settles on:
    ``-opentelemetry.usePrometheusNaming`` (the series names we pin) and
    ``-search.latencyOffset=0s`` (otherwise the last minute is hidden from
    queries), plus quiet logs, no response cache and a long retention so that
    tests may back-fill old samples.
    """

    #: The flags every instance gets; ``extra_args`` come after and may override.
    BASE_ARGS: Final[tuple[str, ...]] = (
        "-opentelemetry.usePrometheusNaming",
        "-search.latencyOffset=0s",
        # Cached rollup results would hide samples ingested after a first query.
        "-search.disableCache",
        # The default (1 month) rejects back-filled history older than that.
        "-retentionPeriod=100y",
        "-loggerLevel=ERROR",
        # No self-scrape (off unless an interval is set): keep the store to
        # what the test wrote, so series()/label_values() see only that.
        "-selfScrapeInterval=0s",
    )

    def __init__(
        self,
        *,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 20.0,
    ) -> None:
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until ``/health`` answers.

        A few attempts, each on a new port: :func:`free_port` cannot reserve
        the port, so losing it to another process is retried rather than
        failing a test.
        """
        if self._process is not None:
            raise ComponentError("VictoriaMetrics is already running")
        exe = binary("victoria-metrics")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="detwatch-vm-"))
        try:
            for attempt in range(3):
                if self._start_once(exe, attempt):
                    return
            raise ComponentError("VictoriaMetrics could not bind a free port after 3 attempts")
        except BaseException:
            self.stop()
            raise

    def _start_once(self, exe: Path, attempt: int) -> bool:
        """Run one start attempt; False when only the port was lost."""
        assert self._tmpdir is not None
        port = free_port()
        log_path = self._tmpdir / f"victoria-metrics.{attempt}.log"
        args = [
            str(exe),
            f"-storageDataPath={self._tmpdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            *self.BASE_ARGS,
            *self._extra_args,
        ]
        # Output goes to a file, not a pipe: nobody reads a pipe while the
        # test runs, and a full pipe would block the server.
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._tmpdir,
            )
        self._port = port
        deadline = _time.monotonic() + self._startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                output = _tail(log_path)
                self._process = None
                if "address already in use" in output:
                    return False
                raise ComponentError(
                    f"VictoriaMetrics exited with code {code} during start-up ({' '.join(args)}):\n{output}"
                )
            if self._healthy():
                return True
            if _time.monotonic() > deadline:
                self._terminate()
                raise ComponentError(
                    f"VictoriaMetrics did not answer {self.url}/health within "
                    f"{self._startup_timeout:g} s ({' '.join(args)}):\n"
                    f"{_tail(log_path)}"
                )
            _time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with _OPENER.open(f"{self.url}/health", timeout=1.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the server (terminate, then kill) and remove its storage.

        Safe to call twice, and after a failed start.
        """
        self._terminate()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The loopback port the running server listens on."""
        if self._port is None:
            raise ComponentError("VictoriaMetrics has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_metrics_url(self) -> str:
        """Where an OTLP/HTTP metrics exporter posts (protobuf)."""
        return f"{self.url}/opentelemetry/v1/metrics"

    # -- API -----------------------------------------------------------------

    def flush(self) -> None:
        """Make every sample ingested so far visible to queries.

        VictoriaMetrics buffers fresh rows in memory for up to a few seconds
        before search sees them; ``/internal/force_flush`` ends that wait. The
        rollup cache is off (``-search.disableCache``), but it is reset as well
        so that a caller's ``extra_args`` re-enabling it cannot serve stale
        results.
        """
        self._call("GET", "/internal/force_flush")
        self._call("GET", "/internal/resetRollupResultCache")

    def import_prometheus(self, text: str) -> None:
        """Ingest samples in the Prometheus text format (timestamps in ms).

        The simplest way for a test to seed the store without an OTLP
        exporter; call :meth:`flush` before querying.
        """
        self._call(
            "POST",
            "/api/v1/import/prometheus",
            body=text.encode(),
            content_type="text/plain",
        )

    def query(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        """Run an instant query and return ``data.result``.

        ``time`` is a Unix timestamp in seconds; None means now, sent
        explicitly: VictoriaMetrics' own default truncates now to the whole
        second, which hides a sample ingested earlier in the same second.
        """
        if time is None:
            time = _time.time()
        params: dict[str, str] = {"query": promql, "time": f"{time:.3f}"}
        result: list[dict[str, Any]] = self._api("/api/v1/query", params)["result"]
        return result

    def series(
        self,
        match: str,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[dict[str, str]]:
        """Return the label sets of the series matching a selector.

        Without ``start`` VictoriaMetrics looks back one day only, so pass it
        for back-filled data.
        """
        params: dict[str, str] = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        result: list[dict[str, str]] = self._api("/api/v1/series", params)
        return result

    def label_values(
        self,
        label: str,
        match: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
    ) -> list[str]:
        """Return the values of one label, optionally only on matching series.

        The same one-day default window as :meth:`series` applies.
        """
        params: dict[str, str] = {}
        if match is not None:
            params["match[]"] = match
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        path = f"/api/v1/label/{urllib.parse.quote(label, safe='')}/values"
        result: list[str] = self._api(path, params)
        return result

    # -- HTTP ----------------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str]) -> Any:
        """GET a Prometheus-style API path and return its ``data``."""
        raw = self._call("GET", path, params=params)
        payload = json.loads(raw)
        if payload.get("status") != "success":
            raise ComponentError(f"{path} {dict(params)} failed: {payload}")
        return payload["data"]

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> bytes:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, method=method)
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        try:
            with _OPENER.open(request, timeout=_HTTP_TIMEOUT) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as error:
            # The body carries VictoriaMetrics' explanation (e.g. a PromQL
            # parse error); the status line alone does not.
            detail = error.read().decode(errors="replace")
            error.close()
            raise ComponentError(f"{method} {url} answered {error.code}: {detail}") from None


def _tail(path: Path, limit: int = 4000) -> str:
    """The end of a log file: enough to explain a failed start."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


class _Daemon:
    """A component binary run on a loopback port until :meth:`stop`, log in a temp dir.

    The shared shape of :class:`VMAlert` and :class:`Alertmanager`: start, wait for a
    health URL, retry on a lost port, terminate then kill. Subclasses give the
    command line for a port and the health path.
    """

    name: str = "component"
    health_path: str = "/"

    def __init__(self, *, startup_timeout: float = 20.0) -> None:
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"detwatch-{self.name}-"))

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()

    @property
    def url(self) -> str:
        if self._port is None:
            raise ComponentError(f"{self.name} has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def log(self) -> str:
        """The component's output so far (for assertion messages)."""
        return "\n".join(_tail(p) for p in sorted(self.workdir.glob("*.log")))

    def start(self) -> None:
        try:
            for attempt in range(3):
                port = free_port()
                log_path = self.workdir / f"{self.name}.{attempt}.log"
                args = self.command(port)
                with log_path.open("wb") as log:
                    self._process = subprocess.Popen(
                        args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
                    )
                self._port = port
                deadline = _time.monotonic() + self._startup_timeout
                while True:
                    code = self._process.poll()
                    if code is not None:
                        self._process = None
                        output = _tail(log_path)
                        if "address already in use" in output:
                            break
                        raise ComponentError(f"{self.name} exited with code {code} ({' '.join(args)}):\n{output}")
                    try:
                        with _OPENER.open(self.url + self.health_path, timeout=1.0) as response:
                            if response.status == 200:
                                return
                    except (OSError, urllib.error.URLError):
                        pass
                    if _time.monotonic() > deadline:
                        raise ComponentError(
                            f"{self.name} did not answer within {self._startup_timeout:g} s:\n{_tail(log_path)}"
                        )
                    _time.sleep(0.05)
            raise ComponentError(f"{self.name} could not bind a free port after 3 attempts")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def get_json(self, path: str) -> Any:
        with _OPENER.open(self.url + path, timeout=_HTTP_TIMEOUT) as response:
            return json.loads(response.read())


class VMAlert(_Daemon):
    """VictoriaMetrics' ``vmalert`` evaluating rule files against a store, notifying Alertmanager.

    Recording rules are written back to the store (``-remoteWrite.url``). Tests use
    ``-rule.evalDelay=0s`` (the default 30 s would hide fresh samples) and a short
    ``-evaluationInterval``; groups that set their own ``interval`` override it.
    """

    name = "vmalert"
    health_path = "/health"

    def __init__(
        self,
        *,
        rules: Sequence[Path],
        datasource_url: str,
        notifier_url: str,
        evaluation_interval: str = "1s",
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self._rules = tuple(rules)
        self._datasource_url = datasource_url
        self._notifier_url = notifier_url
        self._interval = evaluation_interval

    def command(self, port: int) -> list[str]:
        return [
            str(binary("vmalert")),
            *(f"-rule={path}" for path in self._rules),
            f"-datasource.url={self._datasource_url}",
            f"-remoteWrite.url={self._datasource_url}",
            "-remoteWrite.flushInterval=200ms",
            f"-notifier.url={self._notifier_url}",
            f"-evaluationInterval={self._interval}",
            "-rule.evalDelay=0s",
            f"-external.url=http://127.0.0.1:{port}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=WARN",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts vmalert currently holds (pending or firing)."""
        alerts: list[dict[str, Any]] = self.get_json("/api/v1/alerts")["data"]["alerts"]
        return alerts


class Alertmanager(_Daemon):
    """Debian's ``prometheus-alertmanager`` with a given configuration, clustering off.

    The Debian binary reads its default template from the fixed path
    ``/usr/share/prometheus/alertmanager/default.tmpl`` and exits without it. The
    unpacked package has it under its own ``usr/share``, so the binary runs in a
    private mount namespace with that directory overlaid on ``/usr/share``: nothing
    on the system changes (DESIGN.md).
    """

    name = "alertmanager"
    health_path = "/-/ready"

    def __init__(self, *, config: str, startup_timeout: float = 20.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(config)

    def command(self, port: int) -> list[str]:
        share = components_root() / "usr" / "share"
        exe = binary("prometheus-alertmanager")
        inner = (
            f"mount -t overlay overlay -o lowerdir={share}:/usr/share /usr/share && exec {exe}"
            f" --config.file={self.config_path} --storage.path={self.workdir / 'data'}"
            f" --web.listen-address=127.0.0.1:{port} --cluster.listen-address= --log.level=warn"
        )
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", inner]
