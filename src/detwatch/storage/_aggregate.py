"""Summing a batch of predictions into per-hour aggregate cells, vectorised.

What each kind counts is :class:`~detwatch.storage.AggregateRow`'s docstring; the
bins are :mod:`detwatch.contract.bins`. This runs on every ingested batch, and a loop over
detections in Python (about 45 cell updates and three logarithms per event of 10
detections) cost more than inserting the events; numpy does the same per batch in
a few array operations.

Cells of the kinds that keep per-image sums (``detections``, ``confidence_all``,
``box_log10_area``, ``box_log2_aspect``) also add, over the images of the batch, each
image's count in the cell and its value sum, squared and crossed: one more grouping
by (cell, image), so the cluster-robust variances of :mod:`detwatch.stats.clustered` merge
like the sums do.

The bin *definitions* stay in :mod:`detwatch.contract.bins`: the array versions here use its
constants, and a value whose scaled position lies within ``_EDGE`` of a bin edge
(where numpy's and the C library's logarithms may differ in the last bit) is
binned by the scalar function itself, so every value lands in exactly the bin
``detwatch.contract.bins`` gives it. tests/test_storage.py checks both against each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from detwatch.contract import bins
from detwatch.contract.predictions import Prediction

__all__ = [
    "AggregateKey",
    "BatchMeasures",
    "Cell",
    "aggregate_cells",
    "area_bins",
    "aspect_bins",
    "confidence_bins",
    "latency_bins",
]

AggregateKey = tuple[str, str, str, int, str, str]
"""(model_id, model_version, ab_variant, hour_unix, kind, key)."""
Cell = tuple[int, float, float, int, float, float, float, float]
"""(count, value, value_sq, images, count_sq, image_value_sq, count_value, count_total) of one aggregate cell.

The last five are the per-image sums of :class:`~detwatch.storage.AggregateRow`; 0 in
kinds that do not keep them."""

NS_PER_HOUR: Final = 3600 * 1_000_000_000
MIN_ASPECT: Final = 1e-12
MAX_ASPECT: Final = 1e12
"""Aspect ratios are clamped to these, so that a degenerate (valid but hair-thin) box cannot make a sum infinite."""
_EDGE: Final = 1e-9

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def _log_bins(values: Floats, scaled: Callable[[Floats], Floats], count: int, scalar: Callable[[float], int]) -> Ints:
    """``clip(floor(scaled(values)))``, values <= 0 in bin 0, near-edge values binned by ``scalar``."""
    out = np.zeros(values.shape, dtype=np.int64)
    positive = values > 0.0
    if positive.any():
        with np.errstate(divide="ignore"):
            position = scaled(values[positive])
        floor = np.floor(position)
        out[positive] = np.clip(floor, 0, count - 1).astype(np.int64)
        frac = position - floor
        near = np.flatnonzero(positive)[(frac < _EDGE) | (frac > 1.0 - _EDGE)]
        for i in near:
            out[i] = scalar(float(values[i]))
    return out


def confidence_bins(confidence: Floats) -> Ints:
    """:func:`detwatch.contract.bins.confidence_bin` of each value (the same division, truncated)."""
    return np.clip((confidence / bins.CONFIDENCE_WIDTH).astype(np.int64), 0, bins.CONFIDENCE_BINS - 1)


def area_bins(area: Floats) -> Ints:
    """:func:`detwatch.contract.bins.area_bin` of each value."""
    return _log_bins(
        area, lambda a: (np.log10(a) - bins.AREA_LOG10_MIN) * bins.AREA_PER_DECADE, bins.AREA_BINS, bins.area_bin
    )


def aspect_bins(ratio: Floats) -> Ints:
    """:func:`detwatch.contract.bins.aspect_bin` of each ratio ``w / h`` (as ``aspect_bin(ratio, 1.0)``)."""
    return _log_bins(
        ratio,
        lambda r: (np.log2(r) + bins.ASPECT_LOG2_MAX) / bins.ASPECT_STEP,
        bins.ASPECT_BINS,
        lambda r: bins.aspect_bin(r, 1.0),
    )


def latency_bins(latency_ms: Floats) -> Ints:
    """:func:`detwatch.contract.bins.latency_bin` of each value."""
    return _log_bins(
        latency_ms,
        lambda ms: (np.log10(ms) - bins.LATENCY_LOG10_MIN_MS) * bins.LATENCY_PER_DECADE,
        bins.LATENCY_BINS,
        bins.latency_bin,
    )


class _Cells:
    """Cells of one batch: groups (model, version, arm, hour) by index, classes by index."""

    def __init__(self, groups: list[tuple[str, str, str, int]], classes: list[str]) -> None:
        self.groups = groups
        self.classes = classes
        self.out: dict[AggregateKey, Cell] = {}

    def add(
        self,
        kind: str,
        group: Ints,
        values: Floats,
        bin_: Ints | None = None,
        cls: Ints | None = None,
        *,
        image: Ints | None = None,
    ) -> None:
        """Count ``values`` per (group, class, bin); a missing ``bin_``/``cls`` means the key has none.

        ``image`` (the batch's index of each value's image) asks for the per-image sums.
        """
        if not values.size:
            return
        nbins = int(bin_.max()) + 1 if bin_ is not None else 1
        nclasses = len(self.classes) if cls is not None else 1
        code = group * nclasses
        if cls is not None:
            code = code + cls
        code = code * nbins
        if bin_ is not None:
            code = code + bin_
        uniq, inverse = _distinct(code)
        counts = np.bincount(inverse)
        sums = np.bincount(inverse, weights=values)
        squares = np.bincount(inverse, weights=values * values)
        per_image = _per_image_sums(inverse, len(uniq), values, image)
        for u, n, v, q, extra in zip(
            uniq.tolist(), counts.tolist(), sums.tolist(), squares.tolist(), per_image, strict=True
        ):
            rest, b = divmod(u, nbins)
            g, c = divmod(rest, nclasses)
            name = self.classes[c] if cls is not None else ""
            if bin_ is None:
                key = name
            elif cls is not None:
                key = f"{name}|{b}"
            else:
                key = str(b)
            self.out[(*self.groups[g], kind, key)] = (int(n), float(v), float(q), *extra)


def _distinct(code: Ints) -> tuple[Ints, Ints]:
    """``np.unique(code, return_inverse=True)``; without sorting when the codes span a small range (the usual case)."""
    top = int(code.max()) + 1
    if top > 4 * code.size + 4096:
        uniq, inverse = np.unique(code, return_inverse=True)
        return uniq, inverse.reshape(-1)
    uniq = np.flatnonzero(np.bincount(code, minlength=top))
    index = np.zeros(top, dtype=np.int64)
    index[uniq] = np.arange(uniq.size)
    return uniq, index[code]


def _per_image_sums(
    cell: Ints, cells: int, values: Floats, image: Ints | None
) -> list[tuple[int, float, float, float, float]]:
    """Per cell: (images, sum n_i^2, sum s_i^2, sum n_i s_i, sum n_i N_i) over the images in it.

    ``n_i`` and ``s_i`` are image i's count and value sum in the cell, ``N_i`` its count
    in every cell of this kind (its detections, for the class shares).
    """
    if image is None:
        return [(0, 0.0, 0.0, 0.0, 0.0)] * cells
    width = int(image.max()) + 1
    code = cell * width + image  # one code per (cell, image)
    if cells * width <= 4 * code.size + 4096:
        # Few cells (the usual batch): count over every (cell, image) pair, no sort.
        full = np.bincount(code, minlength=cells * width)
        pair = np.flatnonzero(full)
        n_i = full[pair].astype(np.float64)
        s_i = np.bincount(code, weights=values, minlength=cells * width)[pair]
    else:
        pair, inverse = np.unique(code, return_inverse=True)
        n_i = np.bincount(inverse).astype(np.float64)
        s_i = np.bincount(inverse, weights=values)
    cell_of, image_of = pair // width, pair % width
    total_i = np.bincount(image, minlength=width).astype(np.float64)[image_of]
    images = np.bincount(cell_of, minlength=cells)
    sums = [np.bincount(cell_of, weights=w, minlength=cells) for w in (n_i * n_i, s_i * s_i, n_i * s_i, n_i * total_i)]
    return [
        (int(k), float(a), float(b), float(c), float(d))
        for k, a, b, c, d in zip(images.tolist(), *(x.tolist() for x in sums), strict=True)
    ]


def aggregate_cells(predictions: Sequence[Prediction]) -> dict[AggregateKey, Cell]:
    """Sum a batch into aggregate cells keyed ``(model_id, version, ab_variant, hour_unix, kind, key)``."""
    return BatchMeasures(predictions).cells(0, len(predictions))


class BatchMeasures:
    """What a batch contributes, per event and per detection, as arrays: summed by :meth:`cells` for any run of it.

    Ingest on SQLite stores a batch in several transactions, each with the cells of its
    own events; the per-detection work (reading the objects, the bins) is done once.
    """

    def __init__(self, predictions: Sequence[Prediction]) -> None:
        count = len(predictions)
        group_index: dict[tuple[str, str, str, int], int] = {}
        self.event_group = np.fromiter(
            (
                group_index.setdefault(
                    (p.model_id, p.model_version, p.ab_variant or "", p.time_unix_nano // NS_PER_HOUR * 3600),
                    len(group_index),
                )
                for p in predictions
            ),
            dtype=np.int64,
            count=count,
        )
        self.groups = list(group_index)
        n = np.fromiter((len(p.detections) for p in predictions), dtype=np.int64, count=count)
        self.n = n
        self.offsets = np.concatenate(([0], np.cumsum(n)))  # detections of event i: offsets[i]:offsets[i + 1]
        self.latency = np.fromiter(
            (np.nan if p.latency_ms is None else p.latency_ms for p in predictions), dtype=np.float64, count=count
        )
        has = ~np.isnan(self.latency)
        self.latency_bin = np.zeros(count, dtype=np.int64)
        self.latency_bin[has] = latency_bins(self.latency[has])
        detections = [d for p in predictions for d in p.detections]
        total = len(detections)
        class_index: dict[str, int] = {}
        self.cls = np.fromiter(
            (class_index.setdefault(d.class_name, len(class_index)) for d in detections), dtype=np.int64, count=total
        )
        self.classes = list(class_index)
        self.confidence = np.fromiter((d.confidence for d in detections), dtype=np.float64, count=total)
        self.confidence_bin = confidence_bins(self.confidence)
        box = np.fromiter(
            itertools.chain.from_iterable(d.box for d in detections), dtype=np.float64, count=4 * total
        ).reshape(-1, 4)
        event = np.repeat(np.arange(count), n)  # the event of each detection
        w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        image_area = np.fromiter(
            (
                float(p.image.width * p.image.height)
                if p.image.width is not None and p.image.height is not None
                else 0.0
                for p in predictions
            ),
            dtype=np.float64,
            count=count,
        )[event]
        # Relative boxes: an event without an image size whose boxes all lie within [0, 1].
        outside = (box[:, :2].min(axis=1) < 0.0) | (box[:, 2:].max(axis=1) > 1.0)
        event_outside = np.bincount(event, weights=outside, minlength=count) > 0
        relative = (image_area == 0.0) & ~event_outside[event]
        sized = image_area > 0.0
        self.area = np.full(total, np.nan)  # nan: no area (size unknown, boxes in pixels)
        self.area[relative] = w[relative] * h[relative]
        self.area[sized] = w[sized] * h[sized] / image_area[sized]
        self.area_bin = np.zeros(total, dtype=np.int64)
        with_area = ~np.isnan(self.area)
        self.area_bin[with_area] = area_bins(self.area[with_area])
        self.ratio = np.full(total, np.nan)  # nan: relative boxes have no shape
        pixels = ~relative
        with np.errstate(over="ignore", under="ignore"):  # clamped just below
            self.ratio[pixels] = np.clip(w[pixels] / h[pixels], MIN_ASPECT, MAX_ASPECT)
        self.ratio_bin = np.zeros(total, dtype=np.int64)
        self.ratio_bin[pixels] = aspect_bins(self.ratio[pixels])

    def cells(self, start: int, stop: int) -> dict[AggregateKey, Cell]:
        """The cells of events ``start`` to ``stop`` (excluded)."""
        cells = _Cells(self.groups, self.classes)
        group = self.event_group[start:stop]
        n = self.n[start:stop]
        nf = n.astype(np.float64)
        cells.add("images", group, nf)
        cells.add("image_detections", group, nf, bin_=np.minimum(n, bins.DETECTIONS_OPEN_BIN))
        empty = n == 0
        cells.add("empty_images", group[empty], np.zeros(int(empty.sum())))
        latency = self.latency[start:stop]
        has = ~np.isnan(latency)
        cells.add("latency_ms_sum", group[has], latency[has])
        cells.add("latency_ms", group[has], latency[has], bin_=self.latency_bin[start:stop][has])
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        if last > first:
            d_group = np.repeat(group, n)
            image = np.repeat(np.arange(stop - start), n)  # the image of each detection
            cls = self.cls[first:last]
            confidence = self.confidence[first:last]
            cells.add("detections", d_group, confidence, cls=cls, image=image)
            cells.add("confidence_all", d_group, confidence, image=image)
            cells.add("confidence", d_group, confidence, bin_=self.confidence_bin[first:last], cls=cls)
            area = self.area[first:last]
            with_area = ~np.isnan(area)
            cells.add(
                "box_area",
                d_group[with_area],
                area[with_area],
                bin_=self.area_bin[first:last][with_area],
                cls=cls[with_area],
            )
            positive = with_area & (area > 0.0)  # a zero-area box has no logarithm: left out
            cells.add("box_log10_area", d_group[positive], np.log10(area[positive]), image=image[positive])
            ratio = self.ratio[first:last]
            pixels = ~np.isnan(ratio)
            cells.add("aspect_ratio", d_group[pixels], ratio[pixels], bin_=self.ratio_bin[first:last][pixels])
            cells.add("box_log2_aspect", d_group[pixels], np.log2(ratio[pixels]), image=image[pixels])
        return cells.out
