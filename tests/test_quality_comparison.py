"""Two versions compared on the same labelled images: paired differences and paired bootstrap intervals.

Each side's figures must be what the part-1 scorer (and ``pycocotools``) give that
version alone; the difference's interval must cover the true difference about 95 %
of the time where the two versions' detections are correlated through the images'
difficulty, and be narrower than an unpaired one would be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from detwatch.quality import (
    Detection,
    GroundTruth,
    LabelledImage,
    PairedImage,
    compare_versions,
    estimate_sample,
    match_images,
    score,
)
from test_quality_scoring import coco_reference, random_images


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def box(k: int) -> tuple[float, float, float, float]:
    """The ``k``-th cell of a grid: boxes of different cells never overlap."""
    x, y = 40.0 * (k % 16), 40.0 * (k // 16)
    return (x, y, x + 30.0, y + 30.0)


def other_version(rng: np.random.Generator, images: list[LabelledImage]) -> list[LabelledImage]:
    """A second version of the same model: some boxes dropped, some moved, confidences changed, one more class."""
    out = []
    for image in images:
        detections = []
        for d in image.detections:
            if rng.random() < 0.15:
                continue
            x1, y1, x2, y2 = d.box
            shift = float(rng.normal(0, 3))
            confidence = round(min(1.0, max(0.01, d.confidence + float(rng.normal(0, 0.1)))), 2)
            detections.append(Detection(d.class_name, confidence, (x1 + shift, y1, x2 + shift, y2)))
        if rng.random() < 0.1:
            detections.append(Detection("zebra", 0.3, (1.0, 1.0, 9.0, 9.0)))
        out.append(LabelledImage(image.image_id, tuple(detections), image.labels))
    return out


def paired(a: list[LabelledImage], b: list[LabelledImage]) -> list[PairedImage]:
    return [PairedImage(x.image_id, x.labels, x.detections, y.detections) for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("seed", range(3))
def test_each_side_is_the_part_one_score_and_cocoeval_and_the_difference_is_b_minus_a(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = random_images(rng, 120, ["car", "person", "dog"])
    b = other_version(rng, a)
    comparison = compare_versions(paired(a, b), resamples=50, seed=seed)
    assert comparison.n_images == 120 and comparison.status == "ok"
    for side, images in (("a", a), ("b", b)):
        scores = score(match_images(images))
        reference = coco_reference(images)
        for name in set(scores.classes) | {"*"}:
            mine = scores.overall if name == "*" else scores.classes[name]
            compared = comparison.overall if name == "*" else comparison.classes[name]
            for metric in ("precision", "recall", "ap50", "ap"):
                value = getattr(getattr(compared, metric), side)
                assert value == pytest.approx(getattr(mine, metric), nan_ok=True), (side, name, metric)
            ref = reference[name]
            assert getattr(compared.ap50, side) == pytest.approx(ref["ap50"], abs=1e-12, nan_ok=True)
            assert getattr(compared.ap, side) == pytest.approx(ref["ap"], abs=1e-12, nan_ok=True)
    # The class only B predicts is compared too: A has no figures for it.
    if "zebra" in comparison.classes:
        assert math.isnan(comparison.classes["zebra"].precision.a)
        assert comparison.classes["zebra"].precision.b == 0.0
    for name, compared in [*comparison.classes.items(), ("*", comparison.overall)]:
        for metric in ("precision", "recall", "ap50", "ap"):
            d = getattr(compared, metric)
            if math.isnan(d.difference):
                continue
            assert d.difference == pytest.approx(d.b - d.a)
            assert d.ci[0] <= d.difference <= d.ci[1] or d.ci[1] - d.ci[0] < 1e-9, (name, metric, d)


def test_identical_versions_differ_by_exactly_zero_and_the_comparison_is_seeded() -> None:
    rng = np.random.default_rng(7)
    a = random_images(rng, 40, ["car", "dog"])
    comparison = compare_versions(paired(a, a), resamples=40)
    for metric in ("precision", "recall", "ap50", "ap"):
        d = getattr(comparison.overall, metric)
        assert d.difference == 0.0 and d.ci == (0.0, 0.0), metric
    b = other_version(rng, a)
    first, again = (compare_versions(paired(a, b), resamples=40, seed=3) for _ in range(2))
    assert repr(first) == repr(again)  # NaN figures: equal as text, not as floats


def test_few_images_are_insufficient_data_and_none_give_no_figures() -> None:
    rng = np.random.default_rng(2)
    a = random_images(rng, 10, ["car"])
    few = compare_versions(paired(a, other_version(rng, a)), resamples=20)
    assert few.status == "insufficient_data" and few.n_images == 10
    assert not math.isnan(few.overall.recall.a)
    none = compare_versions([], resamples=20)
    assert none.status == "insufficient_data" and none.n_images == 0 and not none.classes
    assert math.isnan(none.overall.ap50.difference) and all(math.isnan(x) for x in none.overall.ap50.ci)


class Population:
    """Images whose difficulty drives both versions: each object found by A, by B, by both; false positives of each.

    Boxes sit in distinct grid cells, so whether a detection is right is known without
    matching: the population's true precision and recall of each version are counts.
    """

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        difficulty = rng.normal(0.0, 1.0, n)
        self.objects = 1 + rng.poisson(1.5, n)
        owner = np.repeat(np.arange(n), self.objects)
        z = difficulty[owner]
        shared = rng.random(owner.size)  # one draw per object for both versions: they find the same easy ones
        self.found_a = shared < sigmoid(1.5 - 1.5 * z)
        self.found_b = shared < sigmoid(1.8 - 1.5 * z)
        self.fp_a = rng.poisson(np.exp(-1.0 + 0.8 * difficulty))
        self.fp_b = rng.poisson(np.exp(-1.2 + 0.8 * difficulty))
        self.owner, self.difficulty = owner, difficulty
        self.start = np.concatenate([[0], np.cumsum(self.objects)])
        self.confidence = sigmoid(1.5 - 1.2 * z + rng.normal(0, 0.5, owner.size))

    def truth(self) -> dict[str, float]:
        n_obj = self.owner.size
        tp_a, tp_b = int(self.found_a.sum()), int(self.found_b.sum())
        precision_a = tp_a / (tp_a + int(self.fp_a.sum()))
        precision_b = tp_b / (tp_b + int(self.fp_b.sum()))
        return {"precision": precision_b - precision_a, "recall": (tp_b - tp_a) / n_obj}

    def image(self, i: int) -> PairedImage:
        mine = np.arange(self.start[i], self.start[i + 1])
        labels = tuple(GroundTruth("car", box(k)) for k in range(mine.size))

        def detections(found: Any, false: int, offset: float) -> tuple[Detection, ...]:
            hits = [Detection("car", float(self.confidence[j]), box(k)) for k, j in enumerate(mine) if found[j]]
            misses = [Detection("car", 0.2 + offset, box(100 + k)) for k in range(false)]
            return tuple(hits + misses)

        return PairedImage(
            str(i),
            labels,
            detections(self.found_a, int(self.fp_a[i]), 0.0),
            detections(self.found_b, int(self.fp_b[i]), 0.01),
        )


def test_paired_intervals_cover_the_true_difference_and_are_narrower_than_one_side_s() -> None:
    rng = np.random.default_rng(2026)
    population = Population(rng, 100_000)
    truth = population.truth()
    covered = {"precision": 0, "recall": 0}
    paired_width, single_width = [], []
    repetitions = 200
    for rep in range(repetitions):
        chosen = rng.choice(100_000, size=100, replace=False)
        images = [population.image(int(i)) for i in chosen]
        comparison = compare_versions(images, resamples=100, seed=rep).overall
        for name, value in truth.items():
            lo, hi = getattr(comparison, name).ci
            covered[name] += lo <= value <= hi
        paired_width.append(comparison.recall.ci[1] - comparison.recall.ci[0])
        alone = estimate_sample([LabelledImage(p.image_id, p.detections_b, p.labels) for p in images], resamples=100)
        single_width.append(alone.overall.recall.ci[1] - alone.overall.recall.ci[0])
    for name, hits in covered.items():
        assert 0.90 <= hits / repetitions <= 0.99, (name, hits)
    # The versions find the same easy objects: the difference varies far less than either side.
    assert np.mean(paired_width) < 0.5 * np.mean(single_width), (np.mean(paired_width), np.mean(single_width))
