"""The per-hour aggregates a set of predictions must produce, computed independently.

Storage and service tests compare what the database holds against this numpy
computation from the raw events (each prediction id counted once), so the storage's
own aggregation code is never checked against itself. What each kind counts is
``detwatch.storage.AggregateRow``'s docstring; the per-image sums are added up here
image by image, in plain Python, where ingest groups arrays by (cell, image).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Final

import numpy as np
import pytest

from detwatch.contract.bins import area_edges, aspect_edges, confidence_edges, latency_edges_ms
from detwatch.contract.predictions import Prediction
from detwatch.storage import Storage

__all__ = ["PER_IMAGE_KINDS", "Cell", "Sums", "assert_cells_equal", "expected_cells", "stored_cells"]

HOUR_NS: Final = 3600 * 1_000_000_000
Cell = tuple[str, str, str, int, str, str]
"""(model_id, model_version, ab_variant, hour_unix, kind, key)."""
Sums = tuple[float, ...]
"""(count, value, value_sq, images, count_sq, image_value_sq, count_value, count_total) of a cell."""
PER_IMAGE_KINDS: Final = ("detections", "confidence_all", "box_log10_area", "box_log2_aspect")


def _plain(count: int, value: float, value_sq: float) -> Sums:
    return (count, value, value_sq, 0, 0.0, 0.0, 0.0, 0.0)


def _per_image(items: list[tuple[int, str, float]]) -> dict[str, Sums]:
    """Cells of one kind from ``(image, key, value)`` items, with the per-image sums added image by image."""
    out: dict[str, list[float]] = {}
    totals: dict[int, int] = defaultdict(int)
    for image, _, _ in items:
        totals[image] += 1
    per: dict[tuple[str, int], list[float]] = {}
    for image, key, value in items:
        cell = out.setdefault(key, [0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += value
        cell[2] += value * value
        entry = per.setdefault((key, image), [0, 0.0])
        entry[0] += 1
        entry[1] += value
    for (key, image), (n, s) in per.items():
        cell = out[key]
        cell[3] += 1
        cell[4] += n * n
        cell[5] += s * s
        cell[6] += n * s
        cell[7] += n * totals[image]
    return {key: tuple(v) for key, v in out.items()}


def _bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Bin index of each value for ascending ``edges`` (lower edge inclusive); out of range goes to the end bins."""
    return np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 2)


def _add_histogram(
    cells: dict[Cell, Sums], group: tuple[str, str, str, int], kind: str, prefix: str,
    bins: np.ndarray, values: np.ndarray,
) -> None:  # fmt: skip
    for b in np.unique(bins):
        chosen = values[bins == b]
        cells[(*group, kind, f"{prefix}{b}")] = _plain(int(chosen.size), float(chosen.sum()), float((chosen**2).sum()))


def expected_cells(events: Iterable[Prediction]) -> dict[Cell, Sums]:
    """The aggregate cells ``events`` must produce: their :data:`Sums` by cell.

    Binned with numpy against the bin *edges* (``detwatch.contract.bins.*_edges``), not with the
    bin functions the storage calls, so the two computations only share the definition.
    """
    unique = {e.prediction_id: e for e in events}.values()
    groups: dict[tuple[str, str, str, int], list[Prediction]] = defaultdict(list)
    for e in unique:
        hour = (e.time_unix_nano // HOUR_NS) * 3600
        groups[(e.model_id, e.model_version, e.ab_variant or "", hour)].append(e)
    cells: dict[Cell, Sums] = {}
    for group, members in groups.items():
        counts = np.array([len(e.detections) for e in members], dtype=float)
        cells[(*group, "images", "")] = _plain(len(members), float(counts.sum()), float((counts**2).sum()))
        if (counts == 0).any():
            cells[(*group, "empty_images", "")] = _plain(int((counts == 0).sum()), 0.0, 0.0)
        _add_histogram(cells, group, "image_detections", "", np.minimum(counts, 64).astype(int), counts)
        latencies = np.array([e.latency_ms for e in members if e.latency_ms is not None])
        if latencies.size:
            cells[(*group, "latency_ms_sum", "")] = _plain(
                int(latencies.size), float(latencies.sum()), float((latencies**2).sum()),
            )  # fmt: skip
            _add_histogram(cells, group, "latency_ms", "", _bins(latencies, latency_edges_ms()), latencies)
        # Per detection: class, confidence, relative area (nan when unknown), aspect ratio (nan for relative boxes).
        rows: list[tuple[str, float, float, float]] = []
        image_of: list[int] = []
        for image, e in enumerate(members):
            boxes = np.array([d.box for d in e.detections], dtype=float).reshape(-1, 4)
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            if e.image.width is not None and e.image.height is not None:
                area, aspect = w * h / (e.image.width * e.image.height), w / h
            elif boxes.size and boxes.min() >= 0.0 and boxes[:, 2:].max() <= 1.0:
                area, aspect = w * h, np.full(w.shape, np.nan)
            else:
                area, aspect = np.full(w.shape, np.nan), w / h
            rows += [(d.class_name, d.confidence, a, r) for d, a, r in zip(e.detections, area, aspect, strict=True)]
            image_of += [image] * len(e.detections)
        per_image: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        for i, (name, conf_value, a, r) in zip(image_of, rows, strict=True):
            per_image["detections"].append((i, name, conf_value))
            per_image["confidence_all"].append((i, "", conf_value))
            if not np.isnan(a) and a > 0:
                per_image["box_log10_area"].append((i, "", math.log10(a)))
            if not np.isnan(r):
                per_image["box_log2_aspect"].append((i, "", math.log2(r)))
        for kind, items in per_image.items():
            for key, sums in _per_image(items).items():
                cells[(*group, kind, key)] = sums
        ratios = np.array([r for *_, r in rows if not np.isnan(r)])
        if ratios.size:
            _add_histogram(cells, group, "aspect_ratio", "", _bins(ratios, aspect_edges()), ratios)
        for name in sorted({row[0] for row in rows}):
            conf = np.array([c for n, c, _, _ in rows if n == name])
            _add_histogram(cells, group, "confidence", f"{name}|", _bins(conf, confidence_edges()), conf)
            areas = np.array([a for n, _, a, _ in rows if n == name and not np.isnan(a)])
            if areas.size:
                _add_histogram(cells, group, "box_area", f"{name}|", _bins(areas, area_edges()), areas)
    return cells


def stored_cells(storage: Storage, model_id: str) -> dict[Cell, Sums]:
    """The aggregate cells the database holds for ``model_id``."""
    rows = storage.aggregates(model_id, 0, 2**62)
    return {
        (r.model_id, r.model_version, r.ab_variant, r.hour_unix, r.kind, r.key): (
            r.count,
            r.value,
            r.value_sq,
            r.images,
            r.count_sq,
            r.image_value_sq,
            r.count_value,
            r.count_total,
        )
        for r in rows
    }


def assert_cells_equal(actual: dict[Cell, Sums], expected: dict[Cell, Sums]) -> None:
    assert sorted(actual) == sorted(expected)
    for cell, sums in expected.items():
        assert actual[cell][0] == sums[0], cell
        assert actual[cell][3] == sums[3], cell
        assert actual[cell][1:] == pytest.approx(sums[1:], rel=1e-9, abs=1e-9), cell
