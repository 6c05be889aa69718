"""Fixed bins of the companion's per-hour aggregates: one definition for ingest and analysis.

Drift reports and A/B results must cost the same over a month as over an hour, and
raw prediction events expire. Both therefore read mergeable per-hour cells (counts,
sums and sums of squares per fixed bin) that ingest maintains. The bins are fixed
forever (changing one needs a migration of the stored cells), so they are chosen for
what the analyses need:

- confidence: 20 bins of 0.05, the metric histogram's bounds, so that stored cells and
  Grafana's ``objdet_detection_confidence_bucket`` tell the same story;
- relative box area: 4 bins per decade from 1e-5 to 1 (20 bins), a log scale because
  object sizes span orders of magnitude (COCO's small/medium/large cut at 0.0025 and
  0.0225 of a 640 px image);
- aspect ratio: log2(width / height) in steps of 0.25 from -4 to 4 (32 bins), symmetric
  between tall and wide boxes;
- detections per image: exact counts 0..63, then one open bin for 64 and more;
- latency: 20 bins per decade (each 12.2 % wide) from 0.1 ms to 100 s (120 bins), so a
  percentile read from the bins is within about 6 % of the exact one.

Values outside a range fall into its first or last bin. ``key`` strings in the
aggregates table are ``str(bin)``, prefixed by ``class|`` where the class matters
(split on the *last* ``|``: a class name may contain one).
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "AREA_BINS",
    "AREA_LOG10_MIN",
    "AREA_PER_DECADE",
    "ASPECT_BINS",
    "ASPECT_LOG2_MAX",
    "ASPECT_STEP",
    "CONFIDENCE_BINS",
    "CONFIDENCE_WIDTH",
    "DETECTIONS_OPEN_BIN",
    "LATENCY_BINS",
    "LATENCY_LOG10_MIN_MS",
    "LATENCY_PER_DECADE",
    "area_bin",
    "area_edges",
    "aspect_bin",
    "aspect_edges",
    "confidence_bin",
    "confidence_edges",
    "detections_bin",
    "latency_bin",
    "latency_edges_ms",
]

CONFIDENCE_BINS: Final = 20
CONFIDENCE_WIDTH: Final = 1.0 / CONFIDENCE_BINS

AREA_LOG10_MIN: Final = -5.0
AREA_PER_DECADE: Final = 4
AREA_BINS: Final = 20

ASPECT_LOG2_MAX: Final = 4.0
ASPECT_STEP: Final = 0.25
ASPECT_BINS: Final = 32

DETECTIONS_OPEN_BIN: Final = 64
"""Images with this many detections or more share the last bin."""

LATENCY_LOG10_MIN_MS: Final = -1.0
LATENCY_PER_DECADE: Final = 20
LATENCY_BINS: Final = 120


def _clip(index: int, bins: int) -> int:
    return 0 if index < 0 else bins - 1 if index >= bins else index


def confidence_bin(confidence: float) -> int:
    """Bin 0..19 of width 0.05; 1.0 belongs to the last bin."""
    return _clip(int(confidence / CONFIDENCE_WIDTH), CONFIDENCE_BINS)


def area_bin(relative_area: float) -> int:
    """Bin 0..19 of log10(area) in quarter decades from 1e-5; 0 and below go to bin 0."""
    if relative_area <= 0.0:
        return 0
    return _clip(math.floor((math.log10(relative_area) - AREA_LOG10_MIN) * AREA_PER_DECADE), AREA_BINS)


def aspect_bin(width: float, height: float) -> int:
    """Bin 0..31 of log2(width / height) in steps of 0.25 from -4; degenerate boxes are clipped."""
    if width <= 0.0:
        return 0
    if height <= 0.0:
        return ASPECT_BINS - 1
    return _clip(math.floor((math.log2(width / height) + ASPECT_LOG2_MAX) / ASPECT_STEP), ASPECT_BINS)


def detections_bin(count: int) -> int:
    """The exact count up to 63, then 64 for every larger one."""
    return count if count < DETECTIONS_OPEN_BIN else DETECTIONS_OPEN_BIN


def latency_bin(latency_ms: float) -> int:
    """Bin 0..119 of log10(ms) in twentieths of a decade from 0.1 ms."""
    if latency_ms <= 0.0:
        return 0
    return _clip(math.floor((math.log10(latency_ms) - LATENCY_LOG10_MIN_MS) * LATENCY_PER_DECADE), LATENCY_BINS)


def confidence_edges() -> list[float]:
    """The 21 edges of the confidence bins, 0 to 1."""
    return [i * CONFIDENCE_WIDTH for i in range(CONFIDENCE_BINS + 1)]


def area_edges() -> list[float]:
    """The 21 edges of the relative-area bins, 1e-5 to 1 (bin 0 also holds anything smaller)."""
    return [10.0 ** (AREA_LOG10_MIN + i / AREA_PER_DECADE) for i in range(AREA_BINS + 1)]


def aspect_edges() -> list[float]:
    """The 33 edges of the aspect bins as width/height ratios, 1/16 to 16."""
    return [2.0 ** (-ASPECT_LOG2_MAX + i * ASPECT_STEP) for i in range(ASPECT_BINS + 1)]


def latency_edges_ms() -> list[float]:
    """The 121 edges of the latency bins in milliseconds, 0.1 ms to 100 s."""
    return [10.0 ** (LATENCY_LOG10_MIN_MS + i / LATENCY_PER_DECADE) for i in range(LATENCY_BINS + 1)]
