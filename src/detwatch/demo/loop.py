"""The improvement loop of the user guide, end to end on one machine (part of ``./run demo``).

real detector -> telemetry -> feedback -> flagged items -> labelled dataset version ->
training job handed to a local trainer -> new model version registered.

Everything is local and embedded: the companion runs in this process (Werkzeug's
threaded server on a loopback port, SQLite in a temporary directory); the decorated
OpenCV face detector exports its prediction events over OTLP/HTTP to the companion's
``/v1/logs``; its ``DataEngine`` polls the companion's policy and keeps the images
the policy selects in a folder; a scripted reviewer accepts the labels that feedback
pre-filled; the trainer is the local command :mod:`.local_trainer`.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from werkzeug.serving import WSGIRequestHandler, make_server

import detwatch_instrumentation
from detwatch.app import create_app
from detwatch.client import Client
from detwatch.config import Settings, TrainerSettings
from detwatch.demo import sample_detector as sd
from detwatch_instrumentation import DataEngine, monitor_detections, prediction_context

__all__ = ["run_loop"]

MODEL = "faces"
POLICY: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 1.0},
    "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density", "unusual_size"]},
    "random_sample": {"enabled": True, "rate": 0.05},
}


class _QuietHandler(WSGIRequestHandler):
    """No access log: the demo prints its own steps."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@contextmanager
def embedded_companion(data_dir: Path, database_url: str = "") -> Iterator[str]:
    """The companion on a loopback port in this process, with the local trainer command; yields its URL.

    ``database_url`` defaults to SQLite under ``data_dir``.
    """
    command = (sys.executable, "-m", "detwatch.demo.local_trainer", "--output", str(data_dir / "models"))
    settings = Settings(
        data_dir=data_dir, database_url=database_url, trainer=TrainerSettings(command=command, backoff_s=0.5)
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    # The address is known once bound, before the first request: the trainer's URLs start with it.
    app.config["DETWATCH_SETTINGS"] = settings.with_overrides(public_url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, name="detwatch-demo-companion", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        storage = app.extensions.get("detwatch.storage")
        if storage is not None:
            storage.close()


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out.write(_row(rows[0], widths).rstrip() + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for r in rows[1:]:
        out.write(_row(r, widths).rstrip() + "\n")


def run_loop(out: TextIO = sys.stdout, workdir: Path | None = None, database_url: str = "") -> dict[str, Any]:
    """Run the loop, print each step; returns what a test checks (``database_url``: see :func:`embedded_companion`)."""
    with tempfile.TemporaryDirectory(prefix="detwatch-loop-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        with embedded_companion(base / "companion", database_url) as url:
            return _loop(url, base, out)


def _loop(url: str, base: Path, out: TextIO) -> dict[str, Any]:
    started = time.perf_counter()
    client = Client(base_url=url)
    out.write(f"\nThe improvement loop (companion at {url}, SQLite, local trainer)\n\n")

    # 1. Deploy: register the model and the dataset its flagged items go to; set the policy.
    model = client.register_model(model_id=MODEL, version="haar-n3")
    dataset = client.create_dataset(name="faces")
    version = dataset["version"]
    client.configure_data_engine(model_id=model["id"], config=POLICY, target_dataset_id=dataset["id"])
    out.write(f"1. model {model['id']!r} version haar-n3; dataset {dataset['id'][:8]}; the user guide's data engine\n")

    # 2. Monitor: the decorated detector exports its events to the companion over OTLP; its
    #    DataEngine evaluates the companion's policy and keeps the selected images.
    provider = LoggerProvider(resource=Resource.create({"service.name": "detwatch-demo"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{url}/v1/logs")))
    engine = DataEngine(companion_url=url, sink=base / "flagged")
    detector = monitor_detections(
        model_id=MODEL, model_version="haar-n3", logger_provider=provider, data_engine=engine
    )(sd.HaarFaceDetector(min_neighbors=3))
    scenes = sd.sample_scenes()
    images = {
        "faces/original": sd.face_mosaic("faces"),
        "faces/downscaled-0.5": sd.downscale(sd.face_mosaic("faces"), 0.5),
        "nonfaces/original": sd.face_mosaic("nonfaces"),
        "photos/astronaut": scenes["astronaut"],
        "photos/coins": scenes["coins"],
        "photos/camera": scenes["camera"],
    }
    found: dict[str, list[dict[str, object]]] = {}
    for key, image in images.items():
        with prediction_context(image_key=key):
            found[key] = detector(image)
    detwatch_instrumentation.flush(30.0)
    provider.shutdown()
    out.write(f"2. detector on {len(images)} images: " + ", ".join(f"{k} {len(v)}" for k, v in found.items()) + "\n")

    # 3. Feedback: an application reports what it saw.
    flagged = client.get_flagged_items(dataset_id=dataset["id"], status="needs_review", limit=100)
    by_key = {item["image"]["key"]: item for item in flagged}
    feedback = 0
    if "photos/coins" in by_key:  # the "faces" on coins are false positives
        for index in range(len(found["photos/coins"])):
            client.send_feedback(type="false_positive", prediction_id=by_key["photos/coins"]["prediction_id"],
                                 detection_index=index)  # fmt: skip
            feedback += 1
    out.write(f"3. feedback posted: {feedback} false positives on photos/coins\n")

    # 4. Flagged items: every reason, the image the decorator kept, the feedback joined.
    flagged_items = client.get_flagged_items(dataset_id=dataset["id"], status="needs_review", limit=100)
    rows = [["image", "reasons", "detections", "feedback", "image kept at"]]
    for item in flagged_items:
        uri = str(item["image"].get("uri") or "-")
        rows.append([item["image"]["key"], ",".join(item["reasons"]), str(len(item["detections"])),
                     str(len(item["feedback"])), uri.replace(f"file://{base}", "<tmp>")])  # fmt: skip
    out.write(f"4. flagged items ({len(flagged_items)}):\n")
    _table(rows, out)
    opened = sum(1 for i in flagged_items if i["image"].get("uri") and Path(i["image"]["uri"][7:]).is_file())

    # 5. Review: a reviewer claims the queue and accepts the labels feedback pre-filled.
    claimed = client.claim_items(dataset_id=dataset["id"], reviewer="demo-reviewer", limit=100)
    for item in claimed:
        client.label_item(dataset_id=dataset["id"], item_id=item["id"], annotations=item["suggested_label"],
                          reviewer="demo-reviewer")  # fmt: skip
    new_version = client.create_dataset_version(
        dataset_id=dataset["id"], parent_version_id=version["id"], name="v2 - with feedback"
    )
    out.write(
        f"5. labelled {len(claimed)} items -> version {new_version['name']!r}: {new_version['item_count']} images, "
        f"{new_version['class_counts']}, {new_version['content_hash'][:19]}..., diff +{new_version['diff']['added']}\n"
    )

    # 6. Retrain: the job goes to the local trainer, which reports back; the new version is registered.
    job = client.create_training_job(
        name="Face detection v2", dataset_id=dataset["id"], version_id=new_version["id"], base_model_id=model["id"]
    )
    trainer = job["trainer"]
    deadline = time.monotonic() + 60
    while (job := client.get_training_job(job["id"]))["status"] not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    registered = client.get_model(model["id"])
    steps = " -> ".join(h["status"] for h in job["history"])
    out.write(
        f"6. training job {job['status']} ({trainer.split(' ')[0]} trainer): {steps}; "
        f"model versions now {list(registered['versions'])}\n"
    )
    elapsed = time.perf_counter() - started
    out.write(f"\nLoop done in {elapsed:.1f} s.\n")
    return {
        "flagged": [dict(i) for i in flagged_items],
        "images_opened": opened,
        "feedback": feedback,
        "version": dict(new_version),
        "job": dict(job),
        "model_versions": list(registered["versions"]),
        "detections": {k: len(v) for k, v in found.items()},
    }
