"""Variances that take the image as the unit of evidence, from mergeable per-image sums.

Why: the detections of one image move together. A dark frame lowers every confidence
on it, a crowded street brings many boxes of one class, one camera sizes all its
boxes alike. A test that treats a thousand detections on a hundred images as a
thousand independent draws has a variance several times too small, and its
p-values declare winners and drift on traffic where nothing changed (measured: an
A/A test declared a winner in a quarter of runs at alpha 0.05).

Which statistic: a per-detection mean (mean confidence, a class's share of the
detections, the mean log box area) is a *ratio* of two per-image totals,
``r = sum_i s_i / sum_i n_i`` with ``n_i`` the image's detections counted and
``s_i`` the sum of their values. Its variance, with the image as the independent
unit whatever happens within an image, is the cluster-robust (linearisation,
delta-method) variance of a ratio estimator::

    V = G / (G - 1) * sum_i (s_i - r n_i)**2 / (sum_i n_i)**2
      = G / (G - 1) * (S2 - 2 r NS + r**2 N2) / N**2

where ``G`` is the number of images, ``N = sum n_i``, ``N2 = sum n_i**2``, ``S2 =
sum s_i**2`` and ``NS = sum n_i s_i``. Every term is a sum over images, so it is
stored in the aggregate cells (``images``, ``count_sq``, ``image_value_sq``,
``count_value``: see :class:`detwatch.storage.AggregateRow`) and merges across
hours, replicas, days and compaction by addition. It is what statsmodels reports
as the cluster-robust standard error of the mean (OLS on a constant, ``cov_type=
"cluster"``, groups the images); the tests check both. A class's share is the same
ratio with ``s_i`` the image's detections of the class and ``n_i`` all its
detections, which needs ``sum n_ci N_i`` (``count_total``); a class's detections per
image is the mean of ``n_ci`` over all images (the image *is* the unit there).

We kept per-detection quantities, not per-image means (the mean over images of each
image's mean confidence): the user guide reports per-detection means and shares, the
ratio estimator is exactly that quantity with an honest variance, and a per-image
mean would weigh an image with one box like one with fifty.

The *design effect* ``deff = V / V_independent`` says how much clustering inflates
the variance; ``N / deff`` is the **effective sample size** (the number of independent
detections the evidence is worth), and ``(deff - 1) / (m - 1)``, with ``m = N2 / N``
the detection-weighted mean detections per image, the measured intra-image
correlation (Kish). Variances used in tests are never below the independent one
(:attr:`ImageSums.variance`): a negative intra-image correlation is not a real
feature of detections, and an estimate below independence would only be noise
making p-values smaller.

Cells written before the per-image sums existed (schema version 6) have ``images``
0: their items are taken as independent (each its own image, which makes ``V`` the
independent variance), and :attr:`ImageSums.independent` counts them so that reports
can say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

__all__ = ["CellSums", "ImageSums", "rao_scott_deff"]


class CellSums(Protocol):
    """What :meth:`ImageSums.of` reads of a stored cell (``detwatch.storage.AggregateRow`` has it)."""

    @property
    def count(self) -> int: ...
    @property
    def value(self) -> float: ...
    @property
    def value_sq(self) -> float: ...
    @property
    def images(self) -> int: ...
    @property
    def count_sq(self) -> float: ...
    @property
    def image_value_sq(self) -> float: ...
    @property
    def count_value(self) -> float: ...
    @property
    def count_total(self) -> float: ...


@dataclass(frozen=True)
class ImageSums:
    """Sums over images of one ratio estimator; they add up like the cells they come from.

    ``count`` (N), ``value`` and ``value_sq`` are per item (detection); ``images`` (G),
    ``count_sq`` (sum n_i^2), ``image_value_sq`` (sum s_i^2), ``count_value`` (sum
    n_i s_i) and ``count_total`` (sum n_i N_i) per image. ``independent`` counts the
    items whose cells had no per-image sums (taken as one image each).
    """

    count: float = 0.0
    value: float = 0.0
    value_sq: float = 0.0
    images: int = 0
    count_sq: float = 0.0
    image_value_sq: float = 0.0
    count_value: float = 0.0
    count_total: float = 0.0
    independent: float = 0.0

    @classmethod
    def of(cls, cell: CellSums) -> ImageSums:
        """One stored cell's sums; a cell without per-image sums as independent items."""
        return cls.from_columns(
            cell.count, cell.value, cell.value_sq, cell.images, cell.count_sq,
            cell.image_value_sq, cell.count_value, cell.count_total,
        )  # fmt: skip

    @classmethod
    def from_columns(cls, *columns: float) -> ImageSums:
        """From a cell's summed columns in the storage's order (``count`` ... ``count_total``)."""
        count, value, value_sq, images, count_sq, image_value_sq, count_value, count_total = columns
        if images == 0 and count > 0:
            return cls.independent_items(count, value, value_sq)
        return cls(count, value, value_sq, round(images), count_sq, image_value_sq, count_value, count_total)

    @classmethod
    def independent_items(cls, count: float, value: float, value_sq: float) -> ImageSums:
        """Items known only by their sums, taken as one image each (the independence assumption)."""
        return cls(count, value, value_sq, round(count), count, value_sq, value, count, count)

    @classmethod
    def total(cls, parts: Iterable[ImageSums]) -> ImageSums:
        out = cls()
        for part in parts:
            out = out + part
        return out

    def __add__(self, other: ImageSums) -> ImageSums:
        return ImageSums(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def mean(self) -> float:
        """The per-item mean ``r = value / count`` (NaN without items)."""
        return self.value / self.count if self.count > 0 else math.nan

    @property
    def variance_independent(self) -> float:
        """Variance of :attr:`mean` if items were independent: ``s^2 / N`` (``ddof=1``); NaN below 2 items."""
        if self.count < 2:
            return math.nan
        s2 = max(0.0, (self.value_sq - self.value * self.value / self.count) / (self.count - 1))
        return s2 / self.count

    @property
    def variance_robust(self) -> float:
        """The cluster-robust variance of :attr:`mean`, images as clusters; NaN below 2 images."""
        if self.images < 2 or self.count <= 0:
            return math.nan
        r = self.mean
        residual = self.image_value_sq - 2.0 * r * self.count_value + r * r * self.count_sq
        g = self.images
        return g / (g - 1.0) * max(0.0, residual) / (self.count * self.count)

    @property
    def variance(self) -> float:
        """The variance the tests use: the cluster-robust one, never below the independent one.

        NaN below two images: the detections of one image say nothing about how images vary.
        """
        robust, independent = self.variance_robust, self.variance_independent
        if math.isnan(robust) or math.isnan(independent):
            return robust
        return max(robust, independent)

    @property
    def design_effect(self) -> float:
        """``variance / variance_independent`` (>= 1; 1 when either is undefined or zero)."""
        v, v0 = self.variance, self.variance_independent
        if not (math.isfinite(v) and math.isfinite(v0)) or v0 <= 0.0:
            return 1.0
        return max(1.0, v / v0)

    @property
    def effective_size(self) -> float:
        """Kish's effective sample size ``N / design_effect``: independent items the evidence is worth."""
        return self.count / self.design_effect

    @property
    def mean_cluster_size(self) -> float:
        """``sum n_i^2 / sum n_i``: the items on an item's image, on average (1 when unknown)."""
        return max(1.0, self.count_sq / self.count) if self.count > 0 else 1.0

    @property
    def correlation(self) -> float | None:
        """The intra-image correlation the design effect implies, ``(deff - 1) / (m - 1)``; None if m is 1."""
        m = self.mean_cluster_size
        if m <= 1.0 + 1e-12:
            return None
        return min(1.0, (self.design_effect - 1.0) / (m - 1.0))

    def share_of(self, whole: ImageSums) -> ImageSums:
        """The ratio sums of this key's share of ``whole``'s items (a class's share of all detections).

        ``self`` holds the key's cell (its items counted per image: ``count_total`` is sum
        n_ci N_i), ``whole`` the kind's total over keys (``count_sq`` is sum N_i^2).
        """
        return ImageSums(
            count=whole.count, value=self.count, value_sq=self.count, images=whole.images,
            count_sq=whole.count_sq, image_value_sq=self.count_sq, count_value=self.count_total,
            independent=whole.independent,
        )  # fmt: skip

    def per_image(self, images: int) -> ImageSums:
        """The ratio sums of this key's items per image, over ``images`` images (empty ones too).

        The image is the unit, so the robust variance is the sample variance of the
        per-image counts over ``images`` (the quasi-Poisson dispersion is its ratio to the
        Poisson variance).
        """
        return ImageSums(
            count=images, value=self.count, value_sq=self.count_sq, images=images, count_sq=images,
            image_value_sq=self.count_sq, count_value=self.count, count_total=images, independent=self.independent,
        )  # fmt: skip

    def summary(self) -> dict[str, float | int | None]:
        """What reports show next to a comparison: the evidence counted in independent units."""
        return {
            "count": round(self.count),
            "images": self.images,
            "effective_sample_size": _finite(self.effective_size),
            "design_effect": _finite(self.design_effect),
            "intra_image_correlation": self.correlation,
            "assumed_independent": round(self.independent),
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def rao_scott_deff(shares_a: Sequence[ImageSums], shares_b: Sequence[ImageSums]) -> float:
    """The mean generalised design effect of a 2 x K homogeneity test of shares (>= 1).

    Rao and Scott's first-order correction (JASA 1981; Ann. Stat. 1984): under the null
    Pearson's statistic ``X2 = n_a n_b / n * sum_c (p_ac - p_bc)**2 / p_c`` has mean
    ``n_a n_b / n * sum_c (V_ac + V_bc) / p_c``, which is ``K - 1`` for independent
    detections; ``X2 / deff`` with ``deff`` that mean over ``K - 1`` is referred to
    chi-square with ``K - 1`` degrees of freedom. ``shares_*`` are each class's
    :meth:`ImageSums.share_of` in each sample, in the same order. The first-order
    correction matches the mean, not the spread of the eigenvalues; it is exact when
    every class has the same design effect and slightly liberal otherwise, which the
    calibration tests bound at the correlations they simulate.
    """
    if len(shares_a) != len(shares_b) or len(shares_a) < 2:
        return 1.0
    n_a, n_b = shares_a[0].count, shares_b[0].count
    if n_a <= 0 or n_b <= 0:
        return 1.0
    total = 0.0
    for a, b in zip(shares_a, shares_b, strict=True):
        pooled = (a.value + b.value) / (n_a + n_b)
        if pooled <= 0.0:
            continue
        va, vb = a.variance, b.variance
        if not (math.isfinite(va) and math.isfinite(vb)):
            return 1.0
        total += (va + vb) / pooled
    classes = sum(1 for a, b in zip(shares_a, shares_b, strict=True) if a.value + b.value > 0)
    if classes < 2:
        return 1.0
    return max(1.0, n_a * n_b / (n_a + n_b) * total / (classes - 1))
