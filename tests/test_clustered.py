"""Cluster-robust variances from stored per-image sums equal those computed on the raw images.

Events with an image-level effect (each image's confidences and box sizes move
together) are ingested into each backend over several hours, compacted in part, and
read back as cells; :class:`detwatch.clustered.ImageSums` of the merged cells must give
the variance a direct computation on the raw per-image data gives, and the
cluster-robust standard error statsmodels reports (OLS on a constant, ``cov_type=
"cluster"`` with the image as group: statsmodels is a test dependency for this).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pytest
import statsmodels.api as sm

from detwatch.clustered import ImageSums, rao_scott_deff
from detwatch.predictions import Prediction, parse_prediction
from detwatch.storage import Storage

NS: Final = 1_000_000_000
DAY_S: Final = 86_400
BASE_DAY: Final = 1_706_745_600  # 2024-02-01T00:00:00Z
CLASSES: Final = ("car", "person", "truck")


def make_images(seed: int, count: int) -> tuple[list[Prediction], list[dict[str, Any]]]:
    """Events over three days (so that compaction merges some), and their raw detections per image."""
    rng = np.random.default_rng(seed)
    events: list[Prediction] = []
    raw: list[dict[str, Any]] = []
    for i in range(count):
        m = int(rng.choice([0, 1, 2, 3, 6, 12]))
        level = rng.normal(0.7, 0.12)
        conf = np.clip(level + rng.normal(0.0, 0.05, m), 0.001, 0.999).round(6)
        # A crowded image leans to one class; its boxes share a size.
        favourite = rng.integers(len(CLASSES))
        names = np.where(rng.random(m) < 0.6, favourite, rng.integers(len(CLASSES), size=m))
        side = 10.0 ** rng.normal(1.5, 0.3) * np.exp(rng.normal(0.0, 0.1, m))
        aspect = np.exp(rng.normal(0.0, 0.3, m))
        w, h = (side * aspect).round(3), (side / aspect).round(3)
        detections = [
            {"class": CLASSES[k], "confidence": float(c), "box": [0.0, 0.0, float(a), float(b)]}
            for k, c, a, b in zip(names, conf, w, h, strict=True)
        ]
        t = (BASE_DAY + int(rng.integers(3 * DAY_S))) * NS
        event = {
            "prediction_id": f"p{seed}-{i:05d}",
            "model_id": "m",
            "model_version": "v1",
            "time_unix_nano": t,
            "detections": detections,
            "image": {"width": 640, "height": 480},
        }
        events.append(parse_prediction(event))
        area = w * h / (640 * 480)
        raw.append({"names": [CLASSES[k] for k in names], "conf": conf, "log_area": np.log10(area)})
    return events, raw


def robust_variance(n: np.ndarray, s: np.ndarray) -> float:
    """The ratio estimator's cluster-robust variance, computed directly image by image."""
    n, s = n[n > 0], s[n > 0]
    g, total = len(n), n.sum()
    r = s.sum() / total
    return float(g / (g - 1) * np.sum((s - r * n) ** 2) / total**2)


def statsmodels_variance(values: Sequence[np.ndarray]) -> float:
    """statsmodels' cluster-robust variance of the mean of ``values`` (one array per image)."""
    y = np.concatenate([v for v in values if v.size])
    groups = np.concatenate([np.full(v.size, i) for i, v in enumerate(values) if v.size])
    fit = sm.OLS(y, np.ones((y.size, 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return float(fit.bse[0] ** 2)


def read(storage: Storage, kind: str, key: str = "") -> ImageSums:
    rows = storage.aggregates("m", 0, 2**62, [kind])
    return ImageSums.total(ImageSums.of(r) for r in rows if r.key == key)


def test_variances_from_stored_cells_equal_the_raw_computation_and_statsmodels(storage: Storage) -> None:
    events, raw = make_images(1, 400)
    storage.ingest_predictions(events[:250])
    storage.compact_aggregates((BASE_DAY + DAY_S) * NS)  # the first day becomes daily cells
    storage.ingest_predictions(events[250:])  # some land in the compacted day again

    every = read(storage, "confidence_all")
    conf = [image["conf"] for image in raw]
    n_all = np.array([c.size for c in conf], dtype=float)
    s_all = np.array([c.sum() for c in conf])
    assert every.images == int((n_all > 0).sum())
    assert every.mean == pytest.approx(s_all.sum() / n_all.sum(), rel=1e-12)
    assert every.variance_robust == pytest.approx(robust_variance(n_all, s_all), rel=1e-9)
    assert every.variance_robust == pytest.approx(statsmodels_variance(conf), rel=1e-9)
    y = np.concatenate(conf)
    assert every.variance_independent == pytest.approx(np.var(y, ddof=1) / y.size, rel=1e-9)
    assert every.design_effect > 2.0  # these images move together: the independent variance is far too small

    for name in CLASSES:
        cls = read(storage, "detections", name)
        per_class = [image["conf"][np.array(image["names"]) == name] for image in raw]
        n = np.array([v.size for v in per_class], dtype=float)
        assert cls.variance_robust == pytest.approx(robust_variance(n, np.array([v.sum() for v in per_class])))
        assert cls.variance_robust == pytest.approx(statsmodels_variance(per_class), rel=1e-9)
        # The class's share of all detections: indicators of the class, clustered by image.
        share = cls.share_of(every)
        indicators = [(np.array(image["names"]) == name).astype(float) for image in raw]
        assert share.mean == pytest.approx(n.sum() / n_all.sum(), rel=1e-12)
        assert share.variance_robust == pytest.approx(robust_variance(n_all, n), rel=1e-9)
        assert share.variance_robust == pytest.approx(statsmodels_variance(indicators), rel=1e-9)
        # Its detections per image: the image is the unit, empty images included.
        rate = cls.per_image(len(raw))
        assert rate.mean == pytest.approx(n.mean(), rel=1e-12)
        assert rate.variance_robust == pytest.approx(np.var(n, ddof=1) / n.size, rel=1e-9)

    area = read(storage, "box_log10_area")
    log_area = [image["log_area"] for image in raw]
    assert area.variance_robust == pytest.approx(statsmodels_variance(log_area), rel=1e-6)


def test_cells_without_per_image_sums_count_as_independent_detections() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0.7, 0.1, 50)
    legacy = ImageSums.independent_items(values.size, float(values.sum()), float((values**2).sum()))
    assert legacy.independent == 50
    # Each detection its own image: the robust variance is the independent one, up to G / (G - 1) vs ddof.
    assert legacy.variance_robust == pytest.approx(legacy.variance_independent, rel=1e-12)
    assert legacy.design_effect == pytest.approx(1.0)
    assert legacy.summary()["assumed_independent"] == 50


def test_rao_scott_deff_is_one_for_independent_detections_and_the_design_effect_for_equal_clustering() -> None:
    rng = np.random.default_rng(3)
    images = 2000

    def sample(rho: float) -> list[ImageSums]:
        # Dirichlet-multinomial: every class has the same design effect 1 + rho (m - 1).
        m = 8
        shares = np.array([0.5, 0.3, 0.2])
        concentration = (1.0 - rho) / rho if rho > 0 else 1e9
        p = rng.dirichlet(shares * concentration, size=images)
        counts = np.array([rng.multinomial(m, row) for row in p], dtype=float)
        n = counts.sum(axis=1)
        whole = ImageSums(n.sum(), n.sum(), n.sum(), images, float((n * n).sum()), 0.0, 0.0, 0.0)
        return [
            ImageSums(c.sum(), c.sum(), c.sum(), images, float((c * c).sum()), 0.0, 0.0, float((c * n).sum())).share_of(
                whole
            )
            for c in counts.T
        ]

    assert rao_scott_deff(sample(0.0), sample(0.0)) == pytest.approx(1.0, abs=0.15)
    expected = 1.0 + 0.5 * (8 - 1)
    assert rao_scott_deff(sample(0.5), sample(0.5)) == pytest.approx(expected, rel=0.15)
    assert math.isfinite(rao_scott_deff(sample(0.9), sample(0.9)))
