"""Production estimates from the review queue: weighted by inverse inclusion probability, bootstrapped over images.

The coverage test simulates what the estimates are for: production traffic whose
detections of one image move together (a latent difficulty per image drives the
confidence of its boxes, whether they are right, and how many objects it misses), a
review queue drawn by the real flagging policy's strategies (low-confidence images
over-sampled), labelled with the truth. The queue's own precision is biased; the
weighted 95 % interval covers the true production precision and recall about 95 % of
the time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from detwatch.contract.predictions import ImageRef
from detwatch.quality import (
    Detection,
    GroundTruth,
    LabelledImage,
    estimate_quality,
    estimate_sample,
    labelled_images,
    match_images,
    score,
)
from detwatch.storage.records import FlaggedItemRecord
from detwatch_instrumentation.flagging import FlaggingPolicy

POLICY = FlaggingPolicy.from_config(
    {
        "low_confidence": {"enabled": True, "threshold": 0.5, "sample_rate": 0.15},
        "random_sample": {"enabled": True, "rate": 0.04},
    }
)


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def box(k: int) -> tuple[float, float, float, float]:
    """The ``k``-th cell of a grid: boxes of different cells never overlap."""
    x, y = 40.0 * (k % 16), 40.0 * (k // 16)
    return (x, y, x + 30.0, y + 30.0)


class Production:
    """One simulated period of traffic: per object found or not, per detection its confidence and truth."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.n = n
        difficulty = rng.normal(0.0, 1.0, n)
        objects = 1 + rng.poisson(1.5, n)
        owner = np.repeat(np.arange(n), objects)
        z = difficulty[owner]
        found = rng.random(owner.size) < sigmoid(2.0 - 1.5 * z)
        false = rng.poisson(np.exp(-1.0 + 0.8 * difficulty))
        fp_owner = np.repeat(np.arange(n), false)
        self.found_confidence = sigmoid(1.5 - 1.2 * z + rng.normal(0, 0.5, owner.size))
        self.fp_confidence = sigmoid(-0.5 - 0.8 * difficulty[fp_owner] + rng.normal(0, 0.5, fp_owner.size))
        self.owner, self.found, self.fp_owner, self.objects = owner, found, fp_owner, objects
        tp, fp = int(found.sum()), int(fp_owner.size)
        self.precision = tp / (tp + fp)
        self.recall = tp / owner.size
        lowest = np.full(n, np.inf)
        np.minimum.at(lowest, owner[found], self.found_confidence[found])
        np.minimum.at(lowest, fp_owner, self.fp_confidence)
        self.low = lowest < 0.5  # the policy's low_confidence condition ("any" detection under 0.5)

    def queue(self, rng: np.random.Generator) -> list[tuple[LabelledImage, float]]:
        """The images the policy's strategies draw (independent draws, as its salted hashes are), labelled."""
        chosen = np.flatnonzero((self.low & (rng.random(self.n) < 0.15)) | (rng.random(self.n) < 0.04))
        out = []
        for i in chosen:
            mine = np.flatnonzero(self.owner == i)
            labels = tuple(GroundTruth("car", box(k)) for k in range(mine.size))
            detections = [
                Detection("car", float(self.found_confidence[j]), box(k)) for k, j in enumerate(mine) if self.found[j]
            ]
            detections += [
                Detection("car", float(c), box(100 + k)) for k, c in enumerate(self.fp_confidence[self.fp_owner == i])
            ]
            out.append((LabelledImage(str(i), tuple(detections), labels), POLICY.inclusion_probability(detections)))
        return out


def test_weighted_intervals_cover_production_precision_and_recall_where_the_queue_is_biased() -> None:
    rng = np.random.default_rng(2026)
    covered = {"precision": 0, "recall": 0}
    naive_covered = 0
    naive_error, weighted_error = [], []
    repetitions = 200
    for rep in range(repetitions):
        production = Production(rng, 1000)
        queue = production.queue(rng)
        weighted = estimate_quality(queue, [], resamples=100, seed=rep).production.overall
        naive = estimate_sample([image for image, _ in queue], resamples=100, seed=rep).overall
        for name, truth in (("precision", production.precision), ("recall", production.recall)):
            lo, hi = getattr(weighted, name).ci
            covered[name] += lo <= truth <= hi
        lo, hi = naive.precision.ci
        naive_covered += lo <= production.precision <= hi
        naive_error.append(naive.precision.estimate - production.precision)
        weighted_error.append(weighted.precision.estimate - production.precision)
    # The queue is mostly hard images: its own precision is far below production's.
    assert np.mean(naive_error) < -0.05, np.mean(naive_error)
    assert naive_covered / repetitions < 0.2, naive_covered
    assert abs(np.mean(weighted_error)) < 0.01, np.mean(weighted_error)
    for name, hits in covered.items():
        assert 0.90 <= hits / repetitions <= 0.99, (name, hits)


def random_images(rng: np.random.Generator, n: int) -> list[LabelledImage]:
    images = []
    for k in range(n):
        labels = tuple(GroundTruth(str(rng.choice(["car", "dog"])), box(j)) for j in range(int(rng.integers(0, 4))))
        detections = tuple(
            Detection(g.class_name, round(float(rng.random()), 2), g.box) for g in labels if rng.random() < 0.7
        ) + tuple(Detection("car", round(float(rng.random()), 2), box(50 + j)) for j in range(int(rng.poisson(0.5))))
        images.append(LabelledImage(f"i{k}", detections, labels))
    return images


def test_weights_of_one_give_the_scores_of_the_labelled_set() -> None:
    images = random_images(np.random.default_rng(1), 80)
    plain = score(match_images(images))
    estimate = estimate_quality([(i, 1.0) for i in images], [], resamples=50).production
    for name, c in plain.classes.items():
        m = estimate.classes[name]
        assert (m.precision.estimate, m.recall.estimate, m.ap50.estimate, m.ap.estimate) == (
            c.precision,
            c.recall,
            c.ap50,
            c.ap,
        )
    assert estimate.overall.ap.estimate == plain.overall.ap
    assert estimate.weighted and estimate.n_images == 80 and estimate.status == "ok"


def test_intervals_are_seeded_and_hold_the_estimate() -> None:
    images = random_images(np.random.default_rng(2), 60)
    sample = [(i, 0.2 if k % 3 else 1.0) for k, i in enumerate(images)]
    first = estimate_quality(sample, [], resamples=100, seed=7)
    assert first == estimate_quality(sample, [], resamples=100, seed=7)
    assert first != estimate_quality(sample, [], resamples=100, seed=8)
    for metrics in (*first.production.classes.values(), first.production.overall):
        for m in (metrics.precision, metrics.recall, metrics.ap50, metrics.ap):
            assert m.ci[0] <= m.estimate <= m.ci[1], m


def test_each_figure_says_how_many_images_it_rests_on_and_few_are_insufficient() -> None:
    images = [
        LabelledImage("a", (Detection("car", 0.9, box(0)),), (GroundTruth("car", box(0)),)),
        LabelledImage("b", (Detection("car", 0.4, box(1)),), ()),
        LabelledImage("c", (), (GroundTruth("dog", box(2)),)),
    ]
    estimate = estimate_sample(images, resamples=20)
    assert estimate.status == "insufficient_data" and estimate.n_images == 3
    car, dog = estimate.classes["car"], estimate.classes["dog"]
    assert (car.precision.n_images, car.recall.n_images, car.ap.n_images) == (2, 1, 2)
    assert car.precision.estimate == 0.5 and math.isnan(dog.precision.estimate) and dog.recall.estimate == 0.0
    assert (estimate.overall.precision.n_images, estimate.overall.recall.n_images) == (2, 2)
    assert estimate_sample(images * 10, resamples=20, min_images=30).status == "ok"
    empty = estimate_sample([], resamples=20)
    assert empty.status == "insufficient_data" and math.isnan(empty.overall.precision.estimate)


def test_feedback_flagged_items_are_scored_apart_and_unweighted() -> None:
    def record(pid: str, reasons: list[str], p: float | None, labelled: bool = True) -> FlaggedItemRecord:
        return FlaggedItemRecord(
            id=pid, dataset_id="d", prediction_id=pid, model_id="m", model_version="v1", time_unix_nano=0,
            reasons=reasons, detections=[{"class": "car", "confidence": 0.8, "box": list(box(0))}],
            image=ImageRef(key=None, uri=None, width=None, height=None),
            status="labeled" if labelled else "needs_review",
            assignee=None, claimed_unix_nano=None, label=[{"class": "car", "box": list(box(0))}] if labelled else None,
            reviewer=None, feedback=(), created_unix_nano=0, updated_unix_nano=0, inclusion_probability=p,
        )  # fmt: skip

    items = labelled_images(
        [
            record("sampled", ["random_sample"], 0.05),
            record("both", ["low_confidence", "feedback:wrong_label"], 0.3),
            record("complaint", ["feedback:false_positive"], None),
            record("old", ["random_sample"], None),
            record("waiting", ["random_sample"], 0.05, labelled=False),
        ]
    )
    assert [(i.image_id, p) for i, p in items.sampled] == [("sampled", 0.05), ("both", 0.3)]
    assert [i.image_id for i in items.feedback_flagged] == ["complaint"]
    assert items.without_probability == 1
    assert items.sampled[0][0].labels == (GroundTruth("car", box(0)),)
    estimate = estimate_quality(items.sampled, items.feedback_flagged, resamples=20)
    assert estimate.production.n_images == 2 and estimate.feedback_flagged.n_images == 1
    assert not estimate.feedback_flagged.weighted
    with pytest.raises(ValueError, match="inclusion probabilities"):
        estimate_quality([(items.sampled[0][0], 0.0)], [])
