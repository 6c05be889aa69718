"""Shared fixtures of the companion's tests: databases of each backend, the app and its client.

The in-memory OpenTelemetry pipelines (``telemetry``) are the instrumentation's
(``instrumentation/tests/_telemetry.py``, loaded as a plugin by the pytest
configuration), so that distribution's tests run alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from _postgres import PostgresServer, shared_server


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The session's PostgreSQL server (DETWATCH_TEST_DATABASE_URL, or a private pgserver cluster)."""
    return shared_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database of each backend: suites that use it run against both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'detwatch.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    database = server.create_database()
    yield database
    server.drop_database(database)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database, for tests of what only PostgreSQL does."""
    database = postgres.create_database()
    yield database
    postgres.drop_database(database)


@pytest.fixture
def storage(database_url: str) -> Iterator[Any]:
    """Storage on a fresh, migrated database of each backend (a module may pick the URL by overriding)."""
    from detwatch.storage import open_storage

    opened = open_storage(database_url)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def app(tmp_path: Any, database_url: str) -> Iterator[Any]:
    """The companion's Flask app on a fresh database of each backend (as Flask's own tutorial tests it)."""
    from detwatch.app import create_app, shutdown
    from detwatch.config import Settings

    application = create_app(Settings(data_dir=tmp_path, database_url=database_url))
    yield application
    shutdown(application)


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client of :func:`app` (modules that talk to gunicorn define their own ``client``)."""
    return app.test_client()
