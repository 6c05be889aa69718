"""Liveness and readiness (``/healthz``, ``/readyz``), and what a 503 tells a caller.

Readiness must follow the storage a load balancer cares about: a read-only or
unreachable database, a read-only or full data dir. Liveness must not (restarting the
process brings no database back). A 503 says why in a word; the database's own
message, with its file paths, socket and statement, stays in the log.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg import sql

from _disk import small_disk
from _postgres import PostgresServer
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.storage import open_storage

EVENT: dict[str, Any] = {
    "model_id": "m",
    "time": "2024-02-01T12:00:00Z",
    "detections": [{"class": "car", "confidence": 0.9, "box": [0, 0, 10, 10]}],
}


def migrated(url: str) -> str:
    storage = open_storage(url)
    storage.migrate()
    storage.close()
    return url


@pytest.fixture
def pg_read_only(pg_url: str, postgres: PostgresServer) -> Iterator[str]:
    """A migrated PostgreSQL database whose sessions start read-only (what a hot standby looks like)."""
    migrated(pg_url)
    name = sql.Identifier(urllib.parse.unquote(urllib.parse.urlsplit(pg_url).path.lstrip("/")))
    postgres.execute(
        postgres.admin_url, sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(name).as_string()
    )
    yield pg_url


def assert_unavailable(response: Any, reason: str) -> dict[str, Any]:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"].isdigit()
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == "storage_unavailable"
    assert reason in error["message"], error
    return error


def test_readyz_is_ready_on_a_writable_database(client: FlaskClient) -> None:
    assert client.get("/readyz").get_json() == {"status": "ready"}
    assert client.get("/healthz").get_json() == {"status": "ok"}
    # The probe committed nothing.
    assert client.get("/v1/status").get_json()["counts"]["predictions"] == 0


def test_a_read_only_sqlite_database_is_not_ready_and_its_503s_name_no_path(tmp_path: Path) -> None:
    database = tmp_path / "db" / "detwatch.db"
    url = migrated(f"sqlite:///{database}")
    client = create_app(Settings(data_dir=tmp_path / "data", database_url=url + "?mode=ro")).test_client()
    assert_unavailable(client.get("/readyz"), "read-only")
    assert client.get("/healthz").status_code == 200  # alive: a restart would not help
    error = assert_unavailable(client.post("/v1/predictions", json={"predictions": [EVENT]}), "read-only")
    text = json.dumps(error)
    assert str(tmp_path) not in text and "detwatch.db" not in text and "SQLite" not in text, text


def test_a_read_only_postgresql_database_is_not_ready_and_its_503s_name_no_socket(
    tmp_path: Path, pg_read_only: str
) -> None:
    client = create_app(Settings(data_dir=tmp_path, database_url=pg_read_only)).test_client()
    assert_unavailable(client.get("/readyz"), "read-only")
    answers = [
        client.post("/v1/predictions", json={"predictions": [EVENT]}),
        client.post("/v1/feedback", json={"type": "correct", "prediction_id": "p-1"}),
    ]
    host = urllib.parse.urlsplit(pg_read_only).hostname or ""
    for answer in answers:
        text = json.dumps(assert_unavailable(answer, "read-only"))
        assert "PostgreSQL" not in text and "socket" not in text and "COPY" not in text, text
        assert (host not in text) if host else True, text
        assert "/tmp" not in text, text


@pytest.mark.parametrize("fault", ["read-only", "disk full"])
def test_a_read_only_or_full_data_dir_is_not_ready(tmp_path: Path, database_url: str, fault: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data_dir = disk.path / "data"
        client = create_app(Settings(data_dir=data_dir, database_url=database_url)).test_client()
        assert client.get("/readyz").status_code == 200
        if fault == "read-only":
            disk.read_only()
        else:
            disk.fill()
        assert_unavailable(client.get("/readyz"), fault)
        assert client.get("/healthz").status_code == 200
        if fault == "read-only":
            disk.writable()
        else:
            (disk.path / "filler").unlink()
        assert client.get("/readyz").status_code == 200
        assert not [p.name for p in data_dir.iterdir() if p.name.startswith(".ready-")]  # no probe file left


def test_a_full_sqlite_disk_is_not_ready(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        url = migrated(f"sqlite:///{disk.path / 'detwatch.db'}")
        client = create_app(Settings(data_dir=tmp_path / "data", database_url=url)).test_client()
        assert client.get("/readyz").status_code == 200
        disk.fill()
        assert_unavailable(client.get("/readyz"), "disk full")


def test_a_signed_webhook_gets_no_database_details_and_the_operator_does(tmp_path: Path, pg_read_only: str) -> None:
    from detwatch.contract.webhooks import signed_headers

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = Settings(data_dir=tmp_path, database_url=pg_read_only, api_token="s3cret", webhook_secrets=(secret,))
    client = create_app(settings).test_client()
    body = json.dumps({"type": "correct", "prediction_id": "p-1"}).encode()
    headers = {"Content-Type": "application/json", **signed_headers(secret, body, webhook_id="msg_1")}
    text = json.dumps(assert_unavailable(client.post("/v1/feedback", data=body, headers=headers), "read-only"))
    assert "PostgreSQL" not in text and "/tmp" not in text and "COPY" not in text, text
    operator = client.post(
        "/v1/feedback", data=body, headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"}
    )
    assert "PostgreSQL" in assert_unavailable(operator, "read-only")["message"]
