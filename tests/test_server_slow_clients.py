"""The shipped server (``detwatch serve``) against slow and malformed clients, without a proxy.

A client that trickles its request head needs no token; under sync workers two such
connections stalled every caller until the worker timeout. Here more trickling
connections than the server has threads in all stay open while authenticated reads
are timed, and are dropped once their head is late. Errors gunicorn answers itself
(a request line or header over its limits, a duplicate ``Content-Length``) come in
the JSON error shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _components import free_port
from detwatch import gunicorn_config
from detwatch.gunicorn_worker import HEAD_TIMEOUT_S

TOKEN = "s3cret-token"
WORKERS = 2
THREADS = gunicorn_config.threads
TRICKLERS = 3 * WORKERS * THREADS
READ_BOUND_S = 2.0
"""An authenticated read answers within this while the tricklers hold their connections (a sync worker: 30 s)."""


@dataclass
class Serve:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """``detwatch serve --workers 2`` on a loopback port, with a token."""
    data_dir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETWATCH_")}
    env.update({"DETWATCH_DATA_DIR": str(data_dir), "DETWATCH_API_TOKEN": TOKEN})
    log = data_dir / "serve.log"
    command = [sys.executable, "-c", "from detwatch.cli import main; main()", "serve"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"detwatch serve did not start: {log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
            time.sleep(0.1)
        yield Serve(url, port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def authenticated_read(url: str) -> float:
    """Seconds ``GET /v1/status`` with the token took (it must answer 200)."""
    request = urllib.request.Request(f"{url}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10 * READ_BOUND_S) as response:
        assert response.status == 200
        json.loads(response.read())
    return time.monotonic() - started


def raw(port: int, data: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``data`` as it is; the status, headers and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.5)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


def test_trickling_clients_do_not_stall_authenticated_reads_and_are_dropped(serve: Serve) -> None:
    tricklers = []
    for _ in range(TRICKLERS):
        sock = socket.create_connection(("127.0.0.1", serve.port), timeout=5)
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: detwatch\r\n")
        tricklers.append(sock)
    stop = threading.Event()

    def trickle() -> None:  # a byte of a header every 0.2 s from each: never a whole head
        while not stop.wait(0.2):
            for sock in tricklers:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.0)  # every trickler accepted and sending
        took = [authenticated_read(serve.url) for _ in range(5)]
        assert max(took) < READ_BOUND_S, took
        assert not any(closed_by_server(sock) for sock in tricklers[:3])  # still open: the reads did not wait them out

        # A head that does not arrive within HEAD_TIMEOUT_S costs the server nothing more.
        deadline = time.monotonic() + HEAD_TIMEOUT_S + 5
        while not all(closed_by_server(sock) for sock in tricklers):
            assert time.monotonic() < deadline, "trickling connections still open after the head timeout"
    finally:
        stop.set()
        sender.join(5)
        for sock in tricklers:
            sock.close()
    assert authenticated_read(serve.url) < READ_BOUND_S


def test_idle_connections_do_not_stall_authenticated_reads(serve: Serve) -> None:
    idle = [socket.create_connection(("127.0.0.1", serve.port), timeout=5) for _ in range(TRICKLERS)]
    try:
        time.sleep(0.5)
        took = [authenticated_read(serve.url) for _ in range(5)]
        assert max(took) < READ_BOUND_S, took
    finally:
        for sock in idle:
            sock.close()


def assert_json_error(status: int, headers: dict[str, str], body: Any, expected: int, code: str) -> None:
    assert status == expected, (status, body)
    assert headers["content-type"] == "application/json", headers
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def test_errors_gunicorn_answers_itself_are_json(serve: Serve) -> None:
    long_cursor = "9" * 5000
    line = f"GET /v1/datasets/d/items?cursor={long_cursor} HTTP/1.1\r\nHost: detwatch\r\n\r\n"
    assert_json_error(*raw(serve.port, line.encode()), 414, "request_line_too_long")

    big_header = b"GET /healthz HTTP/1.1\r\nHost: detwatch\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    assert_json_error(*raw(serve.port, big_header), 431, "headers_too_large")

    many = b"GET /healthz HTTP/1.1\r\nHost: detwatch\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert_json_error(*raw(serve.port, many), 431, "headers_too_large")

    twice = (
        b"POST /v1/feedback HTTP/1.1\r\nHost: detwatch\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    )
    assert_json_error(*raw(serve.port, twice), 400, "bad_request")

    # A request the application answers still does, with a body that arrives with its head or after it.
    body = json.dumps({"type": "correct", "prediction_id": "p-1"}).encode()
    head = (
        "POST /v1/feedback HTTP/1.1\r\nHost: detwatch\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    status, _, answer = raw(serve.port, head + body)
    assert status == 201, answer
