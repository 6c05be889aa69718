"""detwatch's COCO-style scoring equals ``pycocotools.COCOeval`` on the same boxes.

Per class and overall: TP, FP, FN (from COCOeval's per-image matches at IoU 0.5),
AP50 and AP@[.5:.95] (from its accumulated interpolated precision), on constructed
cases that exercise its rules (ties in score, empty images, classes without reviewer
boxes or without detections, more than ``maxDets`` detections) and on random cases.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO  # type: ignore[import-untyped]
from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]

from detwatch.quality import Detection, GroundTruth, LabelledImage, Scores, match_images, score
from detwatch.quality._scoring import average_precision


def coco_reference(images: Sequence[LabelledImage]) -> dict[str, dict[str, float]]:
    """COCOeval's figures per class (and ``"*"`` overall): tp, dets, gts, ap50, ap (NaN for its -1)."""
    classes = sorted(
        {d.class_name for i in images for d in i.detections} | {g.class_name for i in images for g in i.labels}
    )
    cat = {name: k + 1 for k, name in enumerate(classes)}
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        for g in image.labels:
            x1, y1, x2, y2 = g.box
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": cat[g.class_name],
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for d in image.detections:
            x1, y1, x2, y2 = d.box
            results.append(
                {
                    "image_id": index + 1,
                    "category_id": cat[d.class_name],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": d.confidence,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(images))],
            "categories": [{"id": k, "name": name} for name, k in cat.items()],
            "annotations": annotations,
        }
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, 2]  # area "all", maxDets 100
    all_area = evaluation.params.areaRng[0]
    counts = {name: [0.0, 0.0, 0.0] for name in classes}
    by_id = {k: name for name, k in cat.items()}
    for e in evaluation.evalImgs:
        if e is None or e["aRng"] != all_area:
            continue
        c = counts[by_id[e["category_id"]]]
        c[0] += float((e["dtMatches"][0] > 0).sum())
        c[1] += len(e["dtIds"])
        c[2] += len(e["gtIds"])
    reference: dict[str, dict[str, float]] = {}
    for name, k in cat.items():
        p = precision[:, :, k - 1]
        reference[name] = {
            "tp": counts[name][0],
            "dets": counts[name][1],
            "gts": counts[name][2],
            "ap50": float(p[0].mean()) if (p > -1).all() else math.nan,
            "ap": float(p.mean()) if (p > -1).all() else math.nan,
        }
    ap50s, aps = precision[0], precision
    reference["*"] = {
        "tp": sum(c[0] for c in counts.values()),
        "dets": sum(c[1] for c in counts.values()),
        "gts": sum(c[2] for c in counts.values()),
        "ap50": float(ap50s[ap50s > -1].mean()) if (ap50s > -1).any() else math.nan,
        "ap": float(aps[aps > -1].mean()) if (aps > -1).any() else math.nan,
    }
    return reference


def assert_equal_to_coco(images: Sequence[LabelledImage]) -> Scores:
    scores = score(match_images(images))
    reference = coco_reference(images)
    assert set(scores.classes) | {"*"} == set(reference)
    for name, ref in reference.items():
        mine = scores.overall if name == "*" else scores.classes[name]
        assert mine.true_positives == ref["tp"], name
        assert mine.false_positives == ref["dets"] - ref["tp"], name
        assert mine.false_negatives == ref["gts"] - ref["tp"], name
        expected_precision = ref["tp"] / ref["dets"] if ref["dets"] else math.nan
        expected_recall = ref["tp"] / ref["gts"] if ref["gts"] else math.nan
        assert mine.precision == pytest.approx(expected_precision, rel=1e-12, nan_ok=True), name
        assert mine.recall == pytest.approx(expected_recall, rel=1e-12, nan_ok=True), name
        assert mine.ap50 == pytest.approx(ref["ap50"], rel=1e-9, abs=1e-12, nan_ok=True), name
        assert mine.ap == pytest.approx(ref["ap"], rel=1e-9, abs=1e-12, nan_ok=True), name
    return scores


def det(name: str, s: float, x: float, y: float, w: float = 10.0, h: float = 10.0) -> Detection:
    return Detection(name, s, (x, y, x + w, y + h))


def gt(name: str, x: float, y: float, w: float = 10.0, h: float = 10.0) -> GroundTruth:
    return GroundTruth(name, (x, y, x + w, y + h))


def test_a_perfect_model_scores_one_everywhere() -> None:
    images = [LabelledImage(f"i{k}", (det("car", 0.9, 10 * k, 0),), (gt("car", 10 * k, 0),)) for k in range(5)]
    scores = assert_equal_to_coco(images)
    car = scores.classes["car"]
    assert (car.precision, car.recall, car.ap50, car.ap) == (1.0, 1.0, 1.0, 1.0)


def test_equal_scores_are_ranked_as_cocoeval_ranks_them() -> None:
    # Ties within an image (a duplicate on one box) and across images (a false positive
    # scored like a true one): the order of equals decides the precision envelope.
    images = [
        LabelledImage(
            "a", (det("car", 0.8, 100, 100), det("car", 0.8, 0, 0), det("car", 0.8, 1, 0)), (gt("car", 0, 0),)
        ),
        LabelledImage("b", (det("car", 0.8, 0, 0), det("car", 0.5, 50, 50)), (gt("car", 50, 50), gt("car", 0, 0))),
        LabelledImage("c", (det("car", 0.8, 200, 200),), (gt("car", 30, 30),)),
    ]
    assert_equal_to_coco(images)


def test_empty_images_and_classes_without_boxes_or_detections() -> None:
    images = [
        LabelledImage("empty", (), ()),
        LabelledImage("missed", (), (gt("person", 0, 0), gt("person", 40, 40))),
        LabelledImage("ghost", (det("dog", 0.7, 0, 0),), ()),
        LabelledImage(
            "mixed", (det("car", 0.6, 0, 0), det("dog", 0.4, 50, 50)), (gt("car", 0, 0), gt("person", 80, 80))
        ),
    ]
    scores = assert_equal_to_coco(images)
    dog, person = scores.classes["dog"], scores.classes["person"]
    assert dog.precision == 0.0 and math.isnan(dog.recall) and math.isnan(dog.ap)  # no reviewer box: no AP
    assert math.isnan(person.precision) and person.recall == 0.0 and person.ap == 0.0  # boxes, no detection
    assert scores.overall.ap50 == pytest.approx((1.0 + 0.0) / 2)  # mean over car and person only


def test_only_the_best_hundred_detections_of_an_image_count() -> None:
    many = tuple(det("car", 0.001 * k, 3 * k, 0) for k in range(150))
    images = [LabelledImage("busy", many, tuple(gt("car", 3 * k, 0) for k in range(0, 150, 2)))]
    scores = assert_equal_to_coco(images)
    assert scores.classes["car"].true_positives + scores.classes["car"].false_positives == 100


def random_images(rng: np.random.Generator, n: int, classes: Sequence[str]) -> list[LabelledImage]:
    images = []
    for k in range(n):
        labels = []
        detections = []
        for _ in range(int(rng.integers(0, 6))):
            name = str(rng.choice(classes))
            x, y = rng.uniform(0, 500, 2)
            w, h = rng.uniform(5, 80, 2)
            labels.append(GroundTruth(name, (x, y, x + w, y + h)))
            if rng.random() < 0.8:  # found, with jitter (some below IoU 0.5), sometimes twice or as another class
                for _ in range(1 + int(rng.random() < 0.15)):
                    j = rng.normal(0, 0.15, 4) * (w, h, w, h)
                    found = name if rng.random() < 0.9 else str(rng.choice(classes))
                    score = round(float(rng.uniform(0.05, 1.0)), int(rng.integers(1, 4)))  # coarse: many ties
                    detections.append(Detection(found, score, (x + j[0], y + j[1], x + w + j[2], y + h + j[3])))
        for _ in range(int(rng.poisson(1.0))):  # background false positives
            x, y = rng.uniform(0, 500, 2)
            detections.append(
                Detection(str(rng.choice(classes)), round(float(rng.uniform(0, 0.9)), 2), (x, y, x + 20, y + 30))
            )
        rng.shuffle(detections)
        images.append(LabelledImage(f"r{k}", tuple(detections), tuple(labels)))
    return images


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_score_as_cocoeval_scores_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = random_images(rng, int(rng.integers(1, 300)), ["car", "person", "dog", "bicycle"][: 1 + seed % 4])
    if not any(i.detections for i in images):
        images.append(LabelledImage("one", (det("car", 0.5, 0, 0),), ()))
    assert_equal_to_coco(images)


def test_weights_of_one_change_nothing_and_whole_weights_count_an_image_that_many_times() -> None:
    rng = np.random.default_rng(42)
    images = random_images(rng, 60, ["car", "person"])
    matches = match_images(images)
    assert score(matches, np.ones(len(images))) == score(matches)
    # An integer weight is the image repeated (precision and recall exactly; AP as
    # COCOeval on the repeated images up to where equal scores of copies rank).
    counts = rng.integers(0, 4, len(images))
    repeated = [i for i, c in zip(images, counts, strict=True) for _ in range(int(c))]
    weighted, copies = score(matches, counts.astype(float)), score(match_images(repeated))
    for name in copies.classes:
        assert weighted.classes[name].precision == pytest.approx(copies.classes[name].precision, nan_ok=True)
        assert weighted.classes[name].recall == pytest.approx(copies.classes[name].recall, nan_ok=True)


def test_a_batch_of_resample_weights_gives_each_resample_s_average_precision() -> None:
    rng = np.random.default_rng(9)
    images = random_images(rng, 40, ["car", "dog"])
    matches = match_images(images)
    weights = rng.integers(0, 3, (25, len(images))).astype(float)
    weights[0] = 0.0  # a resample of nothing: no reviewer boxes, no AP
    weights[1, : len(images) // 2] = 0.0
    for name, m in matches.items():
        batch = average_precision(m, weights)
        single = np.stack([average_precision(m, w) for w in weights])
        np.testing.assert_allclose(batch, single, rtol=1e-9, atol=1e-12, err_msg=name)
        assert np.isnan(batch[0]).all()
