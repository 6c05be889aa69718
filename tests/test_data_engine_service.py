"""The improvement loop through the client against gunicorn (SQLite and PostgreSQL), with a real trainer webhook.

The trainer is a local HTTP server: it checks the Standard Webhooks signature with the
reference implementation, fails the first hand-offs on purpose, then reports back
through the job's status callback like a real training service would.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

import detwatch
from _components import free_port
from _service import Companion, companion_on

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SEED_CONFIG: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
    "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density", "unusual_size"]},
    "random_sample": {"enabled": True, "rate": 0.05},
}


class Trainer:
    """A training service: verifies each hand-off, answers per plan, reports status back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jobs"
        self.received: list[dict[str, Any]] = []
        self.failures_before_success: dict[str, int] = {}
        self.lock = threading.Lock()
        trainer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                document = standardwebhooks.Webhook(SECRET).verify(body, headers)
                name = document["job"]["name"]
                with trainer.lock:
                    trainer.received.append({"document": document, "webhook_id": headers["webhook-id"]})
                    left = trainer.failures_before_success.get(name, 0)
                    trainer.failures_before_success[name] = left - 1
                if left != 0:  # -1 and below: the trainer is down for good... or until the plan says
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(202)
                self.end_headers()
                threading.Thread(target=trainer.train, args=(document,), daemon=True).start()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def train(self, document: dict[str, Any]) -> None:
        callback = document["callback"]
        for status in ("running", "succeeded"):
            body: dict[str, Any] = {"status": status, "message": f"{status} in the test trainer"}
            if status == "succeeded":
                body["model_version"] = f"v-{document['job']['name']}"
            request = urllib.request.Request(
                callback["url"],
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {callback['token']}"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200


@pytest.fixture(scope="module")
def trainer() -> Iterator[Trainer]:
    service = Trainer()
    yield service
    service.server.shutdown()
    service.server.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, trainer: Trainer
) -> Iterator[Companion]:
    env = {
        "DETWATCH_TRAINER_URL": trainer.url,
        "DETWATCH_TRAINER_SECRET": SECRET,
        "DETWATCH_TRAINER_BACKOFF_S": "0.05",
        "DETWATCH_TRAINER_MAX_ATTEMPTS": "4",
    }
    with companion_on(request.param, request, tmp_path_factory.mktemp("companion"), env=env) as service:
        yield service


@pytest.fixture
def client(companion: Companion) -> detwatch.Client:
    return detwatch.Client(base_url=companion.url)


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def events(prefix: str, n: int, detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "prediction_id": f"{prefix}-{i:04d}",
            "time": "2024-02-01T12:00:00Z",
            "model_id": prefix,
            "model_version": "v1",
            "image": {"key": f"{prefix}/{i}.jpg", "width": 640, "height": 480},
            "detections": detections,
        }
        for i in range(n)
    ]


def test_the_user_guide_loop_ends_with_a_registered_model_version(
    client: detwatch.Client, trainer: Trainer, companion: Companion
) -> None:
    name = f"loop-{companion.port}"
    model = client.register_model(model_id=name, version="v1")
    dataset = client.create_dataset(name=name)
    version = dataset["version"]
    data_engine = client.configure_data_engine(
        model_id=model["id"], config=SEED_CONFIG, target_dataset_id=dataset["id"]
    )
    assert data_engine["target_dataset_id"] == dataset["id"]
    client.send_predictions(events(name, 20, []))  # no detections: every one is an edge case
    flagged_items = client.get_flagged_items(dataset_id=dataset["id"], status="needs_review", limit=100)
    assert len(flagged_items) == 20 and flagged_items.next_cursor is None
    for item in flagged_items:
        assert "no_detections" in item["reasons"] and item["status"] == "needs_review"
        client.label_item(
            dataset_id=dataset["id"],
            item_id=item["id"],
            annotations=[{"class": "car", "box": [10, 10, 50, 40]}],
            reviewer="ann",
        )
    new_version = client.create_dataset_version(
        dataset_id=dataset["id"], parent_version_id=version["id"], name="v2 - with feedback"
    )
    assert new_version["item_count"] == 20 and new_version["class_counts"] == {"car": 20}
    coco = client.export_dataset_version(dataset_id=dataset["id"], version_id=new_version["id"])
    assert len(coco["images"]) == 20 and len(coco["annotations"]) == 20
    trainer.failures_before_success[name] = 2
    job = client.create_training_job(
        name=name, dataset_id=dataset["id"], version_id=new_version["id"], base_model_id=model["id"]
    )
    assert job["status"] == "queued" and "callback_token" not in job
    done = wait_for(lambda: (j := client.get_training_job(job["id"]))["status"] == "succeeded" and j)
    assert done.model_version == f"v-{name}" and done.attempts == 3
    messages = [h["message"] for h in done.history]
    assert sum(m.startswith("hand-off failed: trainer webhook answered 503") for m in messages) == 2
    assert [h["status"] for h in done.history][-2:] == ["running", "succeeded"]
    assert f"v-{name}" in client.get_model(model["id"])["versions"]
    hand_offs = [r for r in trainer.received if r["document"]["job"]["id"] == job["id"]]
    assert len(hand_offs) == 3 and len({r["webhook_id"] for r in hand_offs}) == 1  # one message id: de-duplicable
    assert hand_offs[0]["document"]["dataset"]["coco_url"] == (
        f"{companion.url}/v1/training-jobs/{job['id']}/dataset/export?format=coco"
    )


def test_a_trainer_that_stays_down_fails_the_job_without_losing_it(
    client: detwatch.Client, trainer: Trainer, companion: Companion
) -> None:
    name = f"down-{companion.port}"
    dataset = client.create_dataset(name=name)
    trainer.failures_before_success[name] = -1
    job = client.create_training_job(name=name, dataset_id=dataset["id"], version_id=dataset["version"]["id"])
    failed = wait_for(lambda: (j := client.get_training_job(job["id"]))["status"] == "failed" and j)
    assert failed.attempts == 4 and "503" in failed.last_error
    assert [h["status"] for h in failed.history] == ["queued", "queued", "queued", "queued", "failed"]
    with pytest.raises(detwatch.exceptions.InvalidRequestError):
        client.create_training_job(name="x", dataset_id=dataset["id"], version_id="")
    with pytest.raises(detwatch.exceptions.NotFoundError) as info:
        client.create_training_job(name="x", dataset_id=dataset["id"], version_id="nope")
    assert info.value.field == "version_id"


def test_concurrent_claims_never_give_an_item_to_two_reviewers(client: detwatch.Client, companion: Companion) -> None:
    name = f"claims-{companion.port}"
    dataset = client.create_dataset(name=name)
    client.configure_data_engine(
        model_id=name, config={"edge_cases": {"enabled": True, "conditions": ["no_detections"]}},
        target_dataset_id=dataset["id"],
    )  # fmt: skip
    client.send_predictions(events(name, 300, []))
    queued = set()
    cursor = None
    while True:
        page = client.get_flagged_items(dataset_id=dataset["id"], limit=128, cursor=cursor)
        queued |= {i["id"] for i in page}
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(queued) == 300

    def reviewer(n: int) -> list[str]:
        own = detwatch.Client(base_url=companion.url)
        got: list[str] = []
        while True:
            batch = own.claim_items(dataset_id=dataset["id"], reviewer=f"r{n}", limit=7)
            if not batch:
                return got
            assert all(i["assignee"] == f"r{n}" and i["status"] == "in_review" for i in batch)
            got += [i["id"] for i in batch]

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(reviewer, range(8)))
    everything = [i for per in claimed for i in per]
    assert len(everything) == len(set(everything)) == 300 and set(everything) == queued
    assert sum(1 for per in claimed if per) >= 2  # the reviewers really competed
    in_review = client.get_flagged_items(dataset_id=dataset["id"], status="in_review", limit=1000)
    owner = {i["id"]: i["assignee"] for i in in_review}
    for n, per in enumerate(claimed):
        assert all(owner[i] == f"r{n}" for i in per)


def test_the_decorators_data_engine_polls_the_policy_and_keeps_the_last_copy(
    client: detwatch.Client, companion: Companion
) -> None:
    from detwatch_instrumentation import DataEngine
    from detwatch_instrumentation.flagging import FlaggingPolicy

    name = f"poll-{companion.port}"
    dataset = client.create_dataset(name=name)
    engine = DataEngine(companion_url=companion.url, sink=lambda image, n, info: None, refresh_s=0.01)
    assert engine.policy_for(name) is None  # nothing configured: keep nothing
    client.configure_data_engine(model_id=name, config=SEED_CONFIG, target_dataset_id=dataset["id"])
    time.sleep(0.02)
    served = client.get_data_engine(name)
    assert engine.policy_for(name) == FlaggingPolicy.from_config(served["policy"])
    engine.companion_url = f"http://127.0.0.1:{free_port()}"  # the companion goes away
    time.sleep(0.02)
    assert engine.policy_for(name) == FlaggingPolicy.from_config(served["policy"])  # the last copy keeps working


def test_the_cli_lists_the_queue_exports_a_version_and_shows_a_job(
    client: detwatch.Client, companion: Companion, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from detwatch.cli import main as cli

    name = f"cli-{companion.port}"
    dataset = client.create_dataset(name=name)
    client.configure_data_engine(
        model_id=name, config={"edge_cases": {"enabled": True, "conditions": ["no_detections"]}},
        target_dataset_id=dataset["id"],
    )  # fmt: skip
    client.send_predictions(events(name, 3, []))
    runner = CliRunner()
    listed = runner.invoke(cli, ["items", dataset["id"], "--url", companion.url, "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 3 and all("no_detections" in line for line in lines[:2]) and "--cursor" in lines[2]
    for item in client.get_flagged_items(dataset_id=dataset["id"]):
        client.label_item(
            dataset_id=dataset["id"], item_id=item["id"], annotations=[{"class": "car", "box": [1, 1, 9, 9]}]
        )
    version = client.create_dataset_version(dataset_id=dataset["id"], name="v2")
    out = tmp_path / "coco.json"
    exported = runner.invoke(cli, ["export", dataset["id"], version["id"], "-o", str(out), "--url", companion.url])
    assert exported.exit_code == 0, exported.output
    assert json.loads(out.read_text()) == client.export_dataset_version(
        dataset_id=dataset["id"], version_id=version["id"]
    )
    job = client.create_training_job(name=name, dataset_id=dataset["id"], version_id=version["id"])
    shown = runner.invoke(cli, ["job", job["id"], "--url", companion.url])
    assert shown.exit_code == 0 and shown.output.startswith(f"{name}: ")
    missing = runner.invoke(cli, ["items", "nope", "--url", companion.url])
    assert missing.exit_code == 1 and "dataset_id" in missing.output


def test_concurrent_feedback_on_one_prediction_keeps_every_reason(
    client: detwatch.Client, companion: Companion
) -> None:
    name = f"race-{companion.port}"
    dataset = client.create_dataset(name=name)
    client.configure_data_engine(
        model_id=name, config={"random_sample": {"enabled": True, "rate": 0.0}}, target_dataset_id=dataset["id"]
    )
    box = [10.0, 10.0, 50.0, 50.0]
    client.send_predictions(events(name, 20, [{"class": "car", "confidence": 0.9, "box": box}]))
    kinds: list[dict[str, Any]] = [
        {"type": "false_positive", "detection_index": 0},
        {"type": "wrong_label", "detection_index": 0, "corrected_class": "bus"},
        {"type": "wrong_box", "detection_index": 0, "corrected_box": [11, 11, 52, 52]},
    ]

    def post(args: tuple[int, dict[str, Any]]) -> None:
        i, kind = args
        detwatch.Client(base_url=companion.url).send_feedback(prediction_id=f"{name}-{i:04d}", **kind)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(post, [(i, kind) for i in range(20) for kind in kinds]))
    items = client.get_flagged_items(dataset_id=dataset["id"], limit=100)
    assert len(items) == 20
    expected = {"feedback:" + k["type"] for k in kinds}
    assert all(set(item["reasons"]) == expected and len(item["reasons"]) == 3 for item in items)
