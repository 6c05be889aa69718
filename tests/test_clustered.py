"""Cluster-robust variances from stored per-image sums equal those computed on the raw images.

Events with an image-level effect (each image's confidences and box sizes move
together) are ingested into each backend over several hours, compacted in part, and
read back as cells; :class:`detwatch.stats.clustered.ImageSums` of the merged cells must give
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
from scipy import stats

from detwatch.abtest.service import results_for
from detwatch.api._analysis_json import ab_results_json, drift_report_json
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.drift import drift_report
from detwatch.stats.clustered import ImageSums, rao_scott_deff
from detwatch.storage import FeedbackInput, Storage
from detwatch.storage._aggregate import _distinct
from detwatch.storage._sql import SQLStorage

NS: Final = 1_000_000_000
DAY_S: Final = 86_400
BASE_DAY: Final = 1_706_745_600  # 2024-02-01T00:00:00Z
CLASSES: Final = ("car", "person", "truck")


def make_images(
    seed: int, count: int, *, day: int = BASE_DAY, variant: str | None = None
) -> tuple[list[Prediction], list[dict[str, Any]]]:
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
        t = (day + int(rng.integers(3 * DAY_S))) * NS
        event: dict[str, Any] = {
            "prediction_id": f"p{seed}-{i:05d}",
            "model_id": "m",
            "model_version": "v1",
            "time_unix_nano": t,
            "detections": detections,
            "image": {"width": 640, "height": 480},
        }
        if variant is not None:
            event["ab_variant"] = variant
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


def forget_per_image_sums(storage: SQLStorage, before_hour: int) -> None:
    """Make the cells before ``before_hour`` look as cells stored before schema version 6 do."""

    def work(tx: Any) -> None:
        for table, column in (("aggregates", "hour_unix"), ("aggregates_daily", "day_unix")):
            tx.execute(
                f"DELETE FROM {table} WHERE {column} < ? AND kind IN ('confidence_all', 'box_log10_area', "
                "'box_log2_aspect')",
                (before_hour,),
            )
            tx.execute(
                f"UPDATE {table} SET images = 0, count_sq = 0, image_value_sq = 0, count_value = 0, count_total = 0 "
                f"WHERE {column} < ?",
                (before_hour,),
            )

    storage._run(work, write=True)


def test_reports_over_periods_stored_before_the_per_image_sums_say_they_assume_independence(
    storage: SQLStorage,
) -> None:
    january = BASE_DAY - 31 * DAY_S
    old, _ = make_images(4, 200, day=january)
    new, _ = make_images(5, 200)
    storage.ingest_predictions(old + new)
    forget_per_image_sums(storage, BASE_DAY)
    report = drift_report_json(drift_report(storage, "m", "2024-01-01:2024-01-31", "2024-02-01:2024-02-28"))
    detections = report["reference"]["detections"]
    assert report["reference"]["detections_assumed_independent"] == detections > 0
    assert report["current"]["detections_assumed_independent"] == 0
    assert report["current"]["intra_image_correlation"] > 0.3  # measured on the new period's images
    for test in report["tests"]:
        per_detection = test["kind"] in ("class_mix", "class_share", "confidence", "box_area", "aspect_ratio")
        assert test["variance_assumes_independence"] is per_detection, test
        if per_detection and test["kind"] != "class_mix":  # Rao and Scott's correction is one for both
            assert test["reference_effective_n"] == pytest.approx(test["reference_n"]), test  # independent: n
            assert test["current_effective_n"] < test["current_n"]

    # An A/B test over the old period: its per-detection comparisons say the same.
    arm_a, _ = make_images(6, 150, day=january, variant="a")
    arm_b, _ = make_images(7, 150, day=january, variant="b")
    storage.ingest_predictions(arm_a + arm_b)
    forget_per_image_sums(storage, BASE_DAY)
    record = storage.create_ab_test(
        name="old", model_a_id="m", model_b_id="m",
        config={"traffic_split": 0.5, "metrics": ["confidence", "class_mix"], "duration_days": 7},
        start_unix_nano=january * NS, end_unix_nano=(january + 7 * DAY_S) * NS,
    )  # fmt: skip
    results = ab_results_json(results_for(storage, record, now_ns=(january + 8 * DAY_S) * NS))
    comparisons = results["comparisons"]
    assert comparisons["confidence"]["variance_assumes_independence"] is True
    assert comparisons["class_mix"]["variance_assumes_independence"] is True
    assert comparisons["confidence"]["design_effect"]["a"] == pytest.approx(1.0)
    assert comparisons["detections_per_image"]["variance_assumes_independence"] is False


@pytest.mark.parametrize("span", [50, 10**9], ids=["counted", "sorted"])
def test_grouping_of_cell_codes_is_numpys_unique_on_both_paths(span: int) -> None:
    codes = np.random.default_rng(8).integers(0, span, 500)
    uniq, inverse = _distinct(codes)
    expected_uniq, expected_inverse = np.unique(codes, return_inverse=True)
    assert uniq.tolist() == expected_uniq.tolist()
    assert inverse.tolist() == expected_inverse.reshape(-1).tolist()


def test_feedback_score_takes_the_image_as_unit_when_images_get_several_posts(storage: Storage) -> None:
    rng = np.random.default_rng(9)
    day = BASE_DAY + 40 * DAY_S
    items: list[FeedbackInput] = []
    raw: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}  # (posts, correct) per image
    for arm in "ab":
        events, _ = make_images(10 if arm == "a" else 11, 200, day=day, variant=arm)
        storage.ingest_predictions(events)
        for event in events[:120]:
            # A good or a bad image: every detection on it is judged alike, mostly.
            good = rng.random() < (0.7 if arm == "a" else 0.6)
            posts = max(1, len(event.detections))
            verdicts = [(good if rng.random() < 0.9 else not good) for _ in range(posts)]
            raw[arm].append((posts, sum(verdicts)))
            items += [
                FeedbackInput(type="correct" if ok else "false_positive", prediction_id=event.prediction_id,
                              detection_index=k)
                for k, ok in enumerate(verdicts)
            ]  # fmt: skip
    storage.add_feedback(items)
    record = storage.create_ab_test(
        name="feedback", model_a_id="m", model_b_id="m",
        config={"traffic_split": 0.5, "metrics": ["feedback_score"], "duration_days": 7},
        start_unix_nano=day * NS, end_unix_nano=(day + 7 * DAY_S) * NS,
    )  # fmt: skip
    fb = results_for(storage, record, now_ns=(day + 8 * DAY_S) * NS).comparisons["feedback_score"]
    deffs: dict[str, float] = {}
    table: list[list[float]] = []
    for arm in "ab":
        judged = np.array(raw[arm], dtype=float)
        per_posts, per_correct = judged[:, 0], judged[:, 1]
        ratio = per_correct.sum() / per_posts.sum()
        robust = robust_variance(per_posts, per_correct)
        values = [np.r_[np.ones(int(c)), np.zeros(int(n - c))] for n, c in zip(per_posts, per_correct, strict=True)]
        assert robust == pytest.approx(statsmodels_variance(values), rel=1e-9)
        independent = ratio * (1 - ratio) * per_posts.sum() / (per_posts.sum() - 1) / per_posts.sum()
        deffs[arm] = max(robust, independent) / independent
        table.append([per_correct.sum() / deffs[arm], (per_posts.sum() - per_correct.sum()) / deffs[arm]])
    assert fb.design_effect[0] == pytest.approx(deffs["a"], rel=1e-9)
    assert fb.design_effect[1] == pytest.approx(deffs["b"], rel=1e-9)
    assert deffs["a"] > 2.0  # posts on one image agree: far fewer independent judgements than posts
    _, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert fb.p_value_fixed_horizon == pytest.approx(p, rel=1e-6)
    assert fb.unit == "feedback post, clustered by image"
