"""A real PostgreSQL server for tests, and a fresh database per test.

DESIGN.md asks that the PostgreSQL backend be tested against a real server and
never skipped silently. The server is the one ``DETWATCH_TEST_DATABASE_URL`` names
(its role needs ``CREATEDB``), or else a private cluster that PyPI's ``pgserver``
(server binaries bundled in the wheel) starts in a temporary directory, listening on
a Unix socket only. pgserver also works as root, where PostgreSQL refuses to run: it
creates a ``pgserver`` system user and runs the server as that user. If neither is
available, :func:`shared_server` raises and the tests that need it fail.

Usage, in a test module (one cluster per test session, shared by every module)::

    from _postgres import PostgresServer, shared_server

    @pytest.fixture(scope="session")
    def postgres() -> PostgresServer:
        return shared_server()

    def test_something(postgres: PostgresServer) -> None:
        url = postgres.create_database()      # empty, private to this test
        ...
        postgres.drop_database(url)

The private cluster runs with ``fsync=off``: tests check what clients see, not
crash recovery of the server, and it makes ``CREATE DATABASE`` a few milliseconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer as _PgServerHandle

__all__ = ["ENV_URL", "PostgresServer", "database_url", "shared_server"]

ENV_URL: Final = "DETWATCH_TEST_DATABASE_URL"

_TEST_SETTINGS: Final = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def database_url(url: str, dbname: str) -> str:
    """``url`` with its database replaced by ``dbname`` (host, user, parameters kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


class PostgresServer:
    """A running server and an administrative URL on it (see the module docstring)."""

    def __init__(self, admin_url: str, *, handle: _PgServerHandle | None = None, directory: Path | None = None) -> None:
        self.admin_url = admin_url
        self._handle = handle  # pgserver's handle when this process started the cluster
        self._directory = directory
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            self.server_version = conn.info.server_version

    @classmethod
    def start(cls) -> PostgresServer:
        """The server of ``DETWATCH_TEST_DATABASE_URL``, or a new private pgserver cluster."""
        url = os.environ.get(ENV_URL)
        if url:
            return cls(url)
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

        directory = Path(tempfile.mkdtemp(prefix="detwatch-pg-"))
        try:
            # "delete": stopped and removed at exit (pgserver registers that with atexit).
            handle = get_server(directory, cleanup_mode="delete")
            admin_url = handle.get_uri()
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                for name, value in _TEST_SETTINGS.items():
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                conn.execute("SELECT pg_reload_conf()")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return cls(admin_url, handle=handle, directory=directory)

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"detwatch_test_{uuid.uuid4().hex[:12]}"
        # template0 is never connected to, so concurrent creations cannot find it busy.
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return database_url(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        """Drop a database :meth:`create_database` made, ending sessions still on it."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))
        force = sql.SQL(" WITH (FORCE)") if self.server_version >= 130000 else sql.SQL("")
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))

    def execute(self, url: str, statement: str) -> list[tuple[Any, ...]]:
        """Run one statement on the database ``url`` (autocommit); returns its rows."""
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description is not None else []

    def data_directory_owner(self) -> int | None:
        """The uid the server runs as, when its data directory is on this machine (else None).

        A tablespace directory must belong to that user; a server elsewhere cannot use a
        directory of this machine at all.
        """
        [(directory,)] = self.execute(self.admin_url, "SHOW data_directory")
        try:
            return Path(directory).stat().st_uid
        except OSError:
            return None

    def terminate_sessions(self, url: str, application_name: str = "detwatch", timeout: float = 10) -> int:
        """End the sessions of ``application_name`` on the database of ``url``, waiting until they are gone.

        Returns how many were ended. Their clients see a broken connection on next use.
        """
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))
        sessions = sql.SQL(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} AND application_name = {}"
        ).format(sql.Literal(name), sql.Literal(application_name))
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            ended = [pid for pid, _ in conn.execute(sessions).fetchall()]
            alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
            while conn.execute(alive, (ended,)).fetchone() != (0,):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"sessions of {application_name!r} on {name!r} still there after {timeout} s")
                time.sleep(0.02)
        return len(ended)

    def stop(self) -> None:
        """Stop a private cluster and remove its directory (nothing for an external server)."""
        if self._handle is not None:
            self._handle.cleanup()
            self._handle = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


_shared: list[PostgresServer] = []
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """One server for the whole test session, started on first use, stopped at exit."""
    with _shared_lock:
        if not _shared:
            _shared.append(PostgresServer.start())
        return _shared[0]
