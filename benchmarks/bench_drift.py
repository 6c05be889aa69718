"""Drift report over 10 million stored predictions, and against Evidently's data-drift preset on 1 million rows.

Part 1 (target: under 1 s): two months of hourly aggregate cells for one model, as
ingest writes them for 10 million predictions of about 5 detections each (five
million images a month, ten classes). Events are simulated in numpy and summed into
cells with the storage's own vectorised binning (``detwatch.storage._aggregate``),
then written straight into the ``aggregates`` table of a SQLite database: pushing 10
million events through ingest would only measure ingest (bench_companion does). The
timed call is the whole report, ``drift_report(storage, model, reference, current)``:
one query per period, merging 720 hours each, every test and the correction.

The report is timed twice: over the hourly cells as ingest writes them (reference),
and after the companion's compaction (``Storage.compact_aggregates``, run by its
retention schedule) has rolled every day older than the last 7 into daily cells:
the target row. Both reports must be identical (asserted): the periods are whole
days, and compaction changes no total. Reading hourly rows, not the statistics, is
what a long report costs; days are 24 times fewer.

Part 2: the same statistics against Evidently 0.7's ``DataDriftPreset`` on the same 1
million detections per side (class, confidence, relative area, aspect ratio), once
with no drift and once with a shift, in the same run. Evidently is installed only in
its own environment (``.cache/bench-evidently``, with ``pandas<3``); without it the
table says so.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.drift import DriftReport, PeriodSample, compare, drift_report
from detwatch.storage import open_storage
from detwatch.storage._aggregate import area_bins, aspect_bins, confidence_bins

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "instrumentation" / "benchmarks"))  # _report: shared with the decorator's benchmarks

from _report import table, verdict  # noqa: E402  (on the path just above)

EVIDENTLY_PYTHON = ROOT / ".cache" / "bench-evidently" / "bin" / "python"
HOUR = 3600
TARGET_S = 1.0
CLASSES = tuple(f"class{k}" for k in range(10))


@dataclass(frozen=True)
class Stream:
    shares: tuple[float, ...] = (0.3, 0.2, 0.1, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03)
    mean_detections: float = 5.0
    confidence_logit: float = 1.5


SHIFTED = Stream(shares=(0.2, 0.2, 0.1, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.13), confidence_logit=1.2)


@dataclass
class Detections:
    per_image: NDArray[np.int64]
    names: NDArray[np.int64]
    confidence: NDArray[np.float64]
    area: NDArray[np.float64]
    ratio: NDArray[np.float64]


def simulate(stream: Stream, images: int, rng: np.random.Generator) -> Detections:
    per_image = rng.poisson(stream.mean_detections, images)
    total = int(per_image.sum())
    logits = stream.confidence_logit + np.repeat(rng.normal(0, 1 / 3, images), per_image) + rng.normal(0, 1, total)
    return Detections(
        per_image,
        rng.choice(len(CLASSES), total, p=stream.shares),
        1 / (1 + np.exp(-logits)),
        10 ** rng.normal(-2, 0.6, total),
        2 ** rng.normal(0, 0.7, total),
    )


def hour_cells(d: Detections, hour: int) -> list[tuple[object, ...]]:
    """The cells ingest writes for one hour of these detections (kinds as in AggregateRow)."""
    rows: list[tuple[object, ...]] = []
    base = ("bench", "v1", "", hour)
    m = d.per_image.astype(np.float64)
    rows.append((*base, "images", "", len(m), float(m.sum()), float((m * m).sum())))
    rows.append((*base, "empty_images", "", int((m == 0).sum()), 0.0, 0.0))
    per_image = np.bincount(np.minimum(d.per_image, bins.DETECTIONS_OPEN_BIN))
    rows += [
        (*base, "image_detections", str(k), int(c), float(k * c), float(k * k * c))
        for k, c in enumerate(per_image)
        if c
    ]
    conf_bin, area_bin, aspect_bin = confidence_bins(d.confidence), area_bins(d.area), aspect_bins(d.ratio)
    for k, name in enumerate(CLASSES):
        mask = d.names == k
        conf = d.confidence[mask]
        rows.append((*base, "detections", name, int(mask.sum()), float(conf.sum()), float((conf * conf).sum())))
        for b, c in enumerate(np.bincount(conf_bin[mask], minlength=bins.CONFIDENCE_BINS)):
            if c:
                rows.append((*base, "confidence", f"{name}|{b}", int(c), 0.0, 0.0))
        for b, c in enumerate(np.bincount(area_bin[mask], minlength=bins.AREA_BINS)):
            if c:
                rows.append((*base, "box_area", f"{name}|{b}", int(c), 0.0, 0.0))
    rows += [(*base, "aspect_ratio", str(b), int(c), 0.0, 0.0) for b, c in enumerate(np.bincount(aspect_bin)) if c]
    return rows


def sample_of(d: Detections) -> PeriodSample:
    """The same detections binned as one period (for the 1M-row comparison)."""
    conf_bin, area_bin, aspect_bin = confidence_bins(d.confidence), area_bins(d.area), aspect_bins(d.ratio)
    return PeriodSample(
        len(d.per_image),
        int((d.per_image == 0).sum()),
        int(d.per_image.sum()),
        float((d.per_image.astype(np.float64) ** 2).sum()),
        {n: int((d.names == k).sum()) for k, n in enumerate(CLASSES)},
        {n: np.bincount(conf_bin[d.names == k], minlength=bins.CONFIDENCE_BINS) for k, n in enumerate(CLASSES)},
        np.bincount(np.minimum(d.per_image, bins.DETECTIONS_OPEN_BIN), minlength=bins.DETECTIONS_OPEN_BIN + 1),
        {n: np.bincount(area_bin[d.names == k], minlength=bins.AREA_BINS) for k, n in enumerate(CLASSES)},
        np.bincount(aspect_bin, minlength=bins.ASPECT_BINS),
    )


def build_database(path: Path, images_per_month: int, seed: int) -> tuple[int, int]:
    """Two 30-day months of cells (January: the stream; February: shifted); returns (predictions, detections)."""
    storage = open_storage(f"sqlite:///{path}")
    storage.migrate()
    storage.close()
    rng = np.random.default_rng(seed)
    per_hour = images_per_month // (30 * 24)
    january = 1704067200  # 2024-01-01T00:00Z
    february = january + 31 * 24 * HOUR
    predictions = detections = 0
    with sqlite3.connect(path) as db:
        for month_start, stream in ((january, Stream()), (february, SHIFTED)):
            for hour in range(30 * 24):
                d = simulate(stream, per_hour, rng)
                predictions += per_hour
                detections += int(d.per_image.sum())
                db.executemany(
                    "INSERT INTO aggregates (model_id, model_version, ab_variant, hour_unix, kind, key, count, value,"
                    " value_sq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    hour_cells(d, month_start + hour * HOUR),
                )
    return predictions, detections


EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    data = np.load(sys.argv[1])
    frames = {}
    for side in ("reference", "current"):
        frames[side] = pd.DataFrame({
            "class": pd.Series(data[side + "_class"]).map(lambda k: f"class{k}").astype("category"),
            "confidence": data[side + "_confidence"], "area": data[side + "_area"], "aspect": data[side + "_ratio"],
        })
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=frames["current"], reference_data=frames["reference"])
    elapsed = time.perf_counter() - started
    result = snapshot.dict()
    drifted, columns = None, []
    for metric in result.get("metrics", []):
        name, value = str(metric.get("metric_name", "")), metric.get("value")
        if name.startswith("DriftedColumnsCount") and isinstance(value, dict):
            drifted = int(value["count"])
        elif name.startswith("ValueDrift"):
            column = metric["config"]["column"]
            threshold = metric["config"]["threshold"]
            if float(value) >= threshold:
                columns.append(column)
    print(json.dumps({"seconds": elapsed, "drifted_columns": f"{drifted} of 4 ({', '.join(columns) or '-'})"}))
    """
)


def run_evidently(reference: Detections, current: Detections, rows: int, workdir: Path) -> tuple[float, object] | None:
    if not EVIDENTLY_PYTHON.exists():
        return None
    arrays = {}
    for side, d in (("reference", reference), ("current", current)):
        arrays.update(
            {f"{side}_class": d.names[:rows], f"{side}_confidence": d.confidence[:rows],
             f"{side}_area": d.area[:rows], f"{side}_ratio": d.ratio[:rows]}
        )  # fmt: skip
    data = workdir / "rows.npz"
    np.savez(data, **arrays)  # type: ignore[arg-type]
    script = workdir / "evidently_drift.py"
    script.write_text(EVIDENTLY_SCRIPT)
    out = subprocess.run([str(EVIDENTLY_PYTHON), str(script), str(data)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), answer["drifted_columns"]


def first_rows(d: Detections, rows: int) -> Detections:
    """The images whose detections make up the first ``rows`` detections."""
    ends = np.cumsum(d.per_image)
    images = int(np.searchsorted(ends, rows)) + 1
    total = int(ends[images - 1])
    return Detections(d.per_image[:images], d.names[:total], d.confidence[:total], d.area[:total], d.ratio[:total])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_drift", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--images-per-month", type=int, default=5_000_000, help="predictions per period")
    parser.add_argument("--rows", type=int, default=1_000_000, help="detections per side for the Evidently run")
    parser.add_argument("--repeat", type=int, default=5, help="timed reports (median)")
    args = parser.parse_args(argv)
    print("bench_drift: a drift report over stored aggregates; detwatch against Evidently on the same rows")
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        predictions, detections = build_database(workdir / "d.db", args.images_per_month, seed=1)
        print(
            f"  built {predictions:,} predictions ({detections:,} detections) in {time.perf_counter() - started:.0f} s"
        )
        storage = open_storage(f"sqlite:///{workdir / 'd.db'}")
        periods = ("2024-01-01:2024-01-30", "2024-02-01:2024-03-01")

        def timed_report() -> tuple[float, DriftReport]:
            timings, report = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                report = drift_report(storage, "bench", *periods)
                timings.append(time.perf_counter() - t0)
            assert report is not None
            return statistics.median(timings), report

        hourly_s, hourly_report = timed_report()
        t0 = time.perf_counter()
        removed = storage.compact_aggregates(1709251200 * 10**9 - 7 * 86_400 * 10**9)  # 2024-03-01 less 7 days
        compact_s = time.perf_counter() - t0
        seconds, report = timed_report()
        storage.close()
        assert report.to_json()["tests"] == hourly_report.to_json()["tests"]  # same totals, fewer rows
        print(f"  compaction rolled {removed:,} hourly cells into days in {compact_s:.1f} s (once, in the background)")
        print()
        for line in table(
            ["report over", "predictions", "detections", "cells read", "median s", "target s", "verdict", "drift"],
            [[
                "after compaction (53 days + 168 hours)", f"{predictions:,}", f"{detections:,}", "days and hours",
                f"{seconds:.3f}", f"< {TARGET_S:.0f}", verdict(seconds < TARGET_S), str(report.significant_drift),
            ], [
                "hourly cells, before compaction", f"{predictions:,}", f"{detections:,}", "1,440 hours",
                f"{hourly_s:.3f}", "reference", "", str(hourly_report.significant_drift),
            ]],
        ):  # fmt: skip
            print(line)

        rng = np.random.default_rng(2)
        rows = []
        for scenario, stream in (("no drift", Stream()), ("shift", SHIFTED)):
            reference = first_rows(simulate(Stream(), args.rows // 4, rng), args.rows)
            current = first_rows(simulate(stream, args.rows // 4, rng), args.rows)
            t0 = time.perf_counter()  # binning included: Evidently gets raw rows
            ours = compare(sample_of(reference), sample_of(current))
            ours_s = time.perf_counter() - t0
            theirs = run_evidently(reference, current, args.rows, workdir)
            rows.append([
                scenario, f"{min(len(reference.names), args.rows):,}", f"{ours_s:.3f}",
                str(ours.significant_drift), "n/a" if theirs is None else f"{theirs[0]:.2f}",
                "not installed" if theirs is None else str(theirs[1]),
            ])  # fmt: skip
        print()
        for line in table(
            ["same rows", "rows/side", "detwatch s (bin+test)", "detwatch drift", "Evidently s", "Evidently drifted"],
            rows,
        ):
            print(line)
    return 0 if seconds < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
