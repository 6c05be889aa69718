"""The flagging policy as a pure function: each strategy on constructed cases, sampling rates, the sink."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import pytest
from scipy import stats

from _telemetry import Telemetry
from detwatch.contract.bins import area_edges
from detwatch_instrumentation import DataEngine, FolderSink, monitor_detections
from detwatch_instrumentation.flagging import FlaggingPolicy, PolicyError, learn_area_ranges, sampled
from detwatch_instrumentation.sinks import encode_png

SEED_CONFIG: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
    "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density", "unusual_size"]},
    "random_sample": {"enabled": True, "rate": 0.05},
}


class Det(NamedTuple):
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]


def only(strategy: str, **settings: Any) -> FlaggingPolicy:
    """A policy with one strategy enabled, taken whole (rate 1)."""
    if strategy == "low_confidence":
        return FlaggingPolicy.from_config({"low_confidence": {"enabled": True, "sample_rate": 1.0, **settings}})
    if strategy == "random_sample":
        return FlaggingPolicy.from_config({"random_sample": {"enabled": True, **settings}})
    return FlaggingPolicy.from_config({"edge_cases": {"enabled": True, "conditions": [strategy], **settings}})


def reference_unit(key: str, strategy: str) -> float:
    """The sampling hash, computed here from its definition (BLAKE2b-64, personalised by the strategy)."""
    person = f"objdet.flag.{strategy}".encode()
    if len(person) > 16:
        person = hashlib.blake2b(person, digest_size=16).digest()
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, person=person).digest(), "big") / 2.0**64


def binomial_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p))


CAR = (100.0, 100.0, 200.0, 180.0)  # 8000 px^2 of a 640x480 image: 0.026


def test_low_confidence_any_flags_an_image_with_one_weak_detection_among_confident_ones() -> None:
    policy = only("low_confidence", threshold=0.6)
    assert policy.evaluate("k", [Det("car", 0.95, CAR), Det("person", 0.4, CAR)], 640, 480) == ("low_confidence",)
    assert policy.evaluate("k", [Det("car", 0.95, CAR), Det("person", 0.6, CAR)], 640, 480) == ()
    assert policy.evaluate("k", [], 640, 480) == ()  # an empty image is no_detections, not low_confidence


def test_low_confidence_max_flags_only_when_the_best_detection_is_weak() -> None:
    policy = only("low_confidence", threshold=0.6, mode="max")
    assert policy.evaluate("k", [Det("car", 0.95, CAR), Det("person", 0.4, CAR)], 640, 480) == ()
    assert policy.evaluate("k", [Det("car", 0.5, CAR), Det("person", 0.4, CAR)], 640, 480) == ("low_confidence",)


def test_no_detections_flags_empty_images_only() -> None:
    policy = only("no_detections")
    assert policy.evaluate("k", [], 640, 480) == ("no_detections",)
    assert policy.evaluate("k", [Det("car", 0.2, CAR)], 640, 480) == ()


def test_high_density_counts_detections_and_heavily_overlapping_boxes() -> None:
    policy = only("high_density", high_density={"min_detections": 10, "iou_threshold": 0.5, "min_overlapping": 3})
    apart = [Det("car", 0.9, (i * 50.0, 0.0, i * 50.0 + 40.0, 40.0)) for i in range(9)]
    assert policy.evaluate("k", apart, 640, 480) == ()
    crowd = [*apart, Det("car", 0.9, (500.0, 0.0, 540.0, 40.0))]
    assert policy.evaluate("k", crowd, 640, 480) == ("high_density",)
    # Three boxes shifted by 4 px: IoU (36*40)/(2*1600-36*40) = 0.818 between neighbours.
    stacked = [Det("car", 0.9, (x, 0.0, x + 40.0, 40.0)) for x in (0.0, 4.0, 8.0)]
    assert policy.evaluate("k", stacked, 640, 480) == ("high_density",)
    # Two overlapping boxes are not a crowd; shifted by 30 px the IoU is 10/70 < 0.5.
    assert policy.evaluate("k", stacked[:2], 640, 480) == ()
    apart3 = [Det("car", 0.9, (x, 0.0, x + 40.0, 40.0)) for x in (0.0, 30.0, 60.0)]
    assert policy.evaluate("k", apart3, 640, 480) == ()


def test_unusual_size_uses_absolute_bounds_and_learned_ranges() -> None:
    policy = only("unusual_size", unusual_size={"min_area": 0.001, "max_area": 0.5})
    tiny = Det("car", 0.9, (0.0, 0.0, 10.0, 10.0))  # 100 / 307200 = 0.00033
    huge = Det("car", 0.9, (0.0, 0.0, 600.0, 400.0))  # 0.78
    assert policy.evaluate("k", [Det("car", 0.9, CAR)], 640, 480) == ()
    assert policy.evaluate("k", [Det("car", 0.9, CAR), tiny], 640, 480) == ("unusual_size",)
    assert policy.evaluate("k", [huge], 640, 480) == ("unusual_size",)
    assert policy.evaluate("k", [huge], None, None) == ()  # pixels without an image size: unknown area
    # A learned range narrows the absolute bounds, it never widens them: a model that often
    # emits huge or tiny cars still has them flagged.
    learned = policy.with_learned({"car": (0.0001, 0.9)})
    assert learned.evaluate("k", [tiny], 640, 480) == ("unusual_size",)
    assert learned.evaluate("k", [huge], 640, 480) == ("unusual_size",)
    assert learned.evaluate("k", [Det("truck", 0.9, (0.0, 0.0, 10.0, 10.0))], 640, 480) == ("unusual_size",)
    narrow = policy.with_learned({"car": (0.02, 0.03)})
    assert narrow.evaluate("k", [Det("car", 0.9, CAR)], 640, 480) == ()
    assert narrow.evaluate("k", [Det("car", 0.9, (0.0, 0.0, 60.0, 60.0))], 640, 480) == ("unusual_size",)  # 0.012
    assert narrow.evaluate("k", [Det("truck", 0.9, (0.0, 0.0, 60.0, 60.0))], 640, 480) == ()  # no range: absolute
    unbounded = only("unusual_size", unusual_size={"min_area": 0.0, "max_area": 1.0}).with_learned({"car": (0.0, 0.9)})
    assert unbounded.evaluate("k", [huge], 640, 480) == ()  # absolute bounds opened: only the learned test
    relative = Det("car", 0.9, (0.0, 0.0, 0.01, 0.01))  # normalised box, no image size: area 0.0001
    assert policy.evaluate("k", [relative]) == ("unusual_size",)


def test_learned_ranges_span_the_bins_of_the_central_share() -> None:
    edges = area_edges()
    counts = [0] * 20
    counts[8], counts[9], counts[10], counts[12] = 5, 90, 4, 1  # 100 boxes
    ranges = learn_area_ranges({"car": counts, "rare": [1] + [0] * 19}, edges, quantile=0.02, min_samples=50)
    # 2 % of 100 = 2 boxes: the low end is bin 8 (5 boxes); 98 falls in bin 10 (cumulative 99).
    assert ranges == {"car": (edges[8], edges[11])}


def test_every_reason_is_recorded_in_a_fixed_order() -> None:
    policy = FlaggingPolicy.from_config(
        {
            "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 1.0},
            "edge_cases": {"enabled": True, "conditions": ["high_density", "unusual_size"]},
            "random_sample": {"enabled": True, "rate": 1.0},
        }
    )
    crowd = [Det("car", 0.3, (x, 0.0, x + 2.0, 2.0)) for x in (0.0, 0.1, 0.2, 0.3)]
    assert policy.evaluate("k", crowd, 640, 480) == ("low_confidence", "high_density", "unusual_size", "random_sample")


@pytest.mark.parametrize(("strategy", "rate"), [("random_sample", 0.05), ("low_confidence", 0.3)])
def test_sampled_shares_match_the_rates_within_binomial_bounds(strategy: str, rate: float) -> None:
    policy = FlaggingPolicy.from_config(SEED_CONFIG)
    weak = [Det("car", 0.3, CAR)]  # low confidence, not an edge case
    n = 20_000
    keys = [f"{i:08x}-prediction" for i in range(n)]
    flagged = sum(strategy in policy.evaluate(k, weak, 640, 480) for k in keys)
    low, high = binomial_bounds(n, rate)
    assert low <= flagged <= high, (flagged, low, high)
    # And each decision is the hash of the key, as defined (so any process can recompute it).
    expected = {k for k in keys if reference_unit(k, strategy) < rate}
    assert {k for k in keys if strategy in policy.evaluate(k, weak, 640, 480)} == expected
    assert all(sampled(k, strategy, rate) == (k in expected) for k in keys[:500])


def test_strategies_sample_independently() -> None:
    keys = [f"p{i}" for i in range(20_000)]
    both = sum(sampled(k, "random_sample", 0.3) and sampled(k, "low_confidence", 0.3) for k in keys)
    low, high = binomial_bounds(len(keys), 0.09)
    assert low <= both <= high


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"low_confidence": {"threshold": 1.5}}, "config.low_confidence.threshold"),
        ({"low_confidence": {"sample_rate": "all"}}, "config.low_confidence.sample_rate"),
        ({"edge_cases": {"conditions": ["no_detections", "tiny"]}}, "config.edge_cases.conditions[1]"),
        ({"edge_cases": {"high_density": {"iou_threshold": -1}}}, "config.edge_cases.high_density.iou_threshold"),
        ({"random_sample": {"rate": True}}, "config.random_sample.rate"),
        ({"random_sampel": {"rate": 0.1}}, "config.random_sampel"),
        ([], "config"),
    ],
)
def test_a_bad_policy_names_the_field(config: Any, field: str) -> None:
    with pytest.raises(PolicyError) as info:
        FlaggingPolicy.from_config(config)
    assert info.value.field == field


def test_the_normalised_document_reads_back_to_the_same_policy() -> None:
    policy = FlaggingPolicy.from_config(SEED_CONFIG).with_learned({"car": (0.001, float("inf"))})
    document = json.loads(json.dumps(policy.to_config()))
    assert FlaggingPolicy.from_config(document) == policy


def _read_png(data: bytes) -> tuple[int, int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, _, color, *_ = struct.unpack(">IIBBBBB", header)
    return width, height, color, zlib.decompress(idat)


def test_png_of_an_array_decodes_to_the_same_pixels() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    width, height, color, raw = _read_png(encode_png(image) or b"")
    assert (width, height, color) == (5, 7, 2)
    rows = [raw[y * 16 + 1 : (y + 1) * 16] for y in range(7)]  # filter byte + 5 * 3
    assert b"".join(rows) == image.tobytes()
    _, _, _, bgr = _read_png(encode_png(image, "bgr") or b"")
    assert b"".join(bgr[y * 16 + 1 : (y + 1) * 16] for y in range(7)) == image[:, :, ::-1].tobytes()


def test_the_decorator_stores_exactly_the_images_the_policy_selects(telemetry: Telemetry, tmp_path: Path) -> None:
    config = {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}}
    engine = DataEngine(policy=config, sink=FolderSink(tmp_path / "flagged"))

    @monitor_detections(model_id="m", data_engine=engine, **telemetry.providers)
    def predict(image: Any) -> list[dict[str, Any]]:
        if image.mean() > 100:
            return [{"class": "car", "confidence": 0.9, "box": [1, 1, 5, 5]}]
        return []

    bright = np.full((8, 8, 3), 200, dtype=np.uint8)
    dark = np.full((8, 8, 3), 10, dtype=np.uint8)
    for image in (bright, dark, bright, dark):
        predict(image)
    bodies = telemetry.bodies()
    assert len(bodies) == 4
    policy = FlaggingPolicy.from_config(config)
    stored = sorted(tmp_path.joinpath("flagged").iterdir())
    selected = [b for b in bodies if policy.evaluate(b["prediction_id"], [], 8, 8) and not b["detections"]]
    assert len(selected) == 2 == len(stored)
    for body in selected:
        path = Path(urlparse(body["image"]["uri"]).path)
        assert path in stored
        width, height, _, raw = _read_png(path.read_bytes())
        assert (width, height) == (8, 8) and raw[1:25] == dark.tobytes()[:24]
    assert all("uri" not in b.get("image", {}) for b in bodies if b["detections"])


def test_the_density_sweep_agrees_with_pairwise_iou_on_random_boxes() -> None:
    rng = np.random.default_rng(3)
    policy = only("high_density", high_density={"min_detections": 1000, "iou_threshold": 0.3, "min_overlapping": 3})
    for _ in range(300):
        n = int(rng.integers(3, 12))
        xy = rng.uniform(0, 100, (n, 2))
        wh = rng.uniform(5, 40, (n, 2))
        dets = [Det("car", 0.9, (x, y, x + w, y + h)) for (x, y), (w, h) in zip(xy.tolist(), wh.tolist(), strict=True)]
        # Reference: IoU of every pair from its definition.
        overlapping = set()
        for i in range(n):
            for j in range(i + 1, n):
                a, b = dets[i].box, dets[j].box
                iw = min(a[2], b[2]) - max(a[0], b[0])
                ih = min(a[3], b[3]) - max(a[1], b[1])
                inter = max(iw, 0.0) * max(ih, 0.0)
                union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if inter > 0 and inter / union >= 0.3:
                    overlapping |= {i, j}
        assert bool(policy.evaluate("k", dets, 640, 480)) == (len(overlapping) >= 3)


INCLUSION_CONFIG: dict[str, Any] = {
    "low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
    "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density"], "sample_rate": 0.5},
    "random_sample": {"enabled": True, "rate": 0.1},
}
WEAK_CROWD = [Det("car", 0.3, (x, 0.0, x + 2.0, 2.0)) for x in (0.0, 0.1, 0.2, 0.3)]
SURE_CROWD = [Det("car", 0.9, (x, 0.0, x + 2.0, 2.0)) for x in (0.0, 0.1, 0.2, 0.3)]
INCLUSION_CASES: dict[str, tuple[list[Det], dict[str, float]]] = {
    # image -> its detections and the rate of each strategy whose condition it meets
    "confident": ([Det("car", 0.9, CAR)], {"random_sample": 0.1}),
    "weak": ([Det("car", 0.3, CAR)], {"low_confidence": 0.3, "random_sample": 0.1}),
    "empty": ([], {"edge": 0.5, "random_sample": 0.1}),
    "sure crowd": (SURE_CROWD, {"edge": 0.5, "random_sample": 0.1}),
    "weak crowd": (WEAK_CROWD, {"low_confidence": 0.3, "edge": 0.5, "random_sample": 0.1}),
}


@pytest.mark.parametrize("case", sorted(INCLUSION_CASES))
def test_inclusion_probability_is_the_share_of_keys_the_policy_flags(case: str) -> None:
    policy = FlaggingPolicy.from_config(INCLUSION_CONFIG)
    detections, rates = INCLUSION_CASES[case]
    expected = 1.0 - float(np.prod([1.0 - r for r in rates.values()]))
    assert policy.inclusion_probability(detections, 640, 480) == pytest.approx(expected)
    n = 20_000
    flagged = sum(bool(policy.evaluate(f"{i:08x}-{case}", detections, 640, 480)) for i in range(n))
    low, high = binomial_bounds(n, expected)
    assert low <= flagged <= high, (flagged, low, high, expected)


@pytest.mark.parametrize("case", sorted(INCLUSION_CASES))
def test_every_combination_of_reasons_occurs_at_the_product_of_the_strategies_rates(case: str) -> None:
    # The strategies draw independently: a combination of reasons has the probability
    # that exactly those strategies (among the eligible ones) sampled the key. This is
    # what makes 1 - prod(1 - rate) the inclusion probability of an item flagged for
    # any of them (one flagged by random_sample that was also weak had the larger chance).
    policy = FlaggingPolicy.from_config(INCLUSION_CONFIG)
    detections, rates = INCLUSION_CASES[case]
    edge_reason = "no_detections" if not detections else "high_density"
    named = {("edge" if s in EDGE_REASONS else s): s for s in ("low_confidence", "random_sample", edge_reason)}
    n = 20_000
    seen: dict[frozenset[str], int] = {}
    for i in range(n):
        reasons = frozenset(policy.evaluate(f"{i:08x}-combo-{case}", detections, 640, 480))
        seen[reasons] = seen.get(reasons, 0) + 1
    strategies = sorted(rates)
    for mask in range(1 << len(strategies)):
        chosen = {s for j, s in enumerate(strategies) if mask >> j & 1}
        p = float(np.prod([rates[s] if s in chosen else 1.0 - rates[s] for s in strategies]))
        observed = seen.pop(frozenset(named[s] for s in chosen), 0)
        low, high = binomial_bounds(n, p)
        assert low <= observed <= high, (chosen, observed, low, high)
    assert not seen, f"reasons no eligible strategy gives: {seen}"


EDGE_REASONS = ("no_detections", "high_density", "unusual_size")


def test_inclusion_probability_counts_only_enabled_strategies() -> None:
    weak = [Det("car", 0.3, CAR)]
    assert FlaggingPolicy().inclusion_probability(weak) == 0.0
    assert only("low_confidence", sample_rate=0.25).inclusion_probability(weak) == pytest.approx(0.25)
    assert only("low_confidence", sample_rate=0.25).inclusion_probability([Det("car", 0.9, CAR)]) == 0.0
    assert only("no_detections").inclusion_probability([]) == 1.0
    assert only("no_detections").inclusion_probability(weak) == 0.0
    assert only("random_sample", rate=0.05).inclusion_probability([]) == pytest.approx(0.05)
