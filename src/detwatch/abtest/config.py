"""An A/B test's configuration: what users pass to ``create_ab_test``, validated once.

The seed's form is ``{"traffic_split": 0.1, "metrics": ["confidence", "latency",
"feedback_score"], "duration_days": 7}``. Everything else has a default chosen so that
the seed's call gives a trustworthy test without further settings:

- ``alpha`` 0.05, the error rate of the peeking-safe verdict (and of the family of
  metrics, by Holm's correction);
- ``min_effect`` per metric: the smallest difference worth acting on. It sets the
  mSPRT's mixing scale (the test is most powerful around it) and the equivalence
  margin of a ``no_difference`` verdict. Defaults: confidence 0.02, latency 10 ms,
  feedback score 0.05, detections per image 0.5, empty-image rate 0.02, class mix
  (total variation) 0.05;
- ``min_samples`` 100 images per arm (and 30 feedback posts for the feedback score)
  before any verdict other than ``running``;
- ``model_a_version`` / ``model_b_version``: restrict an arm to one version when both
  arms are versions of one model id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from detwatch.contract.shapes.abtests import METRICS, Metric

__all__ = ["DEFAULT_MIN_EFFECT", "HIGHER_IS_BETTER", "METRICS", "ABTestConfig", "ConfigError", "parse_config"]


DEFAULT_MIN_EFFECT: Final[dict[str, float]] = {
    "confidence": 0.02,
    "latency": 10.0,
    "feedback_score": 0.05,
    "detections_per_image": 0.5,
    "empty_image_rate": 0.02,
    "class_mix": 0.05,
}

HIGHER_IS_BETTER: Final[dict[str, bool | None]] = {
    "confidence": True,
    "latency": False,
    "feedback_score": True,
    "detections_per_image": None,  # more is not better in itself: reported, never "better"
    "empty_image_rate": None,
    "class_mix": None,
}


MAX_VERSION: Final = 256


class ConfigError(ValueError):
    """A configuration value is invalid; ``field`` names it (``config.traffic_split``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ABTestConfig:
    traffic_split: float
    metrics: tuple[Metric, ...]
    duration_days: float
    alpha: float = 0.05
    min_effect: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_EFFECT))
    min_samples: int = 100
    min_feedback: int = 30
    model_a_version: str | None = None
    model_b_version: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "traffic_split": self.traffic_split,
            "metrics": list(self.metrics),
            "duration_days": self.duration_days,
            "alpha": self.alpha,
            "min_effect": dict(self.min_effect),
            "min_samples": self.min_samples,
            "min_feedback": self.min_feedback,
            "model_a_version": self.model_a_version,
            "model_b_version": self.model_b_version,
        }


def _number(
    config: Mapping[str, Any],
    key: str,
    default: float,
    low: float,
    high: float,
    *,
    open_low: bool,
    prefix: str = "config.",
) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{prefix}{key}", f"must be a number, got {value!r}")
    bad = value <= low if open_low else value < low
    if bad or value > high:
        lower = f"above {low:g}" if open_low else f"at least {low:g}"
        raise ConfigError(f"{prefix}{key}", f"must be {lower} and at most {high:g}, got {value!r}")
    return float(value)


def _version(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_VERSION:
        raise ConfigError(f"config.{key}", f"must be a non-empty string of at most {MAX_VERSION} characters")
    return value


def parse_config(config: Any) -> ABTestConfig:
    """Validate a user's configuration; :class:`ConfigError` names the first bad field."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be an object")
    known = {
        "traffic_split",
        "metrics",
        "duration_days",
        "alpha",
        "min_effect",
        "min_samples",
        "min_feedback",
        "model_a_version",
        "model_b_version",
    }
    for key in config:
        if key not in known:
            raise ConfigError(f"config.{key}", f"unknown setting; valid: {', '.join(sorted(known))}")
    split = _number(config, "traffic_split", 0.5, 0.0, 1.0, open_low=True)
    if split >= 1.0:
        raise ConfigError("config.traffic_split", "must be below 1 (the share of traffic sent to model B)")
    metrics_raw = config.get("metrics", ["confidence", "latency", "feedback_score"])
    if not isinstance(metrics_raw, list) or not metrics_raw:
        raise ConfigError("config.metrics", f"must be a non-empty list of: {', '.join(METRICS)}")
    metrics: list[Metric] = []
    for m in metrics_raw:
        if m not in METRICS:
            raise ConfigError("config.metrics", f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
        if m in metrics:
            raise ConfigError("config.metrics", f"{m!r} is listed twice")
        metrics.append(m)
    if HIGHER_IS_BETTER[metrics[0]] is None:
        directed = ", ".join(m for m in METRICS if HIGHER_IS_BETTER[m] is not None)
        raise ConfigError("config.metrics", f"the first (primary) metric decides the verdict: one of {directed}")
    duration = _number(config, "duration_days", 7.0, 0.0, 366.0, open_low=True)
    alpha = _number(config, "alpha", 0.05, 0.0, 0.5, open_low=True)
    effects = dict(DEFAULT_MIN_EFFECT)
    raw_effects = config.get("min_effect", {})
    if not isinstance(raw_effects, Mapping):
        raise ConfigError("config.min_effect", "must be an object of metric -> smallest difference worth acting on")
    for name in raw_effects:
        if name not in DEFAULT_MIN_EFFECT:
            raise ConfigError(f"config.min_effect.{name}", f"unknown metric; valid: {', '.join(METRICS)}")
        effects[name] = _number(raw_effects, name, 0.0, 0.0, math.inf, open_low=True, prefix="config.min_effect.")
    min_samples = _number(config, "min_samples", 100, 2, 1e12, open_low=False)
    min_feedback = _number(config, "min_feedback", 30, 2, 1e12, open_low=False)
    return ABTestConfig(
        traffic_split=split,
        metrics=tuple(metrics),
        duration_days=duration,
        alpha=alpha,
        min_effect=effects,
        min_samples=int(min_samples),
        min_feedback=int(min_feedback),
        model_a_version=_version(config, "model_a_version"),
        model_b_version=_version(config, "model_b_version"),
    )
