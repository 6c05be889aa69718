"""One drift report from two binned samples: the tests, the correction, the verdict.

:class:`PeriodSample` holds what the per-hour aggregate cells of one period add up
to; :func:`compare` runs every two-sample test the data allows, corrects them
together (Holm) and returns a :class:`DriftReport`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from .. import bins
from . import _statistics as st

__all__ = [
    "AggregateCell",
    "ClassDrift",
    "DriftConfig",
    "DriftReport",
    "Finding",
    "PeriodSample",
    "compare",
]

Status = Literal["drift", "no_drift", "insufficient_data"]
IntArray = NDArray[np.int64]

CONFIDENCE_CENTRES: tuple[float, ...] = tuple((i + 0.5) * bins.CONFIDENCE_WIDTH for i in range(bins.CONFIDENCE_BINS))
"""Confidence bin centres: Wasserstein distances in confidence units."""
AREA_CENTRES: tuple[float, ...] = tuple(
    bins.AREA_LOG10_MIN + (i + 0.5) / bins.AREA_PER_DECADE for i in range(bins.AREA_BINS)
)
"""Centres of the area bins in log10(relative area): Wasserstein distances in decades."""
ASPECT_CENTRES: tuple[float, ...] = tuple(
    -bins.ASPECT_LOG2_MAX + (i + 0.5) * bins.ASPECT_STEP for i in range(bins.ASPECT_BINS)
)
"""Centres of the aspect bins in log2(width / height): Wasserstein distances in octaves."""
DETECTION_CENTRES: tuple[float, ...] = tuple(float(i) for i in range(bins.DETECTIONS_OPEN_BIN + 1))
"""Detections per image; the open last bin (64 and more) counts as 64."""


class AggregateCell(Protocol):
    """What :meth:`PeriodSample.from_cells` reads of a stored cell (``AggregateRow`` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def value(self) -> float: ...


def _zeros(size: int) -> IntArray:
    return np.zeros(size, dtype=np.int64)


def _bin_index(text: str, size: int) -> int | None:
    try:
        index = int(text)
    except ValueError:
        return None
    return index if 0 <= index < size else None


@dataclass(frozen=True, eq=False)
class PeriodSample:
    """The binned data of one period (one side of a comparison), merged over its hours.

    ``detections_sq`` is the sum over images of (detections on the image)^2, which
    measures how clustered detections are (see :attr:`DriftConfig.intra_image_correlation`);
    0 means unknown, and it is then estimated from ``image_detections``.
    """

    images: int = 0
    empty_images: int = 0
    detections: int = 0
    detections_sq: float = 0.0
    classes: Mapping[str, int] = field(default_factory=dict)
    confidence: Mapping[str, IntArray] = field(default_factory=dict)
    image_detections: IntArray = field(default_factory=lambda: _zeros(bins.DETECTIONS_OPEN_BIN + 1))
    box_area: Mapping[str, IntArray] = field(default_factory=dict)
    aspect_ratio: IntArray = field(default_factory=lambda: _zeros(bins.ASPECT_BINS))

    @classmethod
    def from_cells(cls, cells: Iterable[AggregateCell]) -> PeriodSample:
        """Merge stored cells (any hours, versions, arms: filter before) into one sample.

        Cells of unknown kinds or with keys outside the fixed bins are ignored: a newer
        ingest may store more than this version reads.
        """
        # A report over months merges hundreds of thousands of hourly cells but only a few
        # hundred distinct (kind, key) pairs: sum per pair first, parse each key once.
        totals: dict[tuple[str, str], int] = {}
        images_value = images_sq = 0.0
        for cell in cells:
            pair = (cell.kind, cell.key)
            totals[pair] = totals.get(pair, 0) + int(cell.count)
            if pair[0] == "images":
                images_value += cell.value
                images_sq += float(getattr(cell, "value_sq", 0.0) or 0.0)
        images = empty = 0
        classes: dict[str, int] = {}
        confidence: dict[str, IntArray] = {}
        area: dict[str, IntArray] = {}
        per_image = _zeros(bins.DETECTIONS_OPEN_BIN + 1)
        aspect = _zeros(bins.ASPECT_BINS)
        for (kind, key), count in totals.items():
            if kind == "images":
                images += count
            elif kind == "empty_images":
                empty += count
            elif kind == "detections":
                classes[key] = classes.get(key, 0) + count
            elif kind in ("confidence", "box_area"):
                name, _, index_text = key.rpartition("|")
                size = bins.CONFIDENCE_BINS if kind == "confidence" else bins.AREA_BINS
                index = _bin_index(index_text, size)
                if index is None:
                    continue
                target = confidence if kind == "confidence" else area
                histogram = target.get(name)
                if histogram is None:
                    histogram = target[name] = _zeros(size)
                histogram[index] += count
            elif kind == "image_detections":
                index = _bin_index(key, bins.DETECTIONS_OPEN_BIN + 1)
                if index is not None:
                    per_image[index] += count
            elif kind == "aspect_ratio":
                index = _bin_index(key, bins.ASPECT_BINS)
                if index is not None:
                    aspect[index] += count
        detections, detections_sq = round(images_value), images_sq
        return cls(images, empty, detections, detections_sq, classes, confidence, per_image, area, aspect)

    def confidence_total(self) -> IntArray:
        total = _zeros(bins.CONFIDENCE_BINS)
        for histogram in self.confidence.values():
            total += histogram
        return total

    def area_total(self) -> IntArray:
        total = _zeros(bins.AREA_BINS)
        for histogram in self.box_area.values():
            total += histogram
        return total

    def dispersion(self) -> float | None:
        """Variance-to-mean ratio of detections per image (None when unknown or without detections)."""
        squares = self.detections_sq
        if squares <= 0.0 and self.image_detections.sum() > 0:
            squares = float(np.sum(self.image_detections * np.arange(self.image_detections.size) ** 2))
        if squares <= 0.0 or self.images < 2 or self.detections <= 0:
            return None
        mean = self.detections / self.images
        variance = (squares - self.images * mean**2) / (self.images - 1)
        return max(variance, 0.0) / mean

    def mean_cluster_size(self) -> float:
        """Detection-weighted mean number of detections per image, sum(m^2) / sum(m) (1 when unknown)."""
        if self.detections <= 0:
            return 1.0
        squares = self.detections_sq
        if squares <= 0.0 and self.image_detections.sum() > 0:
            squares = float(np.sum(self.image_detections * np.arange(self.image_detections.size) ** 2))
        if squares <= 0.0 and self.images > 0:
            squares = self.detections**2 / self.images  # as if every image had the mean
        return max(1.0, squares / self.detections)


@dataclass(frozen=True)
class DriftConfig:
    """The knobs of a report; the defaults and why are in :mod:`detwatch.drift`."""

    alpha: float = 0.05
    min_images: int = 30
    min_detections: int = 30
    min_jensen_shannon: float = 0.1
    min_ks: float = 0.1
    min_cohen_h: float = 0.2
    min_rate_ratio: float = 1.25
    intra_image_correlation: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "alpha": 0.0 < self.alpha < 1.0,
            "min_images": self.min_images >= 1,
            "min_detections": self.min_detections >= 1,
            "min_jensen_shannon": 0.0 <= self.min_jensen_shannon <= 1.0,
            "min_ks": 0.0 <= self.min_ks <= 1.0,
            "min_cohen_h": 0.0 <= self.min_cohen_h <= math.pi,
            "min_rate_ratio": 1.0 <= self.min_rate_ratio <= 1000.0,
            "intra_image_correlation": 0.0 <= self.intra_image_correlation <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: out of range ({getattr(self, name)!r})")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> DriftConfig:
        """From JSON options; raises ``ValueError`` whose message starts with the field's name."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name not in known:
                raise ValueError(f"{name}: unknown option (known: {', '.join(known)})")
            integer = name.startswith("min_") and name in ("min_images", "min_detections")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a number")
            if integer and (not float(value).is_integer() or not 1 <= value <= 2**31):
                raise ValueError(f"{name}: expected an integer from 1 to 2^31")
            values[name] = int(value) if integer else float(value)
        return cls(**values)


@dataclass(frozen=True)
class Finding:
    """One two-sample test of the report.

    ``kind`` is what was compared (``class_mix``, ``class_share``, ``class_rate``, ``confidence``,
    ``detections_per_image``, ``box_area``, ``aspect_ratio``, ``empty_rate``),
    ``subject`` the class for per-class tests ("" otherwise). ``effect`` is the
    distance the floor applies to, named by ``effect_method``; ``distances`` holds
    every distance computed (names and scales in :mod:`detwatch.drift`).
    ``p_adjusted`` is Holm's adjusted p-value across the whole report.
    ``significant`` means ``p_adjusted <= alpha`` *and* ``effect >= effect_floor``.
    """

    kind: str
    subject: str
    test: str
    statistic: float
    p_value: float
    effect_method: str
    effect: float
    effect_floor: float
    reference_n: int
    current_n: int
    distances: Mapping[str, float]
    p_adjusted: float = 1.0
    significant: bool = False


@dataclass(frozen=True)
class ClassDrift:
    """One class in both periods; ``contribution`` ranks ``affected_classes``.

    ``contribution`` is the class's part of the total variation distance between the
    reference and current joint distributions of (class, confidence bin) over
    detections: it grows when the class's share changes and when its confidences move,
    weighted by how common the class is, and the parts of all classes sum to that
    distance (0 to 1).
    """

    name: str
    reference_count: int
    current_count: int
    reference_share: float
    current_share: float
    contribution: float
    new: bool
    vanished: bool
    affected: bool


@dataclass(frozen=True)
class DriftReport:
    """The result of :func:`compare`; :meth:`to_json` is the API's answer (the seed's keys and more)."""

    status: Status
    significant_drift: bool
    class_drift: float | None
    confidence_drift: float | None
    count_drift: float | None
    affected_classes: tuple[str, ...]
    new_classes: tuple[str, ...]
    vanished_classes: tuple[str, ...]
    classes: tuple[ClassDrift, ...]
    findings: tuple[Finding, ...]
    insufficient: tuple[str, ...]
    reference: Mapping[str, Any]
    current: Mapping[str, Any]
    config: DriftConfig

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "significant_drift": self.significant_drift,
            "class_drift": self.class_drift,
            "confidence_drift": self.confidence_drift,
            "count_drift": self.count_drift,
            "affected_classes": list(self.affected_classes),
            "new_classes": list(self.new_classes),
            "vanished_classes": list(self.vanished_classes),
            "reference": dict(self.reference),
            "current": dict(self.current),
            "classes": [asdict(c) for c in self.classes],
            "tests": [{**asdict(f), "distances": dict(f.distances)} for f in self.findings],
            "insufficient": list(self.insufficient),
            "correction": "holm",
            "config": asdict(self.config),
        }


def _summary(sample: PeriodSample) -> dict[str, Any]:
    confidence = sample.confidence_total()
    n_conf = int(confidence.sum())
    return {
        "images": sample.images,
        "detections": sample.detections,
        "empty_images": sample.empty_images,
        "empty_rate": sample.empty_images / sample.images if sample.images else None,
        "detections_per_image": sample.detections / sample.images if sample.images else None,
        "mean_confidence_binned": float(np.dot(confidence, CONFIDENCE_CENTRES) / n_conf) if n_conf else None,
    }


def _deff(sample: PeriodSample, rho: float) -> float:
    return 1.0 + rho * (sample.mean_cluster_size() - 1.0)


def _distribution(
    kind: str,
    subject: str,
    pair: tuple[IntArray, IntArray],
    *,
    centres: tuple[float, ...],
    config: DriftConfig,
    deffs: tuple[float, float],
    psi: bool,
) -> Finding:
    a, b = pair
    d, p = st.kolmogorov_smirnov(a, b, deff_a=deffs[0], deff_b=deffs[1])
    distances = {"ks": d, "wasserstein": st.wasserstein(a, b, centres)}
    if psi:
        distances["psi"] = st.population_stability_index(a, b)
    return Finding(kind, subject, "ks_binned", d, p, "ks", d, config.min_ks, int(a.sum()), int(b.sum()), distances)


def _proportion(
    kind: str, subject: str, x: tuple[float, float], n: tuple[float, float], *, deffs: tuple[float, float], floor: float
) -> Finding:
    h = st.cohen_h(x[0] / n[0], x[1] / n[1])
    p = st.two_proportion_test(x[0] / deffs[0], n[0] / deffs[0], x[1] / deffs[1], n[1] / deffs[1])
    distances = {"cohen_h": abs(h), "difference": x[1] / n[1] - x[0] / n[0]}
    return Finding(kind, subject, "two_proportion", h, p, "cohen_h", abs(h), floor, int(n[0]), int(n[1]), distances)


def _rate(
    name: str, x: tuple[float, float], images: tuple[int, int], dispersion: float, config: DriftConfig
) -> Finding:
    z, p = st.rate_test(x[0], images[0], x[1], images[1], dispersion=dispersion)
    # Half a detection added to each side keeps the ratio finite for new and vanished classes.
    ratio = ((x[1] + 0.5) / images[1]) / ((x[0] + 0.5) / images[0])
    distances = {"rate_ratio": ratio, "reference_per_image": x[0] / images[0], "current_per_image": x[1] / images[1]}
    return Finding(
        "class_rate", name, "quasi_poisson_z", z, p, "log_rate_ratio", abs(math.log(ratio)),
        math.log(config.min_rate_ratio), images[0], images[1], distances,
    )  # fmt: skip


def compare(reference: PeriodSample, current: PeriodSample, config: DriftConfig | None = None) -> DriftReport:
    """Every test the two samples allow, Holm-corrected together, and the verdict."""
    config = config or DriftConfig()
    rho = config.intra_image_correlation
    deffs = (_deff(reference, rho), _deff(current, rho))
    names = sorted(set(reference.classes) | set(current.classes))
    ref_counts = np.array([reference.classes.get(c, 0) for c in names], dtype=np.int64)
    cur_counts = np.array([current.classes.get(c, 0) for c in names], dtype=np.int64)
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    findings: list[Finding] = []
    insufficient: list[str] = []

    def enough(what: str, unit: str, sizes: tuple[int, int], minimum: int) -> bool:
        for side, size in zip(("reference", "current"), sizes, strict=True):
            if size < minimum:
                insufficient.append(f"{what}: {size} {unit} in the {side} period, fewer than {minimum}")
                return False
        return True

    class_drift = st.jensen_shannon_distance(ref_counts, cur_counts) if n_ref and n_cur else None
    images_ok = enough("all tests", "images", (reference.images, current.images), config.min_images)
    detections_ok = images_ok and enough("detection tests", "detections", (n_ref, n_cur), config.min_detections)

    if detections_ok:
        chi = st.chi_square_homogeneity(ref_counts, cur_counts, deff=max(deffs))
        assert class_drift is not None
        distances = {"jensen_shannon": class_drift, "chi_square": chi.statistic, "pooled_classes": float(chi.pooled)}
        findings.append(
            Finding(
                "class_mix", "", "chi_square", chi.statistic, chi.p_value, "jensen_shannon", class_drift,
                config.min_jensen_shannon, n_ref, n_cur, distances,
            )
        )  # fmt: skip
        for name, a, b in zip(names, ref_counts, cur_counts, strict=True):
            if a + b >= config.min_detections:
                findings.append(
                    _proportion("class_share", name, (a, b), (n_ref, n_cur), deffs=deffs, floor=config.min_cohen_h)
                )
    if images_ok:
        # Detections of a class per image: the image is the unit, so a class that vanished
        # (no detection left in the current period) is still tested.
        dispersions = [d for d in (reference.dispersion(), current.dispersion()) if d is not None]
        dispersion = max(dispersions) if dispersions else 1.0
        for name, a, b in zip(names, ref_counts, cur_counts, strict=True):
            if a + b >= config.min_detections:
                findings.append(_rate(name, (a, b), (reference.images, current.images), dispersion, config))

    def distribution(
        kind: str, subject: str, pair: tuple[IntArray, IntArray], centres: tuple[float, ...], *, per_image: bool = False
    ) -> Finding:
        # Per-image counts have the image as their unit: no design effect there.
        return _distribution(
            kind, subject, pair, centres=centres, config=config, deffs=(1.0, 1.0) if per_image else deffs,
            psi=kind in ("confidence", "detections_per_image"),
        )  # fmt: skip

    def sizes(pair: tuple[IntArray, IntArray]) -> tuple[int, int]:
        return int(pair[0].sum()), int(pair[1].sum())

    confidence = (reference.confidence_total(), current.confidence_total())
    if detections_ok and enough("confidence", "detections", sizes(confidence), config.min_detections):
        findings.append(distribution("confidence", "", confidence, CONFIDENCE_CENTRES))
        for name in names:
            pair = (
                reference.confidence.get(name, _zeros(bins.CONFIDENCE_BINS)),
                current.confidence.get(name, _zeros(bins.CONFIDENCE_BINS)),
            )
            if min(sizes(pair)) >= config.min_detections:
                findings.append(distribution("confidence", name, pair, CONFIDENCE_CENTRES))
    per_image = (reference.image_detections, current.image_detections)
    if images_ok and enough("detections_per_image", "images", sizes(per_image), config.min_images):
        findings.append(distribution("detections_per_image", "", per_image, DETECTION_CENTRES, per_image=True))
    area = (reference.area_total(), current.area_total())
    if images_ok and enough("box_area", "boxes with an image size", sizes(area), config.min_detections):
        findings.append(distribution("box_area", "", area, AREA_CENTRES))
    aspect = (reference.aspect_ratio, current.aspect_ratio)
    if images_ok and enough("aspect_ratio", "boxes", sizes(aspect), config.min_detections):
        findings.append(distribution("aspect_ratio", "", aspect, ASPECT_CENTRES))
    if images_ok:
        empties = (float(reference.empty_images), float(current.empty_images))
        images = (float(reference.images), float(current.images))
        findings.append(_proportion("empty_rate", "", empties, images, deffs=(1.0, 1.0), floor=config.min_cohen_h))

    adjusted = st.holm([f.p_value for f in findings])
    findings = [
        _with_verdict(f, p_adjusted, p_adjusted <= config.alpha and f.effect >= f.effect_floor)
        for f, p_adjusted in zip(findings, adjusted, strict=True)
    ]
    affected = {f.subject for f in findings if f.significant and f.subject}
    contributions = _contributions(reference, current, names)
    classes = tuple(
        ClassDrift(
            name,
            int(a),
            int(b),
            float(a / n_ref) if n_ref else 0.0,
            float(b / n_cur) if n_cur else 0.0,
            contributions.get(name, 0.0),
            new=bool(a == 0 and b > 0),
            vanished=bool(a > 0 and b == 0),
            affected=name in affected,
        )
        for name, a, b in zip(names, ref_counts, cur_counts, strict=True)
    )
    ranked = sorted((c for c in classes if c.affected), key=lambda c: (-c.contribution, c.name))
    significant = any(f.significant for f in findings)
    status: Status = "insufficient_data" if not images_ok else "drift" if significant else "no_drift"
    return DriftReport(
        status=status,
        significant_drift=significant,
        class_drift=class_drift,
        confidence_drift=_headline(findings, "confidence"),
        count_drift=_headline(findings, "detections_per_image"),
        affected_classes=tuple(c.name for c in ranked),
        new_classes=tuple(c.name for c in classes if c.new),
        vanished_classes=tuple(c.name for c in classes if c.vanished),
        classes=classes,
        findings=tuple(findings),
        insufficient=tuple(insufficient),
        reference=_summary(reference),
        current=_summary(current),
        config=config,
    )


def _with_verdict(finding: Finding, p_adjusted: float, significant: bool) -> Finding:
    return replace(finding, p_adjusted=p_adjusted, significant=bool(significant))


def _headline(findings: list[Finding], kind: str) -> float | None:
    for finding in findings:
        if finding.kind == kind and not finding.subject:
            return finding.effect
    return None


def _contributions(reference: PeriodSample, current: PeriodSample, names: list[str]) -> dict[str, float]:
    """Each class's part of the total variation distance of the (class, confidence bin) distributions."""
    n_ref = sum(int(h.sum()) for h in reference.confidence.values())
    n_cur = sum(int(h.sum()) for h in current.confidence.values())
    if not n_ref or not n_cur:
        return {}
    empty = _zeros(bins.CONFIDENCE_BINS)
    return {
        name: 0.5
        * float(
            np.abs(reference.confidence.get(name, empty) / n_ref - current.confidence.get(name, empty) / n_cur).sum()
        )
        for name in names
    }
