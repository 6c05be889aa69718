"""Raw detections, binned here with :mod:`detwatch.contract.bins` as ingest bins them, for the drift tests.

The drift statistics read :class:`~detwatch.drift.PeriodSample` values; these helpers
build them from raw per-image detections (independently of the storage's ingest
code), and simulate streams of images whose truth is known: same generator for a
null comparison, a changed one for a shift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.drift import PeriodSample
from detwatch.stats.clustered import ImageSums

__all__ = [
    "Box", "Stream", "as_stored", "bin_images", "image_sums", "rounded", "simulate", "simulate_binned", "vector_bins",
    "vector_sums",
]  # fmt: skip


@dataclass(frozen=True)
class Box:
    """One detection: class, confidence, and the box's width and height relative to the image."""

    name: str
    confidence: float
    width: float
    height: float


def _sums(per_image: list[tuple[float, float, float, float]]) -> ImageSums:
    """Ratio sums from each image's (n_i, s_i, sum of squared values, N_i), added up image by image."""
    out = ImageSums()
    for n, s, squares, total in per_image:
        if n > 0:
            out = out + ImageSums(n, s, squares, 1, n * n, s * s, n * s, n * total)
    return out


def image_sums(images: Iterable[Sequence[Box]]) -> tuple[ImageSums, dict[str, ImageSums], ImageSums, ImageSums]:
    """The per-image sums of the stored kinds (``AggregateRow``), computed image by image in plain Python.

    Returns those of all confidences, of each class, of log10 areas and of log2 aspect ratios.
    """
    every: list[tuple[float, float, float, float]] = []
    area: list[tuple[float, float, float, float]] = []
    aspect: list[tuple[float, float, float, float]] = []
    classes: dict[str, list[tuple[float, float, float, float]]] = {}
    for image in images:
        m = len(image)
        confidences = [b.confidence for b in image]
        every.append((m, sum(confidences), sum(c * c for c in confidences), m))
        logs = [math.log10(b.width * b.height) for b in image if b.width * b.height > 0]
        area.append((len(logs), sum(logs), sum(x * x for x in logs), len(logs)))
        ratios = [math.log2(b.width / b.height) for b in image]
        aspect.append((len(ratios), sum(ratios), sum(x * x for x in ratios), len(ratios)))
        for name in {b.name for b in image}:
            own = [b.confidence for b in image if b.name == name]
            classes.setdefault(name, []).append((len(own), sum(own), sum(c * c for c in own), m))
    class_sums = {name: _sums(rows) for name, rows in classes.items()}
    return _sums(every), class_sums, _sums(area), _sums(aspect)


def bin_images(images: Iterable[Sequence[Box]]) -> PeriodSample:
    """The sample that per-hour cells of these images would add up to (cells per the aggregates spec)."""
    images = list(images)
    n_images = empty = detections = 0
    squares = 0.0
    classes: dict[str, int] = {}
    confidence: dict[str, NDArray[np.int64]] = {}
    area: dict[str, NDArray[np.int64]] = {}
    per_image = np.zeros(bins.DETECTIONS_OPEN_BIN + 1, dtype=np.int64)
    aspect = np.zeros(bins.ASPECT_BINS, dtype=np.int64)
    for image in images:
        n_images += 1
        m = len(image)
        detections += m
        squares += m * m
        empty += m == 0
        per_image[bins.detections_bin(m)] += 1
        for box in image:
            classes[box.name] = classes.get(box.name, 0) + 1
            confidence.setdefault(box.name, np.zeros(bins.CONFIDENCE_BINS, dtype=np.int64))[
                bins.confidence_bin(box.confidence)
            ] += 1
            area.setdefault(box.name, np.zeros(bins.AREA_BINS, dtype=np.int64))[
                bins.area_bin(box.width * box.height)
            ] += 1
            aspect[bins.aspect_bin(box.width, box.height)] += 1
    every, class_sums, area_sums, aspect_sums = image_sums(images)
    return PeriodSample(
        n_images, empty, detections, squares, classes, confidence, per_image, area, aspect,
        confidence_sums=every, class_sums=class_sums, area_sums=area_sums, aspect_sums=aspect_sums,
    )  # fmt: skip


@dataclass(frozen=True)
class Stream:
    """A generator of images: Poisson detections per image, a class mix, logit-normal confidences.

    ``image_sd`` is a per-image random effect on the confidence logit (a dark frame
    lowers every confidence on it): with ``confidence_sd`` 1 and ``image_sd`` 1/3,
    the intra-image correlation of the logits is 0.1.
    """

    classes: tuple[str, ...] = ("car", "person", "truck")
    shares: tuple[float, ...] = (0.6, 0.3, 0.1)
    mean_detections: float = 3.0
    extra_empty: float = 0.0
    confidence_logit: float = 1.5
    confidence_sd: float = 1.0
    image_sd: float = 1.0 / 3.0
    log10_area: float = -2.0
    log10_area_sd: float = 0.6


def simulate(stream: Stream, n_images: int, rng: np.random.Generator) -> list[list[Box]]:
    counts = rng.poisson(stream.mean_detections, size=n_images)
    counts[rng.random(n_images) < stream.extra_empty] = 0
    images: list[list[Box]] = []
    for m in counts:
        names = rng.choice(len(stream.classes), size=m, p=stream.shares)
        logits = stream.confidence_logit + rng.normal(0.0, stream.image_sd) + rng.normal(0.0, stream.confidence_sd, m)
        conf = 1.0 / (1.0 + np.exp(-logits))
        areas = 10.0 ** rng.normal(stream.log10_area, stream.log10_area_sd, m)
        ratios = 2.0 ** rng.normal(0.0, 0.7, m)
        widths, heights = np.sqrt(areas * ratios), np.sqrt(areas / ratios)
        images.append(
            [
                Box(stream.classes[k], float(c), float(w), float(h))
                for k, c, w, h in zip(names, conf, widths, heights, strict=True)
            ]
        )
    return images


def vector_bins(
    confidence: NDArray[np.float64], area: NDArray[np.float64], ratio: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """:mod:`detwatch.contract.bins`' confidence, area and aspect bins for arrays (checked equal to it in a test)."""
    conf_bin = np.clip((confidence / bins.CONFIDENCE_WIDTH).astype(np.int64), 0, bins.CONFIDENCE_BINS - 1)
    with np.errstate(divide="ignore"):
        area_bin = np.floor((np.log10(area) - bins.AREA_LOG10_MIN) * bins.AREA_PER_DECADE)
        aspect_bin = np.floor((np.log2(ratio) + bins.ASPECT_LOG2_MAX) / bins.ASPECT_STEP)
    area_bin = np.clip(np.nan_to_num(area_bin, neginf=0), 0, bins.AREA_BINS - 1).astype(np.int64)
    aspect_bin = np.clip(aspect_bin, 0, bins.ASPECT_BINS - 1).astype(np.int64)
    return conf_bin, area_bin, aspect_bin


def simulate_binned(stream: Stream, n_images: int, rng: np.random.Generator) -> PeriodSample:
    """:func:`simulate` then :func:`bin_images`, vectorised for large samples."""
    counts = rng.poisson(stream.mean_detections, size=n_images)
    counts[rng.random(n_images) < stream.extra_empty] = 0
    total = int(counts.sum())
    names = rng.choice(len(stream.classes), size=total, p=stream.shares)
    image_effect = np.repeat(rng.normal(0.0, stream.image_sd, n_images), counts)
    logits = stream.confidence_logit + image_effect + rng.normal(0.0, stream.confidence_sd, total)
    confidence = 1.0 / (1.0 + np.exp(-logits))
    area = 10.0 ** rng.normal(stream.log10_area, stream.log10_area_sd, total)
    ratio = 2.0 ** rng.normal(0.0, 0.7, total)
    conf_bin, area_bin, aspect_bin = vector_bins(confidence, area, ratio)
    image = np.repeat(np.arange(n_images), counts)
    classes: dict[str, int] = {}
    conf_tables: dict[str, NDArray[np.int64]] = {}
    area_tables: dict[str, NDArray[np.int64]] = {}
    class_sums: dict[str, ImageSums] = {}
    for k, name in enumerate(stream.classes):
        mask = names == k
        if mask.any():
            classes[name] = int(mask.sum())
            conf_tables[name] = np.bincount(conf_bin[mask], minlength=bins.CONFIDENCE_BINS).astype(np.int64)
            area_tables[name] = np.bincount(area_bin[mask], minlength=bins.AREA_BINS).astype(np.int64)
            class_sums[name] = vector_sums(image[mask], confidence[mask], n_images, counts)
    per_image = np.bincount(np.minimum(counts, bins.DETECTIONS_OPEN_BIN), minlength=bins.DETECTIONS_OPEN_BIN + 1)
    return PeriodSample(
        n_images,
        int((counts == 0).sum()),
        total,
        float(np.sum(counts.astype(np.float64) ** 2)),
        classes,
        conf_tables,
        per_image.astype(np.int64),
        area_tables,
        np.bincount(aspect_bin, minlength=bins.ASPECT_BINS).astype(np.int64),
        confidence_sums=vector_sums(image, confidence, n_images, counts),
        class_sums=class_sums,
        area_sums=vector_sums(image, np.log10(area), n_images, counts),
        aspect_sums=vector_sums(image, np.log2(ratio), n_images, counts),
    )


def vector_sums(
    image: NDArray[np.int64], values: NDArray[np.float64], images: int, total: NDArray[np.int64]
) -> ImageSums:
    """The ratio sums of ``values`` on their ``image``s; ``total`` is each image's detections (for shares)."""
    n = np.bincount(image, minlength=images).astype(np.float64)
    s = np.bincount(image, weights=values, minlength=images)
    return ImageSums(
        float(n.sum()), float(s.sum()), float((values**2).sum()), int((n > 0).sum()), float((n * n).sum()),
        float((s * s).sum()), float((n * s).sum()), float((n * total).sum()),
    )  # fmt: skip


def rounded(value: object) -> object:
    """``value`` with every float rounded to 9 significant digits (in nested lists and dicts too).

    Reports built from stored cells and from raw images agree up to round-off once
    per-image sums (added in another order) enter the design effects.
    """
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def as_stored(sample: PeriodSample, kinds: Iterable[str], *, value_sq: bool) -> PeriodSample:
    """``sample`` as a storage holding only aggregate ``kinds`` (and sums of squares or not) would return it.

    The storage's ingest gains kinds over time (image_detections, box_area and
    aspect_ratio came after the first four): tests that compare a report built from
    storage with one built from raw images compare like with like.
    """
    present = set(kinds)
    per_image = "confidence_all" in present
    return PeriodSample(
        sample.images,
        sample.empty_images,
        sample.detections,
        sample.detections_sq if value_sq else 0.0,
        sample.classes,
        sample.confidence,
        sample.image_detections if "image_detections" in present else np.zeros_like(sample.image_detections),
        sample.box_area if "box_area" in present else {},
        sample.aspect_ratio if "aspect_ratio" in present else np.zeros_like(sample.aspect_ratio),
        confidence_sums=sample.confidence_sums if per_image else ImageSums(),
        class_sums=sample.class_sums if per_image else {},
        area_sums=sample.area_sums if per_image else ImageSums(),
        aspect_sums=sample.aspect_sums if per_image else ImageSums(),
    )
