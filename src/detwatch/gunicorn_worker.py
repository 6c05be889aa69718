"""The companion's gunicorn worker: threads for requests, never for a client that is slow to send one.

``gunicorn_config`` names :class:`HeadBufferingWorker` as the worker class, so that
``detwatch serve`` and ``gunicorn -c python:detwatch.gunicorn_config`` both run it.

Why not gunicorn's own workers as they are. A sync worker reads a request's line
and headers itself, blocking: a client that trickles them (one byte a second, no
token needed) holds the worker until the worker timeout, and two such connections
stalled a two-worker service for every caller (an authenticated read took 8-10 s).
The ``gthread`` worker hands a connection to a thread as soon as its first byte
arrives, so the same client holds a thread instead, for as long as it likes: more
connections than threads stall it the same way.

What this worker changes. Its main loop (the one that accepts and polls) reads each
new or kept-alive connection's head itself, without blocking, into a buffer, and
hands the connection to a thread only once the head is complete (the blank line
after the headers), or larger than any head gunicorn accepts (the parser then
answers 414 or 431). A head not complete within :data:`HEAD_TIMEOUT_S` of the
connection's first poll is dropped. A slow client thus costs a file descriptor and
a small buffer, not a thread, and threads only ever run requests that can be parsed
at once. The buffered bytes are given back to gunicorn's parser, which parses them
as if it had read them (limits, strict parsing and error answers unchanged).

What it leaves to gunicorn: TLS and HTTP/2 prior-knowledge connections (their first
bytes are not an HTTP/1 head; a proxy in front terminates TLS anyway), the request
body (a request whose route needs no body is answered before the body is read, and
gunicorn drains an unread body for at most a few seconds; a body that stops coming
for the worker ``timeout`` ends its request, one that trickles holds its thread),
and the cap on open connections (``worker_connections``). On the open internet, put a reverse proxy
that buffers requests in front (see the README).

Errors gunicorn answers itself (a request line or header over its limits, a
malformed or duplicate header) come as the companion's JSON error shape instead of
an HTML page: :func:`write_json_error` replaces gunicorn's writer in each worker
(``gunicorn_config.post_worker_init``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import time
from functools import partial
from typing import Any, Final

from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.http2 import negotiation  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from detwatch.api.errors import error_body

__all__ = ["HEAD_TIMEOUT_S", "MAX_HEAD_BYTES", "HeadBufferingWorker", "write_json_error"]

HEAD_TIMEOUT_S: Final = 10.0
"""How long a connection may take to send a request's line and headers (nginx's
``client_header_timeout`` is 60 s; a caller on a working network needs milliseconds)."""

MAX_HEAD_BYTES: Final = 128 * 1024
"""Buffered without the end of the head, the connection goes to the parser, which refuses it
(414 or 431): more than gunicorn's default limits allow (a 4094-byte line, 100 fields of 8190)."""

_READ_BYTES: Final = 16 * 1024

_CODES: Final = {
    400: "bad_request",
    403: "forbidden",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, answering the companion's JSON error shape instead of HTML.

    Same signature and the same way of writing (non-blocking, ``Connection: close``).
    The message is gunicorn's, cut short (it may quote the offending line); a 500 says
    only what the application's own 500 says.
    """
    code = _CODES.get(status_int, "http_error")
    if status_int >= 500 and status_int != 501:
        message = "internal error; see the service log"
    else:
        message = (mesg or reason)[:300]
    body = json.dumps(error_body(code, message), ensure_ascii=True).encode("ascii")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install_json_errors() -> None:
    """Make gunicorn answer its own errors in JSON in this process (a worker, after the fork)."""
    util.write_error = write_json_error


def _head_complete(buffer: bytearray) -> bool:
    return b"\r\n\r\n" in buffer or b"\n\n" in buffer


class HeadBufferingWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's ``gthread`` worker, reading request heads in its main loop (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections whose head is being read, with its deadline and what came so far (main thread only).
        self._heads: dict[Any, tuple[float, bytearray]] = {}

    def accept(self, listener: Any) -> None:
        """gthread's ``accept``, reading the new connection's head here before a thread takes it."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        self._read_head(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection sends its next request: its head is read here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_head(conn)

    def _read_head(self, conn: Any) -> None:
        if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, conn.client):
            self.enqueue_req(conn)  # not an HTTP/1 head in clear: gthread's way
            return
        conn.sock.setblocking(False)
        self._heads[conn] = (time.monotonic() + HEAD_TIMEOUT_S, bytearray())
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn: Any, _sock: Any) -> None:
        try:
            data = conn.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending a whole head
            self._drop(conn)
            return
        buffer = self._heads[conn][1]
        buffer += data
        if _head_complete(buffer) or len(buffer) > MAX_HEAD_BYTES:
            self._forget(conn)
            conn.detwatch_head = bytes(buffer)  # for the thread to give to the parser
            conn.data_ready = True  # gthread waits for no more data before parsing
            self.enqueue_req(conn)

    def _forget(self, conn: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self._heads.pop(conn, None)

    def _drop(self, conn: Any) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()

    def handle(self, conn: Any) -> Any:
        """In a thread: give the buffered head to gunicorn's parser, then let gthread serve the request."""
        head: bytes | None = getattr(conn, "detwatch_head", None)
        if head:
            conn.detwatch_head = None
            conn.sock.setblocking(True)
            conn.init()  # creates the parser of a new connection; a no-op on a kept-alive one
            unreader = conn.parser.unreader
            unreader.unread(unreader.take_buffered() + head)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """In a thread, the head parsed: a body that stops coming for ``timeout`` seconds ends the request.

        gthread kills no request that runs long, so without this a sender that stopped
        halfway through its body would hold a thread for good. The same timeout bounds
        each write of the answer, as a sync worker's timeout bounded the whole request.
        """
        conn.sock.settimeout(self.cfg.timeout)
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        """Also drop the connections whose head is late (every pass of the main loop, at least once a second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, (deadline, _) in self._heads.items() if deadline <= now or not self.alive]:
            self._drop(conn)
