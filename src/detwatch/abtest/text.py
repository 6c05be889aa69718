"""A/B results as text for the terminal (``detwatch ab``): the verdict first, then the evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["format_results"]

_VERDICTS = {
    "running": "RUNNING - no decision yet",
    "b_better": "B IS BETTER",
    "a_better": "A IS BETTER",
    "no_difference": "NO DIFFERENCE worth acting on",
    "inconclusive": "INCONCLUSIVE",
}


def _num(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _p(value: Any) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _effective(comparison: Mapping[str, Any]) -> str:
    """The evidence in independent units (images, or detections over their design effect)."""
    sizes = comparison.get("effective_sample_size") or {}
    a, b = sizes.get("a"), sizes.get("b")
    if a is None or b is None:
        return "-"
    mark = " (independence assumed)" if comparison.get("variance_assumes_independence") else ""
    return f"{a:.0f} / {b:.0f}{mark}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def format_results(results: Mapping[str, Any]) -> str:
    """A readable comparison of ``GET /v1/ab-tests/{id}/results``."""
    a, b = results["model_a"], results["model_b"]
    cfg = results["config"]
    lines = [
        f"A/B test {results['name']!r} ({results['id']}), {results['status']}, "
        f"day {results['elapsed_days']:.1f} of {cfg['duration_days']:g}",
        f"  A = {a['model_id']}{' ' + a['model_version'] if a.get('model_version') else ''}   "
        f"B = {b['model_id']}{' ' + b['model_version'] if b.get('model_version') else ''}   "
        f"split {cfg['traffic_split']:g} to B",
        "",
        f"Verdict: {_VERDICTS.get(results['verdict'], results['verdict'])} ({results['verdict_reason']})",
        f"  primary metric {results['primary_metric']}: always-valid p = {_p(results['p_value'])}"
        f" (fixed-horizon p = {_p(results['p_value_fixed_horizon'])}, valid only when read once at the end)",
        "",
    ]
    rows = [
        ["images", str(a["images"]), str(b["images"])],
        ["avg confidence", _num(a["avg_confidence"]), _num(b["avg_confidence"])],
        [
            "latency p50 / p99 ms",
            f"{_num(a['latency_ms']['p50'], '.1f')} / {_num(a['latency_ms']['p99'], '.1f')}",
            f"{_num(b['latency_ms']['p50'], '.1f')} / {_num(b['latency_ms']['p99'], '.1f')}",
        ],
        ["detections per image", _num(a["detections_per_image"], ".2f"), _num(b["detections_per_image"], ".2f")],
        ["empty-image rate", _num(a["empty_image_rate"]), _num(b["empty_image_rate"])],
        [
            "feedback score (n)",
            f"{_num(a['feedback_score'])} ({a['feedback_count']})",
            f"{_num(b['feedback_score'])} ({b['feedback_count']})",
        ],
    ]
    lines += _table(["", "A", "B"], rows)
    lines.append("")
    rows = []
    for metric, c in results["comparisons"].items():
        cs = c["confidence_sequence"]
        rows.append(
            [
                metric,
                _num(c["difference"], "+.4f"),
                f"[{_num(cs[0], '+.4f')}, {_num(cs[1], '+.4f')}]",
                _p(c["p_value_always_valid"]),
                _p(c["p_value_corrected"]),
                f"{_p(c['p_value_fixed_horizon'])} {c['fixed_horizon_method']}",
                _effective(c),
            ]
        )
    headers = [
        "B - A", "difference", "confidence sequence", "p (always valid)", "p (Holm)", "p (fixed horizon)",
        "effective n (A / B)",
    ]  # fmt: skip
    lines += _table(headers, rows)
    srm = results["sample_ratio"]
    lines.append("")
    observed = "-" if srm["observed"] is None else f"{srm['observed']:.4f}"
    flag = "MISMATCH: assignment is broken, do not trust this test" if srm["mismatch"] else "ok"
    configured = srm["configured"]
    lines.append(f"Sample ratio: observed {observed} vs configured {configured:g}, p = {_p(srm['p_value'])} - {flag}")
    power = results["power"]
    days = power["projected_days_to_decision"]
    lines.append(
        f"Power: smallest effect detectable now {_num(power['minimum_detectable_effect'], '.4f')}"
        f" (min_effect {power['min_effect']:g})"
        + ("" if days is None else f"; about {days:.1f} more days to reach it at today's traffic")
    )
    return "\n".join(lines)
