"""A drift report as text for a terminal (``detwatch drift``), from the API's JSON answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["format_report"]

_VERDICT = {
    "drift": "SIGNIFICANT DRIFT",
    "no_drift": "no significant drift",
    "insufficient_data": "insufficient data: no verdict",
}


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _period(side: Mapping[str, Any]) -> str:
    filters = [f"{k}={side[k]}" for k in ("model_version", "ab_variant") if side.get(k) is not None]
    where = f" ({', '.join(filters)})" if filters else ""
    return (
        f"{side.get('period', '?')}{where}: {side.get('images', 0)} images, {side.get('detections', 0)} detections, "
        f"{_number(side.get('detections_per_image'), 2)} per image, empty {_number(side.get('empty_rate'))}"
    )


def _effective(test: Mapping[str, Any]) -> str:
    """Reference / current evidence in independent units (detections over their design effect, or images)."""
    ref, cur = test.get("reference_effective_n"), test.get("current_effective_n")
    if ref is None or cur is None:
        return "-"
    mark = " (i)" if test.get("variance_assumes_independence") else ""
    return f"{ref:.0f}/{cur:.0f}{mark}"


def format_report(report: Mapping[str, Any]) -> str:
    """Verdict, the user guide's three numbers, classes, then every test with its distances."""
    config = report.get("config", {})
    lines = [
        f"drift of {report.get('model_id', '?')}: {_VERDICT.get(report.get('status', ''), report.get('status'))}",
        f"  reference {_period(report.get('reference', {}))}",
        f"  current   {_period(report.get('current', {}))}",
    ]
    for label, key in (
        ("class drift (Jensen-Shannon, 0..1)", "class_drift"),
        ("confidence drift (KS, 0..1)", "confidence_drift"),
        ("detection count drift (KS per image, 0..1)", "count_drift"),
    ):
        lines.append(f"  {label:<43} {_number(report.get(key))}")
    if report.get("affected_classes"):
        lines.append(f"  most affected classes: {', '.join(report['affected_classes'])}")
    if report.get("new_classes"):
        lines.append(f"  new classes: {', '.join(report['new_classes'])}")
    if report.get("vanished_classes"):
        lines.append(f"  vanished classes: {', '.join(report['vanished_classes'])}")
    tests = report.get("tests", [])
    if tests:
        lines.append(
            f"  tests (Holm-corrected, alpha {config.get('alpha', '?')}; * = significant and above the effect floor):"
        )
        header = f"{'':1} {'kind':<22} {'class':<16} {'effect':>20} {'p (Holm)':>10} {'effective n':>13}"
        lines.append(f"    {header}  other distances")
        for test in tests:
            effect = f"{test['effect_method']} {test['effect']:.3f}"
            others = ", ".join(
                f"{k} {v:.3g}" for k, v in test.get("distances", {}).items() if k != test["effect_method"]
            )
            mark = "*" if test.get("significant") else " "
            lines.append(
                f"    {mark} {test['kind']:<22} {test['subject'][:16]:<16} {effect:>20} "
                f"{_p(test['p_adjusted']):>10} {_effective(test):>13}  {others}"
            )
        if any(test.get("variance_assumes_independence") for test in tests):
            lines.append(
                "  (i) some detections were stored without per-image sums: their variances assume independence"
            )
    for reason in report.get("insufficient", []):
        lines.append(f"  not tested: {reason}")
    return "\n".join(lines)
