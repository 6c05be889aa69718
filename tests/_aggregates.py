"""The per-hour aggregates a set of predictions must produce, computed independently.

Storage and service tests compare what the database holds against this numpy
computation from the raw events (each prediction id counted once), so the storage's
own aggregation code is never checked against itself. What each kind counts is
``detwatch.storage.AggregateRow``'s docstring.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

import numpy as np
import pytest

from detwatch.bins import area_edges, aspect_edges, confidence_edges, latency_edges_ms
from detwatch.predictions import Prediction
from detwatch.storage import Storage

__all__ = ["Cell", "assert_cells_equal", "expected_cells", "stored_cells"]

HOUR_NS: Final = 3600 * 1_000_000_000
Cell = tuple[str, str, str, int, str, str]
"""(model_id, model_version, ab_variant, hour_unix, kind, key)."""


def _bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin index of each value for ascending ``edges`` (lower edge inclusive); out of range goes to the end bins."""
    return np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 2)


def _add_histogram(
    cells: dict[Cell, tuple[int, float, float]], group: tuple[str, str, str, int], kind: str, prefix: str,
    bins: np.ndarray, values: np.ndarray,
) -> None:  # fmt: skip
    for b in np.unique(bins):
        chosen = values[bins == b]
        cells[(*group, kind, f"{prefix}{b}")] = (int(chosen.size), float(chosen.sum()), float((chosen**2).sum()))


def expected_cells(events: Iterable[Prediction]) -> dict[Cell, tuple[int, float, float]]:
    """The aggregate cells ``events`` must produce: (count, value, value_sq) by cell.

    Binned with numpy against the bin *edges* (``detwatch.bins.*_edges``), not with the
    bin functions the storage calls, so the two computations only share the definition.
    """
    unique = {e.prediction_id: e for e in events}.values()
    groups: dict[tuple[str, str, str, int], list[Prediction]] = defaultdict(list)
    for e in unique:
        hour = (e.time_unix_nano // HOUR_NS) * 3600
        groups[(e.model_id, e.model_version, e.ab_variant or "", hour)].append(e)
    cells: dict[Cell, tuple[int, float, float]] = {}
    for group, members in groups.items():
        counts = np.array([len(e.detections) for e in members], dtype=float)
        cells[(*group, "images", "")] = (len(members), float(counts.sum()), float((counts**2).sum()))
        if (counts == 0).any():
            cells[(*group, "empty_images", "")] = (int((counts == 0).sum()), 0.0, 0.0)
        _add_histogram(cells, group, "image_detections", "", np.minimum(counts, 64).astype(int), counts)
        latencies = np.array([e.latency_ms for e in members if e.latency_ms is not None])
        if latencies.size:
            cells[(*group, "latency_ms_sum", "")] = (
                int(latencies.size), float(latencies.sum()), float((latencies**2).sum()),
            )  # fmt: skip
            _add_histogram(cells, group, "latency_ms", "", _bins(latencies, latency_edges_ms()), latencies)
        # Per detection: class, confidence, relative area (nan when unknown), aspect ratio (nan for relative boxes).
        rows: list[tuple[str, float, float, float]] = []
        for e in members:
            boxes = np.array([d.box for d in e.detections], dtype=float).reshape(-1, 4)
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            if e.image.width is not None and e.image.height is not None:
                area, aspect = w * h / (e.image.width * e.image.height), w / h
            elif boxes.size and boxes.min() >= 0.0 and boxes[:, 2:].max() <= 1.0:
                area, aspect = w * h, np.full(w.shape, np.nan)
            else:
                area, aspect = np.full(w.shape, np.nan), w / h
            rows += [(d.class_name, d.confidence, a, r) for d, a, r in zip(e.detections, area, aspect, strict=True)]
        ratios = np.array([r for *_, r in rows if not np.isnan(r)])
        if ratios.size:
            _add_histogram(cells, group, "aspect_ratio", "", _bins(ratios, aspect_edges()), ratios)
        for name in sorted({row[0] for row in rows}):
            conf = np.array([c for n, c, _, _ in rows if n == name])
            cells[(*group, "detections", name)] = (int(conf.size), float(conf.sum()), float((conf**2).sum()))
            _add_histogram(cells, group, "confidence", f"{name}|", _bins(conf, confidence_edges()), conf)
            areas = np.array([a for n, _, a, _ in rows if n == name and not np.isnan(a)])
            if areas.size:
                _add_histogram(cells, group, "box_area", f"{name}|", _bins(areas, area_edges()), areas)
    return cells


def stored_cells(storage: Storage, model_id: str) -> dict[Cell, tuple[int, float, float]]:
    """The aggregate cells the database holds for ``model_id``."""
    rows = storage.aggregates(model_id, 0, 2**62)
    return {
        (r.model_id, r.model_version, r.ab_variant, r.hour_unix, r.kind, r.key): (r.count, r.value, r.value_sq)
        for r in rows
    }


def assert_cells_equal(
    actual: dict[Cell, tuple[int, float, float]], expected: dict[Cell, tuple[int, float, float]]
) -> None:
    assert sorted(actual) == sorted(expected)
    for cell, (count, value, value_sq) in expected.items():
        assert actual[cell][0] == count, cell
        assert actual[cell][1] == pytest.approx(value, rel=1e-9, abs=1e-9), cell
        assert actual[cell][2] == pytest.approx(value_sq, rel=1e-9, abs=1e-9), cell
