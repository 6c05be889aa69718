"""The data-engine flagging policy: which predictions a human should review.

One pure-Python module (no numpy, no SDK, no I/O) shared by the two places that
decide: the companion, when it ingests prediction events and files flagged items in a
review queue, and the decorator in the inference process, which holds the image and
hands the selected ones to a sink (:mod:`detwatch_instrumentation.sinks`) so that a
flagged item's image URI opens. Both evaluate the same policy document on the same
prediction and therefore agree, without talking to each other.

The policy document is the user guide's ``config``::

    {"low_confidence": {"enabled": True, "threshold": 0.6, "sample_rate": 0.3},
     "edge_cases": {"enabled": True, "conditions": ["no_detections", "high_density", "unusual_size"]},
     "random_sample": {"enabled": True, "rate": 0.05}}

Strategies (each flagged prediction records *every* reason that selected it):

``low_confidence``
    The image has at least one detection whose confidence is below ``threshold``
    (``"mode": "any"``, the default), sampled at ``sample_rate``. Why "any" rather
    than "the best detection is below": the detection a model is unsure of is the one
    a label teaches it most about, and it hides next to confident ones (a sure car
    beside an unsure pedestrian); an image whose best detection is weak is included
    anyway. ``"mode": "max"`` selects only images whose best detection is below the
    threshold (for detectors that emit many low-score boxes). An image without
    detections is never ``low_confidence``: that is ``no_detections``.
``no_detections``
    The model found nothing (an edge case: empty scenes, or objects it cannot see).
``high_density``
    At least ``min_detections`` detections (default 32, a bound of the
    ``objdet.image.detections`` histogram), or at least ``min_overlapping`` detections
    (default 4) that each intersect another one with IoU >= ``iou_threshold`` (default
    0.5): crowds, where non-maximum suppression and labels go wrong. The pairwise IoU
    is computed only below ``min_detections`` (and only for boxes whose x-ranges meet),
    so its cost is bounded.
``unusual_size``
    A detection whose relative area (box area over image area) is very small or very
    large, or unusual for its class. Two tests, either one flags:

    - the absolute bounds, always: below ``min_area`` (default 0.0001: the smallest
      bound of ``objdet.detection.box.area``, about 6 x 6 px on a 640 px image) or
      above ``max_area`` (default 0.8). A near-full-frame box is what a user who asks
      for "very large objects" wants to see, even when the model produces one in 3 % of
      its images: a learned habit must not make it "usual". Set ``max_area`` to 1 (and
      ``min_area`` to 0) to leave only the learned test;
    - the learned per-class range, in addition (``learn``, on by default): learned
      from the model's own per-hour ``box_area`` aggregates (``unusual_size.learned``,
      filled in by the companion: per class, the bins holding the central
      ``1 - 2 * quantile`` of the areas, once ``min_samples`` detections are known;
      ``quantile`` 0.001 by default, since an image of n usual boxes is flagged with
      probability about ``1 - (1 - 2 * quantile) ** n``). It narrows the absolute
      bounds for a class whose boxes are consistent (a 30 px car where cars are 50 px).

    Needs the image size, or boxes that are relative already (all within ``[0, 1]``).
``random_sample``
    ``rate`` of all predictions, whatever they contain: the baseline that keeps the
    labelled data representative.

Edge cases are taken whole unless ``edge_cases.sample_rate`` says otherwise.

Sampling is deterministic: a prediction is sampled when a hash of its key (the
``prediction_id``, which the decorator creates and the event carries) falls below the
rate, with a separate salt per strategy so that the strategies sample independently.
The inference process, every companion replica and a re-run of the same events take
the same decisions; over many predictions the sampled share is the rate (the hash is
uniform).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from ._keyhash import _person, unit_interval

__all__ = [
    "EDGE_CONDITIONS",
    "FEEDBACK_REASON_PREFIX",
    "STRATEGIES",
    "DetectionLike",
    "FlaggingPolicy",
    "HighDensity",
    "LowConfidence",
    "PolicyError",
    "UnusualSize",
    "iou",
    "learn_area_ranges",
    "relative_areas",
    "sampled",
]

STRATEGIES: Final = ("low_confidence", "no_detections", "high_density", "unusual_size", "random_sample")
"""Every reason the policy can give, in the order reasons are listed."""
EDGE_CONDITIONS: Final = ("no_detections", "high_density", "unusual_size")
FEEDBACK_REASON_PREFIX: Final = "feedback:"
"""The companion adds ``feedback:<type>`` for feedback other than ``correct``."""

Box = tuple[float, float, float, float]

_SCALE: Final = float(1 << 64)
_PERSONS: Final = {name: _person("objdet.flag." + name) for name in (*STRATEGIES, "edge_cases")}
"""The salts' BLAKE2b personalisations, computed once (sampling runs for every event)."""


class DetectionLike(Protocol):
    """What the policy reads of a detection (the decorator's and the companion's both fit)."""

    @property
    def class_name(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def box(self) -> Box: ...


class PolicyError(ValueError):
    """A policy document that cannot be used; ``field`` names what to fix (``config.low_confidence.threshold``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def sampled(key: str, strategy: str, rate: float) -> bool:
    """Whether ``key`` falls in the ``rate`` share of keys sampled for ``strategy`` (deterministic).

    The hash is :func:`._keyhash.unit_interval` of the key with the salt
    ``objdet.flag.<strategy>`` (BLAKE2b-64, personalised by the salt).
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    person = _PERSONS.get(strategy)
    if person is None:
        return unit_interval(key, "objdet.flag." + strategy) < rate
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big") / _SCALE < rate


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes (0 when either is degenerate)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0.0 else 0.0


def relative_areas(
    detections: Sequence[DetectionLike], width: float | None, height: float | None
) -> list[float] | None:
    """Box area over image area per detection, as the companion's ``box_area`` aggregates count it.

    ``None`` when it cannot be known: no image size and boxes in pixels.
    """
    if width and height and width > 0 and height > 0:
        image_area = float(width) * float(height)
        return [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) / image_area for d in detections]
    if all(min(d.box[0], d.box[1]) >= 0.0 and max(d.box[2], d.box[3]) <= 1.0 for d in detections):
        return [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in detections]
    return None


def learn_area_ranges(
    histograms: Mapping[str, Sequence[int]], edges: Sequence[float], *, quantile: float, min_samples: int
) -> dict[str, tuple[float, float]]:
    """Per class, the usual relative-area range from binned counts.

    ``histograms[class][i]`` counts boxes in bin ``i`` of ``edges`` (``len(edges) - 1``
    bins; the first bin also holds anything smaller, the last anything larger). The
    range runs from the lower edge of the bin holding the ``quantile`` to the upper edge
    of the bin holding ``1 - quantile``: bin-aligned, so that it can be learned from
    mergeable aggregates instead of raw boxes. Open ends become 0 and infinity.
    """
    ranges: dict[str, tuple[float, float]] = {}
    last = len(edges) - 2
    for name, counts in histograms.items():
        total = sum(counts)
        if total < min_samples or total <= 0:
            continue
        low_target, high_target = quantile * total, (1.0 - quantile) * total
        cumulative = 0.0
        low_bin = high_bin = -1
        for i, count in enumerate(counts):
            cumulative += count
            if low_bin < 0 and cumulative > low_target:
                low_bin = i
            if high_bin < 0 and count and cumulative >= high_target:
                high_bin = i
        if low_bin < 0 or high_bin < 0:
            continue
        low = 0.0 if low_bin == 0 else float(edges[low_bin])
        high = float("inf") if high_bin >= last else float(edges[high_bin + 1])
        ranges[name] = (low, high)
    return ranges


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(where, "must be an object")
    return value


def _keys(obj: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise PolicyError(f"{where}.{key}", f"unknown setting (expected one of: {', '.join(allowed)})")


def _bool(obj: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}.{key}", "must be true or false")
    return value


def _number(obj: Mapping[str, Any], key: str, default: float, where: str, *, low: float, high: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise PolicyError(f"{where}.{key}", f"must be a number from {low:g} to {high:g}")
    return float(value)


def _integer(obj: Mapping[str, Any], key: str, default: int, where: str, *, low: int, high: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, float) and value.is_integer():  # JSON has one number type: 32.0 is 32
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PolicyError(f"{where}.{key}", f"must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class LowConfidence:
    threshold: float = 0.5
    sample_rate: float = 1.0
    mode: Literal["any", "max"] = "any"


@dataclass(frozen=True)
class HighDensity:
    min_detections: int = 32
    iou_threshold: float = 0.5
    min_overlapping: int = 4


@dataclass(frozen=True)
class UnusualSize:
    min_area: float = 0.0001
    max_area: float = 0.8
    learn: bool = True
    quantile: float = 0.001
    min_samples: int = 200
    learned: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per-class ranges learned by the companion from the model's aggregates."""


@dataclass(frozen=True)
class FlaggingPolicy:
    """A parsed, validated policy; :meth:`evaluate` is the decision."""

    low_confidence: LowConfidence | None = None
    edge_conditions: frozenset[str] = frozenset()
    edge_sample_rate: float = 1.0
    high_density: HighDensity = HighDensity()
    unusual_size: UnusualSize = UnusualSize()
    random_rate: float | None = None

    @property
    def enabled(self) -> bool:
        return self.low_confidence is not None or bool(self.edge_conditions) or self.random_rate is not None

    @classmethod
    def from_config(cls, config: Any, where: str = "config") -> FlaggingPolicy:
        """Parse the user guide's ``config`` (or :meth:`to_config`'s output); :class:`PolicyError` names the field."""
        root = _object(config, where)
        _keys(root, ("low_confidence", "edge_cases", "random_sample"), where)

        w = f"{where}.low_confidence"
        lc = _object(root.get("low_confidence"), w)
        _keys(lc, ("enabled", "threshold", "sample_rate", "mode"), w)
        low = None
        if lc and _bool(lc, "enabled", True, w):
            mode = lc.get("mode", "any")
            if mode not in ("any", "max"):
                raise PolicyError(f"{w}.mode", "must be 'any' or 'max'")
            low = LowConfidence(
                threshold=_number(lc, "threshold", 0.5, w, low=0.0, high=1.0),
                sample_rate=_number(lc, "sample_rate", 1.0, w, low=0.0, high=1.0),
                mode=mode,
            )

        w = f"{where}.edge_cases"
        ec = _object(root.get("edge_cases"), w)
        _keys(ec, ("enabled", "conditions", "sample_rate", "high_density", "unusual_size"), w)
        conditions: frozenset[str] = frozenset()
        if ec and _bool(ec, "enabled", True, w):
            listed = ec.get("conditions", list(EDGE_CONDITIONS))
            if not isinstance(listed, list):
                raise PolicyError(f"{w}.conditions", f"must be a list of: {', '.join(EDGE_CONDITIONS)}")
            for i, name in enumerate(listed):
                if name not in EDGE_CONDITIONS:
                    raise PolicyError(f"{w}.conditions[{i}]", f"must be one of: {', '.join(EDGE_CONDITIONS)}")
            conditions = frozenset(listed)
        edge_rate = _number(ec, "sample_rate", 1.0, w, low=0.0, high=1.0)

        wd = f"{w}.high_density"
        hd = _object(ec.get("high_density"), wd)
        _keys(hd, ("min_detections", "iou_threshold", "min_overlapping"), wd)
        density = HighDensity(
            min_detections=_integer(hd, "min_detections", 32, wd, low=1, high=1_000_000),
            iou_threshold=_number(hd, "iou_threshold", 0.5, wd, low=0.0, high=1.0),
            min_overlapping=_integer(hd, "min_overlapping", 4, wd, low=2, high=1_000_000),
        )

        wu = f"{w}.unusual_size"
        us = _object(ec.get("unusual_size"), wu)
        _keys(us, ("min_area", "max_area", "learn", "quantile", "min_samples", "learned"), wu)
        learned: dict[str, tuple[float, float]] = {}
        for name, given in _object(us.get("learned"), f"{wu}.learned").items():
            # JSON has no infinity: an open upper end is written null.
            ok = isinstance(given, (list, tuple)) and len(given) == 2
            bounds = [given[0], float("inf") if given[1] is None else given[1]] if ok else []
            ok = ok and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            if not ok or not 0.0 <= float(bounds[0]) <= float(bounds[1]):
                raise PolicyError(f"{wu}.learned.{name}", "must be [low, high] with 0 <= low <= high (high null: open)")
            learned[str(name)] = (float(bounds[0]), float(bounds[1]))
        size = UnusualSize(
            min_area=_number(us, "min_area", 0.0001, wu, low=0.0, high=1.0),
            max_area=_number(us, "max_area", 0.8, wu, low=0.0, high=float("inf")),
            learn=_bool(us, "learn", True, wu),
            quantile=_number(us, "quantile", 0.001, wu, low=0.0, high=0.5),
            min_samples=_integer(us, "min_samples", 200, wu, low=1, high=2**62),
            learned=learned,
        )

        w = f"{where}.random_sample"
        rs = _object(root.get("random_sample"), w)
        _keys(rs, ("enabled", "rate"), w)
        rate = _number(rs, "rate", 0.0, w, low=0.0, high=1.0) if rs and _bool(rs, "enabled", True, w) else None
        return cls(low, conditions, edge_rate, density, size, rate)

    def with_learned(self, learned: Mapping[str, tuple[float, float]]) -> FlaggingPolicy:
        """The same policy with learned per-class area ranges (ignored unless ``unusual_size.learn``)."""
        size = self.unusual_size
        return FlaggingPolicy(
            self.low_confidence,
            self.edge_conditions,
            self.edge_sample_rate,
            self.high_density,
            UnusualSize(size.min_area, size.max_area, size.learn, size.quantile, size.min_samples, dict(learned)),
            self.random_rate,
        )

    def to_config(self) -> dict[str, Any]:
        """The normalised document (every default spelled out); :meth:`from_config` reads it back unchanged."""
        low = self.low_confidence
        size = self.unusual_size
        return {
            "low_confidence": {
                "enabled": low is not None,
                "threshold": (low or LowConfidence()).threshold,
                "sample_rate": (low or LowConfidence()).sample_rate,
                "mode": (low or LowConfidence()).mode,
            },
            "edge_cases": {
                "enabled": bool(self.edge_conditions),
                "conditions": [c for c in EDGE_CONDITIONS if c in self.edge_conditions],
                "sample_rate": self.edge_sample_rate,
                "high_density": {
                    "min_detections": self.high_density.min_detections,
                    "iou_threshold": self.high_density.iou_threshold,
                    "min_overlapping": self.high_density.min_overlapping,
                },
                "unusual_size": {
                    "min_area": size.min_area,
                    "max_area": size.max_area,
                    "learn": size.learn,
                    "quantile": size.quantile,
                    "min_samples": size.min_samples,
                    "learned": {
                        k: [lo, None if hi == float("inf") else hi] for k, (lo, hi) in sorted(size.learned.items())
                    },
                },
            },
            "random_sample": {"enabled": self.random_rate is not None, "rate": self.random_rate or 0.0},
        }

    def evaluate(
        self,
        key: str,
        detections: Sequence[DetectionLike],
        width: float | None = None,
        height: float | None = None,
    ) -> tuple[str, ...]:
        """Every reason (in :data:`STRATEGIES` order) for which this prediction is flagged; empty if none.

        ``key`` is the prediction's ``prediction_id``; ``width``/``height`` the image
        size when known. Cheap: no allocation beyond the answer for a prediction that
        is not flagged, and pairwise IoU only below ``min_detections``.
        """
        reasons: list[str] = []
        n = len(detections)
        low = self.low_confidence
        if low is not None and self._low(detections) and sampled(key, "low_confidence", low.sample_rate):
            reasons.append("low_confidence")
        conditions = self.edge_conditions
        if conditions and sampled(key, "edge_cases", self.edge_sample_rate):
            if "no_detections" in conditions and not n:
                reasons.append("no_detections")
            if "high_density" in conditions and n and self._dense(detections):
                reasons.append("high_density")
            if "unusual_size" in conditions and n and self._unusual(detections, width, height):
                reasons.append("unusual_size")
        if self.random_rate is not None and sampled(key, "random_sample", self.random_rate):
            reasons.append("random_sample")
        return tuple(reasons)

    def inclusion_probability(
        self,
        detections: Sequence[DetectionLike],
        width: float | None = None,
        height: float | None = None,
    ) -> float:
        """The chance that a prediction with these detections is flagged by this policy, whatever its key.

        Each strategy samples with its own salted hash, so the draws are independent
        and the probability is ``1 - prod(1 - rate)`` over the strategies whose
        condition the prediction meets: ``random_sample`` always, ``low_confidence``
        when a detection is under the threshold, the edge cases (one draw shared by
        all conditions) when any enabled condition holds. The condition is evaluated
        here whatever the hash decided: a prediction flagged by ``random_sample`` that
        was also low-confidence had the larger chance. Quality estimates weight each
        labelled image by the inverse of this, so it must be taken when the item is
        flagged: the policy and its learned area ranges change later.
        """
        missed = 1.0
        low = self.low_confidence
        if low is not None and self._low(detections):
            missed *= 1.0 - low.sample_rate
        if self._edge(detections, width, height):
            missed *= 1.0 - self.edge_sample_rate
        if self.random_rate is not None:
            missed *= 1.0 - self.random_rate
        return 1.0 - missed

    def _low(self, detections: Sequence[DetectionLike]) -> bool:
        low = self.low_confidence
        if low is None or not detections:
            return False
        if low.mode == "any":
            return min(d.confidence for d in detections) < low.threshold
        return max(d.confidence for d in detections) < low.threshold

    def _edge(self, detections: Sequence[DetectionLike], width: float | None, height: float | None) -> bool:
        conditions = self.edge_conditions
        if not conditions:
            return False
        if not detections:
            return "no_detections" in conditions
        return ("high_density" in conditions and self._dense(detections)) or (
            "unusual_size" in conditions and self._unusual(detections, width, height)
        )

    def _dense(self, detections: Sequence[DetectionLike]) -> bool:
        hd = self.high_density
        n = len(detections)
        if n >= hd.min_detections:
            return True
        if n < hd.min_overlapping:
            return False
        # A sweep over boxes sorted by x1: a pair is only compared when the x-ranges
        # overlap, and IoU >= t is tested as intersection >= t * union (no division).
        boxes = sorted([d.box for d in detections])
        threshold = hd.iou_threshold
        overlapping: set[int] = set()
        for i in range(n):
            ax1, ay1, ax2, ay2 = boxes[i]
            area_a = (ax2 - ax1) * (ay2 - ay1)
            for j in range(i + 1, n):
                bx1, by1, bx2, by2 = boxes[j]
                if bx1 >= ax2:
                    break  # sorted by x1: no later box reaches into a
                iw = (ax2 if ax2 < bx2 else bx2) - bx1
                ih = (ay2 if ay2 < by2 else by2) - (ay1 if ay1 > by1 else by1)
                if iw <= 0.0 or ih <= 0.0:
                    continue
                inter = iw * ih
                if inter >= threshold * (area_a + (bx2 - bx1) * (by2 - by1) - inter):
                    overlapping.add(i)
                    overlapping.add(j)
            if len(overlapping) >= hd.min_overlapping:
                return True
        return False

    def _unusual(self, detections: Sequence[DetectionLike], width: float | None, height: float | None) -> bool:
        # relative_areas() inlined: this runs for every event at ingest.
        if width and height and width > 0 and height > 0:
            image_area = float(width) * float(height)
        elif all(min(d.box[0], d.box[1]) >= 0.0 and max(d.box[2], d.box[3]) <= 1.0 for d in detections):
            image_area = 1.0
        else:
            return False
        size = self.unusual_size
        learned = size.learned if size.learn else {}
        absolute = (size.min_area, size.max_area)
        for d in detections:
            x1, y1, x2, y2 = d.box
            area = (x2 - x1) * (y2 - y1) / image_area
            if area < absolute[0] or area > absolute[1]:
                return True  # the absolute bounds hold whatever the model's habits
            low, high = learned.get(d.class_name, absolute)
            if area < low or area > high:
                return True
        return False
