"""Model quality for a month of 10 million predictions: ``GET /v1/models/{id}/quality?period=30d`` under 1 s.

Why this traffic is a production model's: the route reads two things, and both are
here at production size. (1) The label-free estimate reads the month's per-class
confidence cells: 10 million predictions of about 5 detections each over 30 days, ten
classes, simulated in numpy and summed into every kind of cell ingest writes with the
storage's own binning (``bench_drift``'s ``simulate`` and ``hour_cells``), written
straight into the ``aggregates`` table of SQLite (pushing 10 million events through
ingest would time ingest; bench_companion does), then compacted as the retention
schedule compacts them (``Storage.compact_aggregates``: every day older than the last
7 rolled into daily cells, the last 168 hours hourly). (2) The labelled estimates and
the calibration read the month's labelled review items: a few hundred, as a review
team labels in a month. Those go through the app as the product makes them: the
predictions ingested with the model's flagging policy (low confidence, edge cases, a
random baseline: unequal inclusion probabilities, so the estimates are weighted), and
every flagged item labelled through the review route with boxes whose truth follows
the detector's confidence (a detection at confidence c is right with chance c, and a
few objects are missed), as a roughly calibrated detector's would.

The timed call is the route itself through the app's test client (the same call the
CLI and client make, JSON included; 400 bootstrap resamples for each interval), median
of ``--repeat`` calls; its parts (the labelled read and estimates, the label-free
estimate, the cell read alone) are timed apart to show where the time goes. The
label-free detections must equal the simulated month's (asserted): the read is complete.

Where the time went: reading the month's confidence cells as one object per cell (about
40,000 after compaction) took 0.3 to 0.6 s of a 1.2 to 1.3 s answer; the database now
sums them per class and bin (``Storage.aggregate_counts``, 0.02 s), and what is left is
the bootstraps (400 resamples of AP and of the calibration, per class). Matching
the labelled images' boxes then took a third of the answer (0.98 s on an idle two-core
machine): a loop of numpy calls on two or three boxes per image and class; plain Python
there gives 0.65 s. The answer's
``label_free_recall`` counts the month's ``missed_object`` posts and predicted images in
one statement (the images from the same cells; asserted complete).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detwatch.app import create_app, shutdown
from detwatch.config import Settings
from detwatch.quality import label_free_recall, model_quality, period_precision
from detwatch.quality._labelfree_from_storage import CONFIDENCE_KIND, period_confidence
from detwatch.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "instrumentation" / "benchmarks"))  # _report: shared with the decorator's benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_drift, beside this file

from _report import positive_int, table, verdict  # noqa: E402  (on the path just above)
from bench_drift import CLASSES, Stream, hour_cells, simulate  # noqa: E402

HOUR = 3600
DAY = 24 * HOUR
NANO = 1_000_000_000
TARGET_S = 1.0
MODEL = "bench"
POLICY: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 0.5},
    "edge_cases": {"enabled": True, "conditions": ["no_detections"], "sample_rate": 1.0},
    "random_sample": {"enabled": True, "rate": 0.1},
}


def build_cells(path: Path, predictions: int, first_hour: int, end_hour: int, seed: int) -> int:
    """Hourly cells of ``[first_hour, end_hour)`` (unix seconds); returns the confidence cells' detections."""
    storage = open_storage(f"sqlite:///{path}")
    storage.migrate()
    storage.close()
    rng = np.random.default_rng(seed)
    hours = range(first_hour, end_hour, HOUR)
    per_hour = predictions // len(hours)
    detections = 0
    with sqlite3.connect(path) as db:
        for hour in hours:
            rows = hour_cells(simulate(Stream(), per_hour, rng), hour)
            detections += sum(int(str(r[6])) for r in rows if r[4] == CONFIDENCE_KIND)
            db.executemany(
                "INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, count, value,"
                " value_sq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    return detections


def _box(rng: np.random.Generator) -> list[float]:
    x, y = (float(v) for v in rng.uniform(0, 560, 2))
    w, h = (float(v) for v in rng.uniform(20, 80, 2))
    return [round(x, 1), round(y, 1), round(x + w, 1), round(y + h, 1)]


def labelled_traffic(
    images: int, start_s: float, end_s: float, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prediction events over the month and, per prediction, the reviewer's boxes."""
    events: list[dict[str, Any]] = []
    truth: dict[str, Any] = {}
    for i in range(images):
        found, boxes = [], []
        for _ in range(int(rng.poisson(5.0))):
            name = CLASSES[int(rng.integers(len(CLASSES)))]
            confidence = float(1 / (1 + np.exp(-(1.5 + rng.normal(0, 1.2)))))
            box = _box(rng)
            found.append({"class": name, "confidence": round(confidence, 4), "box": box})
            if rng.random() < confidence:
                boxes.append({"class": name, "box": box})
        for _ in range(int(rng.poisson(0.5))):  # objects the detector missed
            boxes.append({"class": CLASSES[int(rng.integers(len(CLASSES)))], "box": _box(rng)})
        at = start_s + (i + 0.5) * (end_s - start_s) / images
        events.append(
            {
                "prediction_id": f"l{i:05d}",
                "time": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
                "model_id": MODEL,
                "model_version": "v1",
                "image": {"key": f"{i}.jpg", "width": 640, "height": 640},
                "detections": found,
            }
        )
        truth[f"l{i:05d}"] = boxes
    return events, truth


def _ok(response: Any, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(response.get_data(as_text=True))
    return response.get_json()


def _median(call: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        timings.append(time.perf_counter() - t0)
    return statistics.median(timings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_quality", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--predictions", type=positive_int, default=10_000_000, help="predictions in the month")
    parser.add_argument("--labelled-traffic", type=positive_int, default=1200, help="predictions the policy sees")
    parser.add_argument("--repeat", type=positive_int, default=5, help="timed calls (median)")
    args = parser.parse_args(argv)
    print("bench_quality: GET /v1/models/{id}/quality over a month of stored aggregates and labelled items")
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        workdir = Path(tmp)
        app = create_app(Settings(data_dir=workdir, database_url=f"sqlite:///{workdir / 'q.db'}"))
        client = app.test_client()
        started = time.perf_counter()
        now = time.time()
        # The window's whole days and hours: a daily cell counts where its day starts in the window.
        first_hour, end_hour = -(-int(now - 30 * DAY) // DAY) * DAY, int(now) // HOUR * HOUR
        # First the cells, then the labelled traffic: ingest adds its detections to them.
        simulated = build_cells(workdir / "q.db", args.predictions, first_hour, end_hour, seed=1)
        _ok(client.post("/v1/models", json={"model_id": MODEL}), 201)
        dataset = _ok(client.post("/v1/datasets", json={"name": "review"}), 201)["id"]
        _ok(client.put(f"/v1/models/{MODEL}/data-engine", json={"config": POLICY, "target_dataset_id": dataset}))
        events, truth = labelled_traffic(args.labelled_traffic, first_hour, end_hour, np.random.default_rng(3))
        for first in range(0, len(events), 500):
            _ok(client.post("/v1/predictions", json={"predictions": events[first : first + 500]}))
        items = _ok(client.get(f"/v1/datasets/{dataset}/items?status=all&limit=1000"))["items"]
        for item in items:
            body = {"annotations": truth[item["prediction_id"]], "reviewer": "bench"}
            _ok(client.post(f"/v1/datasets/{dataset}/items/{item['id']}/label", json=body))
        ingested = sum(len(e["detections"]) for e in events)
        storage = open_storage(f"sqlite:///{workdir / 'q.db'}")
        removed = storage.compact_aggregates((end_hour - 7 * DAY) * NANO)
        print(
            f"  built {args.predictions:,} predictions of cells and {len(items)} labelled items (of"
            f" {len(events):,} predictions) in {time.perf_counter() - started:.0f} s; compaction rolled"
            f" {removed:,} hourly cells into days"
        )
        since, until = int((now - 30 * DAY) * NANO), time.time_ns() + 60 * NANO

        report = _ok(client.get(f"/v1/models/{MODEL}/quality?period=30d"))
        counted = report["estimated_precision"]["overall"]["detections"]
        if counted != simulated + ingested:
            raise AssertionError(f"the estimate counted {counted:,} detections, the month has {simulated + ingested:,}")
        missed = report["label_free_recall"]["missed_object_feedback"]
        hours = len(range(first_hour, end_hour, HOUR))
        images = args.predictions // hours * hours + len(events)  # build_cells writes whole hours' worth
        if missed["predictions"] != images:
            raise AssertionError(f"recall counted {missed['predictions']:,} images, the month has {images:,}")
        route_s = _median(lambda: _ok(client.get(f"/v1/models/{MODEL}/quality?period=30d")), args.repeat)
        labelled_s = _median(
            lambda: model_quality(storage, MODEL, since_unix_nano=since, until_unix_nano=until), args.repeat
        )
        labelfree_s = _median(
            lambda: period_precision(storage, MODEL, since_unix_nano=since, until_unix_nano=until), args.repeat
        )
        recall_s = _median(
            lambda: label_free_recall(storage, MODEL, since_unix_nano=since, until_unix_nano=until), args.repeat
        )
        cells_s = _median(
            lambda: period_confidence(storage, MODEL, since_unix_nano=since, until_unix_nano=until, model_version=None),
            args.repeat,
        )
        storage.close()
        shutdown(app)
    overall = report["overall"]
    estimated = report["estimated_precision"]["overall"]
    print(
        f"  {report['n_images']} labelled images: precision {overall['precision']['estimate']:.3f},"
        f" recall {overall['recall']['estimate']:.3f}, AP {overall['ap']['estimate']:.3f};"
        f" label-free precision {estimated['estimate']:.3f} of {counted:,} detections"
    )
    print()
    rows = [
        ["GET /v1/models/{id}/quality?period=30d", f"{route_s:.3f}", f"< {TARGET_S:.0f}", verdict(route_s < TARGET_S)],
        ["  labelled estimates (model_quality)", f"{labelled_s:.3f}", "", ""],
        ["  label-free estimate (period_precision)", f"{labelfree_s:.3f}", "", ""],
        ["    of which the month's confidence cells", f"{cells_s:.3f}", "", ""],
        ["  missed_object feedback (label_free_recall)", f"{recall_s:.3f}", "", ""],
    ]
    for line in table([f"call (median of {args.repeat})", "seconds", "target s", "verdict"], rows):
        print(line)
    return 0 if route_s < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
