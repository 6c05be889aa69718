"""The per-hour aggregates a set of predictions must produce, computed independently.

Storage and service tests compare what the database holds against this numpy
computation from the raw events (each prediction id counted once), so the storage's
own aggregation code is never checked against itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

import numpy as np
import pytest

from detwatch.predictions import Prediction
from detwatch.storage import Storage

__all__ = ["Cell", "assert_cells_equal", "expected_cells", "stored_cells"]

HOUR_NS: Final = 3600 * 1_000_000_000
Cell = tuple[str, str, str, int, str, str]
"""(model_id, model_version, ab_variant, hour_unix, kind, key)."""


def expected_cells(events: Iterable[Prediction]) -> dict[Cell, tuple[int, float]]:
    """The aggregate cells ``events`` must produce: (count, value) by cell."""
    unique = {e.prediction_id: e for e in events}.values()
    groups: dict[tuple[str, str, str, int], list[Prediction]] = defaultdict(list)
    for e in unique:
        hour = (e.time_unix_nano // HOUR_NS) * 3600
        groups[(e.model_id, e.model_version, e.ab_variant or "", hour)].append(e)
    cells: dict[Cell, tuple[int, float]] = {}
    for group, members in groups.items():
        counts = np.array([len(e.detections) for e in members])
        cells[(*group, "images", "")] = (len(members), float(counts.sum()))
        if (counts == 0).any():
            cells[(*group, "empty_images", "")] = (int((counts == 0).sum()), 0.0)
        latencies = np.array([e.latency_ms for e in members if e.latency_ms is not None])
        if latencies.size:
            cells[(*group, "latency_ms_sum", "")] = (int(latencies.size), float(latencies.sum()))
        for name in sorted({d.class_name for e in members for d in e.detections}):
            conf = np.array([d.confidence for e in members for d in e.detections if d.class_name == name])
            cells[(*group, "detections", name)] = (int(conf.size), float(conf.sum()))
            histogram, _ = np.histogram(conf, bins=20, range=(0.0, 1.0))
            sums, _ = np.histogram(conf, bins=20, range=(0.0, 1.0), weights=conf)
            for b in np.flatnonzero(histogram):
                cells[(*group, "confidence", f"{name}|{b}")] = (int(histogram[b]), float(sums[b]))
    return cells


def stored_cells(storage: Storage, model_id: str) -> dict[Cell, tuple[int, float]]:
    """The aggregate cells the database holds for ``model_id``."""
    rows = storage.aggregates(model_id, 0, 2**62)
    return {(r.model_id, r.model_version, r.ab_variant, r.hour_unix, r.kind, r.key): (r.count, r.value) for r in rows}


def assert_cells_equal(actual: dict[Cell, tuple[int, float]], expected: dict[Cell, tuple[int, float]]) -> None:
    assert sorted(actual) == sorted(expected)
    for cell, (count, value) in expected.items():
        assert actual[cell][0] == count, cell
        assert actual[cell][1] == pytest.approx(value, rel=1e-9, abs=1e-9), cell
