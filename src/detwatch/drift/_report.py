"""One drift report from two binned samples: the tests, the correction, the verdict.

:class:`PeriodSample` holds what the per-hour aggregate cells of one period add up
to; :func:`compare` runs every two-sample test the data allows, corrects them
together (Holm) and returns a :class:`DriftReport`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from detwatch.contract import bins
from detwatch.drift import _statistics as st
from detwatch.stats.clustered import ImageSums, rao_scott_deff
from detwatch.stats.contingency import chi_square_homogeneity
from detwatch.stats.multiple_testing import holm
from detwatch.stats.proportions import two_proportion_test

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


_NONE = ImageSums()


@dataclass(frozen=True, eq=False)
class PeriodSample:
    """The binned data of one period (one side of a comparison), merged over its hours.

    ``detections_sq`` is the sum over images of (detections on the image)^2; 0 means
    unknown, and it is then estimated from ``image_detections``. The per-image sums
    (:mod:`detwatch.stats.clustered`) measure how detections of one image move together:
    ``confidence_sums`` of all confidences, ``class_sums`` of each class's detections,
    ``area_sums`` of log10 box areas, ``aspect_sums`` of log2 aspect ratios. Detections
    without them (cells stored before they existed, samples built by hand) count as
    independent, and the report says so.
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
    confidence_sums: ImageSums = _NONE
    class_sums: Mapping[str, ImageSums] = field(default_factory=dict)
    area_sums: ImageSums = _NONE
    aspect_sums: ImageSums = _NONE

    @classmethod
    def from_cells(cls, cells: Iterable[AggregateCell]) -> PeriodSample:
        """Merge stored cells (any hours, versions, arms: filter before) into one sample.

        Cells of unknown kinds or with keys outside the fixed bins are ignored: a newer
        ingest may store more than this version reads.
        """
        # A report over months merges hundreds of thousands of hourly cells but only a few
        # hundred distinct (kind, key) pairs: sum per pair first, parse each key once.
        totals: dict[tuple[str, str], int] = {}
        per_image: dict[tuple[str, str], ImageSums] = {}
        images_value = images_sq = 0.0
        for cell in cells:
            pair = (cell.kind, cell.key)
            totals[pair] = totals.get(pair, 0) + int(cell.count)
            if pair[0] == "images":
                images_value += cell.value
                images_sq += float(getattr(cell, "value_sq", 0.0) or 0.0)
            elif pair[0] in _PER_IMAGE_KINDS:
                per_image[pair] = per_image.get(pair, _NONE) + _image_sums(cell)
        images = empty = 0
        classes: dict[str, int] = {}
        confidence: dict[str, IntArray] = {}
        area: dict[str, IntArray] = {}
        image_detections = _zeros(bins.DETECTIONS_OPEN_BIN + 1)
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
                    image_detections[index] += count
            elif kind == "aspect_ratio":
                index = _bin_index(key, bins.ASPECT_BINS)
                if index is not None:
                    aspect[index] += count
        detections, detections_sq = round(images_value), images_sq
        return cls(
            images, empty, detections, detections_sq, classes, confidence, image_detections, area, aspect,
            confidence_sums=per_image.get(("confidence_all", ""), _NONE),
            class_sums={key: sums for (kind, key), sums in per_image.items() if kind == "detections"},
            area_sums=per_image.get(("box_log10_area", ""), _NONE),
            aspect_sums=per_image.get(("box_log2_aspect", ""), _NONE),
        )  # fmt: skip

    def clustered_confidence(self) -> ImageSums:
        """All confidences with their per-image sums; detections without them as independent ones.

        Where no cell of a class kept per-image sums, the class's detections are the
        missing ones (their values from the class cells' sums).
        """
        every = self.confidence_sums
        missing = sum(self.classes.values()) - round(every.count)
        if missing <= 0:
            return every
        legacy = ImageSums.total(s for s in self.class_sums.values() if s.independent > 0)
        value = legacy.value if round(legacy.count) == missing else 0.0
        squares = legacy.value_sq if round(legacy.count) == missing else 0.0
        return every + ImageSums.independent_items(missing, value, squares)

    def class_share(self, name: str) -> ImageSums:
        """The ratio sums of ``name``'s share of all detections (independent where not measured)."""
        sums = self.class_sums.get(name)
        if sums is None:
            count = self.classes.get(name, 0)
            sums = ImageSums.independent_items(count, 0.0, 0.0) if count else _NONE
        return sums.share_of(self.clustered_confidence())

    def unmeasured(self) -> int:
        """Detections counted without per-image sums: their variances assume independence."""
        return max(0, sum(self.classes.values()) - round(self.confidence_sums.count))

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
    intra_image_correlation: float = 0.0
    """A floor under the *measured* intra-image correlation (0: the measured one alone)."""

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
    ``reference_effective_n`` and ``current_effective_n`` are what the test's evidence is
    worth in independent units (``n`` over the measured design effect for detection-level
    tests, images for image-level ones); ``variance_assumes_independence`` is true
    when some of its detections had no per-image sums (stored before they existed).
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
    reference_effective_n: float | None = None
    current_effective_n: float | None = None
    variance_assumes_independence: bool = False


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
    clustered = sample.clustered_confidence()
    return {
        "intra_image_correlation": clustered.correlation if clustered.count else None,
        "effective_detections": clustered.effective_size if clustered.count else None,
        "detections_assumed_independent": sample.unmeasured(),
        "images": sample.images,
        "detections": sample.detections,
        "empty_images": sample.empty_images,
        "empty_rate": sample.empty_images / sample.images if sample.images else None,
        "detections_per_image": sample.detections / sample.images if sample.images else None,
        "mean_confidence_binned": float(np.dot(confidence, CONFIDENCE_CENTRES) / n_conf) if n_conf else None,
    }


def _floor(sample: PeriodSample, rho: float) -> float:
    """The design effect of the configured floor correlation (1 at the default 0)."""
    return 1.0 + rho * (sample.mean_cluster_size() - 1.0)


def _measured(sums: ImageSums, count: float) -> tuple[float, bool]:
    """The design effect of ``count`` items described in part by ``sums``, and whether some are taken as independent.

    Items beyond those ``sums`` counts (stored without per-image sums) are independent:
    effective sizes add, so the design effect is ``count / (n_sums / deff + n_rest)``.
    """
    if count <= 0:
        return 1.0, False
    covered = min(float(count), sums.count)
    rest = count - covered
    effective = (covered / sums.design_effect if covered > 0 else 0.0) + rest
    deff = max(1.0, count / effective) if effective > 0 else 1.0
    return deff, rest >= 0.5 or sums.independent > 0


Deffs = tuple[tuple[float, bool], tuple[float, bool]]
"""Each side's design effect, and whether some of its detections are taken as independent."""
_UNIT: Deffs = ((1.0, False), (1.0, False))


def _evidence(finding: Finding, deffs: Deffs) -> Finding:
    return replace(
        finding,
        reference_effective_n=finding.reference_n / deffs[0][0],
        current_effective_n=finding.current_n / deffs[1][0],
        variance_assumes_independence=deffs[0][1] or deffs[1][1],
    )


def _distribution(
    kind: str,
    subject: str,
    pair: tuple[IntArray, IntArray],
    *,
    centres: tuple[float, ...],
    config: DriftConfig,
    deffs: Deffs,
    psi: bool,
) -> Finding:
    a, b = pair
    d, p = st.kolmogorov_smirnov(a, b, deff_a=deffs[0][0], deff_b=deffs[1][0])
    distances = {"ks": d, "wasserstein": st.wasserstein(a, b, centres)}
    if psi:
        distances["psi"] = st.population_stability_index(a, b)
    finding = Finding(kind, subject, "ks_binned", d, p, "ks", d, config.min_ks, int(a.sum()), int(b.sum()), distances)
    return _evidence(finding, deffs)


def _proportion(
    kind: str, subject: str, x: tuple[float, float], n: tuple[float, float], *, deffs: Deffs, floor: float
) -> Finding:
    h = st.cohen_h(x[0] / n[0], x[1] / n[1])
    (da, _), (db, _) = deffs
    p = two_proportion_test(x[0] / da, n[0] / da, x[1] / db, n[1] / db).p_value
    distances = {"cohen_h": abs(h), "difference": x[1] / n[1] - x[0] / n[0]}
    finding = Finding(kind, subject, "two_proportion", h, p, "cohen_h", abs(h), floor, int(n[0]), int(n[1]), distances)
    return _evidence(finding, deffs)


def _rate(
    name: str, x: tuple[float, float], images: tuple[int, int], dispersion: float, config: DriftConfig
) -> Finding:
    z, p = st.rate_test(x[0], images[0], x[1], images[1], dispersion=dispersion)
    # Half a detection added to each side keeps the ratio finite for new and vanished classes.
    ratio = ((x[1] + 0.5) / images[1]) / ((x[0] + 0.5) / images[0])
    distances = {
        "rate_ratio": ratio, "reference_per_image": x[0] / images[0], "current_per_image": x[1] / images[1],
        "dispersion": dispersion,
    }  # fmt: skip
    return Finding(
        "class_rate", name, "quasi_poisson_z", z, p, "log_rate_ratio", abs(math.log(ratio)),
        math.log(config.min_rate_ratio), images[0], images[1], distances,
        reference_effective_n=float(images[0]), current_effective_n=float(images[1]),
    )  # fmt: skip


def _of_share(sample: PeriodSample, name: str) -> tuple[ImageSums, float]:
    share = sample.class_share(name)
    return share, share.count


def _of_class_confidence(sample: PeriodSample, name: str) -> tuple[ImageSums, float]:
    return sample.class_sums.get(name, _NONE), float(sample.confidence.get(name, _zeros(1)).sum())


def _class_dispersion(sample: PeriodSample, name: str) -> float | None:
    """Variance-to-mean ratio of the class's detections per image, from its per-image sums (None if unknown)."""
    sums = sample.class_sums.get(name)
    if sums is None or sums.independent > 0 or sample.images < 2 or sums.count <= 0:
        return None
    per_image = sums.per_image(sample.images)
    return per_image.variance_robust * sample.images**2 / sums.count


def compare(reference: PeriodSample, current: PeriodSample, config: DriftConfig | None = None) -> DriftReport:
    """Every test the two samples allow, Holm-corrected together, and the verdict."""
    run = _Comparison(reference, current, config or DriftConfig())
    findings = [*run.class_mix_findings(), *run.class_rate_findings(), *run.distribution_findings()]
    findings.extend(run.empty_rate_findings())
    adjusted = holm([f.p_value for f in findings])
    findings = [
        _with_verdict(f, p_adjusted, p_adjusted <= run.config.alpha and f.effect >= f.effect_floor)
        for f, p_adjusted in zip(findings, adjusted, strict=True)
    ]
    return run.report(findings)


class _Comparison:
    """The two samples, the class names and counts every test reads, and the tests' shortfalls."""

    def __init__(self, reference: PeriodSample, current: PeriodSample, config: DriftConfig) -> None:
        self.reference, self.current, self.config = reference, current, config
        rho = config.intra_image_correlation
        self.floors = (_floor(reference, rho), _floor(current, rho))
        self.names = sorted(set(reference.classes) | set(current.classes))
        self.ref_counts = np.array([reference.classes.get(c, 0) for c in self.names], dtype=np.int64)
        self.cur_counts = np.array([current.classes.get(c, 0) for c in self.names], dtype=np.int64)
        self.n_ref, self.n_cur = int(self.ref_counts.sum()), int(self.cur_counts.sum())
        self.insufficient: list[str] = []
        self.class_drift = (
            st.jensen_shannon_distance(self.ref_counts, self.cur_counts) if self.n_ref and self.n_cur else None
        )
        self.images_ok = self.enough("all tests", "images", (reference.images, current.images), config.min_images)
        self.detections_ok = self.images_ok and self.enough(
            "detection tests", "detections", (self.n_ref, self.n_cur), config.min_detections
        )

    def enough(self, what: str, unit: str, sizes: tuple[int, int], minimum: int) -> bool:
        """Whether both sides reach ``minimum``; the first that does not is recorded as a shortfall."""
        for side, size in zip(("reference", "current"), sizes, strict=True):
            if size < minimum:
                self.insufficient.append(f"{what}: {size} {unit} in the {side} period, fewer than {minimum}")
                return False
        return True

    def deffs(self, of: Callable[[PeriodSample], tuple[ImageSums, float]]) -> Deffs:
        """Each side's measured design effect of what ``of`` picks (sums, count), never below the floor."""
        (d_ref, i_ref), (d_cur, i_cur) = _measured(*of(self.reference)), _measured(*of(self.current))
        return (max(d_ref, self.floors[0]), i_ref), (max(d_cur, self.floors[1]), i_cur)

    def tested_classes(self) -> list[tuple[str, int, int]]:
        """The classes with enough detections in both periods together to be tested on their own."""
        return [
            (name, int(a), int(b))
            for name, a, b in zip(self.names, self.ref_counts, self.cur_counts, strict=True)
            if a + b >= self.config.min_detections
        ]

    def class_mix_findings(self) -> list[Finding]:
        """The class mix (chi-square, Rao-Scott corrected) and each class's share of the detections."""
        if not self.detections_ok:
            return []
        reference, current, config = self.reference, self.current, self.config
        shares = ([reference.class_share(c) for c in self.names], [current.class_share(c) for c in self.names])
        mix_deff = max(rao_scott_deff(*shares), *self.floors)
        independent = reference.unmeasured() + current.unmeasured() > 0
        mix_deffs: Deffs = ((mix_deff, independent), (mix_deff, independent))
        chi = chi_square_homogeneity(self.ref_counts, self.cur_counts, deff=mix_deff)
        assert self.class_drift is not None
        distances = {
            "jensen_shannon": self.class_drift, "chi_square": chi.statistic, "pooled_classes": float(chi.pooled),
        }  # fmt: skip
        mix = Finding(
            "class_mix", "", "chi_square", chi.statistic, chi.p_value, "jensen_shannon", self.class_drift,
            config.min_jensen_shannon, self.n_ref, self.n_cur, distances,
        )  # fmt: skip
        findings = [_evidence(mix, mix_deffs)]
        for name, a, b in self.tested_classes():
            share_deffs = self.deffs(functools.partial(_of_share, name=name))
            pair = (self.n_ref, self.n_cur)
            findings.append(_proportion("class_share", name, (a, b), pair, deffs=share_deffs, floor=config.min_cohen_h))
        return findings

    def class_rate_findings(self) -> list[Finding]:
        """Detections of each class per image.

        The image is the unit, so a class that vanished (no detection left in the current
        period) is still tested. The dispersion is the class's own, measured from its
        per-image sums; where they are missing, that of all detections per image.
        """
        if not self.images_ok:
            return []
        reference, current = self.reference, self.current
        dispersions = [d for d in (reference.dispersion(), current.dispersion()) if d is not None]
        overall = max(dispersions) if dispersions else 1.0
        findings = []
        for name, a, b in self.tested_classes():
            own = [_class_dispersion(sample, name) for sample in (reference, current)]
            dispersion = overall if None in own else max(d for d in own if d is not None)
            findings.append(_rate(name, (a, b), (reference.images, current.images), dispersion, self.config))
        return findings

    def _distribution(
        self, kind: str, subject: str, pair: tuple[IntArray, IntArray], centres: tuple[float, ...], *, unit: Deffs
    ) -> Finding:
        # Per-image counts have the image as their unit: no design effect there. Binned
        # distributions of detections take the design effect of their mean (see the package).
        return _distribution(
            kind, subject, pair, centres=centres, config=self.config, deffs=unit,
            psi=kind in ("confidence", "detections_per_image"),
        )  # fmt: skip

    def distribution_findings(self) -> list[Finding]:
        """Binned distributions: confidence (overall and per class), detections per image, box area, aspect ratio."""
        reference, current, config = self.reference, self.current, self.config
        findings: list[Finding] = []
        confidence = (reference.confidence_total(), current.confidence_total())
        if self.detections_ok and self.enough("confidence", "detections", _sizes(confidence), config.min_detections):
            unit = self.deffs(lambda s: (s.clustered_confidence(), int(s.confidence_total().sum())))
            findings.append(self._distribution("confidence", "", confidence, CONFIDENCE_CENTRES, unit=unit))
            for name in self.names:
                pair = (
                    reference.confidence.get(name, _zeros(bins.CONFIDENCE_BINS)),
                    current.confidence.get(name, _zeros(bins.CONFIDENCE_BINS)),
                )
                if min(_sizes(pair)) >= config.min_detections:
                    unit = self.deffs(functools.partial(_of_class_confidence, name=name))
                    findings.append(self._distribution("confidence", name, pair, CONFIDENCE_CENTRES, unit=unit))
        if not self.images_ok:
            return findings
        per_image = (reference.image_detections, current.image_detections)
        if self.enough("detections_per_image", "images", _sizes(per_image), config.min_images):
            findings.append(self._distribution("detections_per_image", "", per_image, DETECTION_CENTRES, unit=_UNIT))
        area = (reference.area_total(), current.area_total())
        if self.enough("box_area", "boxes with an image size", _sizes(area), config.min_detections):
            unit = self.deffs(lambda s: (s.area_sums, int(s.area_total().sum())))
            findings.append(self._distribution("box_area", "", area, AREA_CENTRES, unit=unit))
        aspect = (reference.aspect_ratio, current.aspect_ratio)
        if self.enough("aspect_ratio", "boxes", _sizes(aspect), config.min_detections):
            unit = self.deffs(lambda s: (s.aspect_sums, int(s.aspect_ratio.sum())))
            findings.append(self._distribution("aspect_ratio", "", aspect, ASPECT_CENTRES, unit=unit))
        return findings

    def empty_rate_findings(self) -> list[Finding]:
        """The share of images without a detection."""
        if not self.images_ok:
            return []
        empties = (float(self.reference.empty_images), float(self.current.empty_images))
        images = (float(self.reference.images), float(self.current.images))
        return [_proportion("empty_rate", "", empties, images, deffs=_UNIT, floor=self.config.min_cohen_h)]

    def class_breakdown(self, findings: list[Finding]) -> tuple[ClassDrift, ...]:
        """Each class's counts, shares and contribution, and whether a significant finding names it."""
        affected = {f.subject for f in findings if f.significant and f.subject}
        contributions = _contributions(self.reference, self.current, self.names)
        n_ref, n_cur = self.n_ref, self.n_cur
        return tuple(
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
            for name, a, b in zip(self.names, self.ref_counts, self.cur_counts, strict=True)
        )

    def report(self, findings: list[Finding]) -> DriftReport:
        """The report of the corrected ``findings``: verdict, headlines, classes, shortfalls."""
        classes = self.class_breakdown(findings)
        ranked = sorted((c for c in classes if c.affected), key=lambda c: (-c.contribution, c.name))
        significant = any(f.significant for f in findings)
        status: Status = "insufficient_data" if not self.images_ok else "drift" if significant else "no_drift"
        return DriftReport(
            status=status,
            significant_drift=significant,
            class_drift=self.class_drift,
            confidence_drift=_headline(findings, "confidence"),
            count_drift=_headline(findings, "detections_per_image"),
            affected_classes=tuple(c.name for c in ranked),
            new_classes=tuple(c.name for c in classes if c.new),
            vanished_classes=tuple(c.name for c in classes if c.vanished),
            classes=classes,
            findings=tuple(findings),
            insufficient=tuple(self.insufficient),
            reference=_summary(self.reference),
            current=_summary(self.current),
            config=self.config,
        )


def _sizes(pair: tuple[IntArray, IntArray]) -> tuple[int, int]:
    return int(pair[0].sum()), int(pair[1].sum())


_PER_IMAGE_KINDS = ("detections", "confidence_all", "box_log10_area", "box_log2_aspect")


def _image_sums(cell: AggregateCell) -> ImageSums:
    """A cell's per-image sums (a cell without them, or an object without the columns, as independent items)."""
    columns = ("value_sq", "images", "count_sq", "image_value_sq", "count_value", "count_total")
    return ImageSums.from_columns(cell.count, cell.value, *(float(getattr(cell, c, 0.0) or 0.0) for c in columns))


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
