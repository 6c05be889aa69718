"""What a training job's hand-off gives away: URLs from configuration only, and no API token.

The job's URLs were built from the request's Host header when DETWATCH_PUBLIC_URL was
unset: a token holder's ``Host: attacker:port`` sent the trainer to that host, which
served it a fake dataset and received the job's token; a local trainer command also
received the companion's API token and sent it along with the download.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from _jobs import queued_job
from detwatch.app import create_app
from detwatch.config import ConfigError, Settings, TrainerSettings, load_settings
from detwatch.review.training import Trainer, dispatch_once
from detwatch.storage import open_storage

TOKEN = "api-s3cret-token"


class Recorder:
    """An HTTP server on loopback that records every request; ``on_post`` may act on a body."""

    def __init__(self, on_post: Any = None) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                return body

            def do_GET(self) -> None:
                self._record()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"images": [], "annotations": [], "categories": []}')  # a fake dataset

            def do_POST(self) -> None:
                body = self._record()
                self.send_response(202)
                self.end_headers()
                if on_post is not None:
                    threading.Thread(target=on_post, args=(json.loads(body),), daemon=True).start()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class TrainerService:
    """A trainer: downloads the job's COCO export with the job's token, then reports success."""

    def __init__(self) -> None:
        self.downloads: list[tuple[int, Any]] = []
        self.documents: list[dict[str, Any]] = []
        self.http = Recorder(on_post=self.train)

    def train(self, document: dict[str, Any]) -> None:
        self.documents.append(document)
        token = document["callback"]["token"]
        self.downloads.append(_get(document["dataset"]["coco_url"], token))
        body = json.dumps({"status": "succeeded", "model_version": "ft-1"}).encode()
        request = urllib.request.Request(
            document["callback"]["url"],
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@pytest.fixture
def attacker() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def trainer() -> Iterator[TrainerService]:
    service = TrainerService()
    yield service
    service.http.close()


@pytest.fixture
def companion(tmp_path: Path, database_url: str, trainer: TrainerService) -> Iterator[str]:
    """The companion served on loopback, its public URL configured as the address it is bound to."""
    handoff = TrainerSettings(url=f"{trainer.http.url}/jobs", backoff_s=0.05)
    settings = Settings(data_dir=tmp_path, database_url=database_url, api_token=TOKEN, trainer=handoff)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["DETWATCH_SETTINGS"] = settings.with_overrides(public_url=url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()
    server.server_close()
    storage = app.extensions.get("detwatch.storage")
    if storage is not None:
        storage.close()


def test_a_job_created_with_an_attackers_host_header_sends_nothing_there(
    companion: str, trainer: TrainerService, attacker: Recorder
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    dataset = requests.post(f"{companion}/v1/datasets", json={"name": "d"}, headers=auth, timeout=10).json()
    other = requests.post(f"{companion}/v1/datasets", json={"name": "other"}, headers=auth, timeout=10).json()
    attacker_host = attacker.url.removeprefix("http://")
    body = {"name": "j", "dataset_id": dataset["id"], "version_id": dataset["version"]["id"]}
    created = requests.post(
        f"{companion}/v1/training-jobs", json=body, headers={**auth, "Host": attacker_host}, timeout=10
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 20
    while requests.get(f"{companion}/v1/training-jobs/{job_id}", headers=auth, timeout=10).json()["status"] != (
        "succeeded"
    ):
        assert time.monotonic() < deadline, "the job did not succeed"
        time.sleep(0.05)

    assert attacker.requests == []
    [document] = trainer.documents
    text = json.dumps(document)
    assert TOKEN not in text and attacker_host not in text
    urls = [document["callback"]["url"], *document["dataset"].values()]
    assert all(u.startswith(f"{companion}/v1/training-jobs/{job_id}/") for u in urls), urls
    [(status, coco)] = trainer.downloads  # the real dataset, read with the job's own token
    assert status == 200 and set(coco) >= {"images", "annotations", "categories", "info"}
    token = document["callback"]["token"]
    # The job's token reads its own dataset only, and only until the job has finished.
    assert _get(document["dataset"]["coco_url"], token)[0] == 403
    other_version = f"{companion}/v1/datasets/{other['id']}/versions/{other['version']['id']}/export"
    assert _get(other_version, token)[0] == 401
    assert _get(f"{companion}/v1/datasets/{dataset['id']}", token)[0] == 401


def test_without_a_public_url_no_job_is_recorded_or_handed_off(
    tmp_path: Path, trainer: TrainerService, attacker: Recorder
) -> None:
    handoff = TrainerSettings(url=f"{trainer.http.url}/jobs")
    client = create_app(Settings(data_dir=tmp_path, api_token=TOKEN, trainer=handoff)).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    dataset = client.post("/v1/datasets", json={"name": "d"}, headers=auth).get_json()
    body = {"name": "j", "dataset_id": dataset["id"], "version_id": dataset["version"]["id"]}
    response = client.post(
        "/v1/training-jobs", json=body, headers={**auth, "Host": attacker.url.removeprefix("http://")}
    )
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "public_url_not_configured" and "DETWATCH_PUBLIC_URL" in error["message"]
    time.sleep(0.3)
    assert trainer.http.requests == [] and attacker.requests == []


def test_a_local_trainer_command_does_not_get_the_companions_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DETWATCH_API_TOKEN", TOKEN)
    monkeypatch.setenv("DETWATCH_WEBHOOK_SECRET", "webhook-s3cret")
    seen = tmp_path / "env.json"
    script = f"import json, os, sys; sys.stdin.read(); open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ)))"
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}")
    storage.migrate()
    try:
        store, _job = queued_job(storage)
        assert dispatch_once(store, Trainer(command=(sys.executable, "-c", script), public_url="http://10.0.0.1"))
    finally:
        storage.close()
    environment = json.loads(seen.read_text())
    assert "DETWATCH_JOB_FILE" in environment
    assert "DETWATCH_API_TOKEN" not in environment and "DETWATCH_WEBHOOK_SECRET" not in environment
    assert TOKEN not in seen.read_text()


@pytest.mark.parametrize(
    "value",
    ["attacker:8000", "ftp://x", "http://user:pw@host", "http://host/?q=1", "http://host/#f", "http://host:99999"],
)
def test_a_public_url_that_is_not_a_plain_http_base_is_a_config_error(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="public_url"):
        load_settings({"DETWATCH_PUBLIC_URL": value, "DETWATCH_CONFIG": str(tmp_path / "absent.yaml")})


def test_the_public_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    environ = {"DETWATCH_PUBLIC_URL": "https://detwatch.example/base/", "DETWATCH_CONFIG": str(tmp_path / "a.yaml")}
    assert load_settings(environ).public_url == "https://detwatch.example/base"
