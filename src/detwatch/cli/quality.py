"""``detwatch quality``: a model's precision, recall and AP estimated from reviewed labels.

Registered on :func:`detwatch.cli.main`; it talks to a running companion through
:class:`detwatch.Client` (``--url``/``DETWATCH_URL``, ``--token``/``DETWATCH_API_TOKEN``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from detwatch.client import Client
from detwatch.contract.predictions import AB_ARMS
from detwatch.exceptions import DetwatchError

__all__ = ["format_quality", "quality"]

_url = click.option("--url", envvar="DETWATCH_URL", default="http://127.0.0.1:8000", show_default=True)
_token = click.option("--token", envvar="DETWATCH_API_TOKEN", default=None, help="bearer token")
_METRICS = ("precision", "recall", "ap50", "ap")


def _cell(metric: Mapping[str, Any]) -> str:
    estimate, (low, high) = metric["estimate"], metric["ci"]
    if estimate is None:
        return "-"
    interval = "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"
    return f"{estimate:.3f}{interval}"


def _rows(sample: Mapping[str, Any]) -> list[str]:
    lines = [f"  {'class':<16}" + "".join(f"{name:<22}" for name in _METRICS) + "images"]
    for name, metrics in [*sorted(sample["classes"].items()), ("(overall)", sample["overall"])]:
        cells = "".join(f"{_cell(metrics[m]):<22}" for m in _METRICS)
        lines.append(f"  {name:<16}{cells}{metrics['ap']['n_images']}")
    return lines


def _estimated_rows(estimated: Mapping[str, Any] | None) -> list[str]:
    """The label-free precision of all the period's detections, with why an estimate is not trusted."""
    if not estimated:
        return []
    lines = ["estimated precision of all the period's detections (no labels; calibrated on the sample):"]
    for name, e in [*sorted(estimated["classes"].items()), ("(overall)", estimated["overall"])]:
        trust = "trusted" if e["trusted"] else f"not trusted: {e['reason']}"
        lines.append(f"  {name:<16}{_cell(e):<22}{e['detections']} detections, {trust}")
    return lines


def _recall_rows(recall: Mapping[str, Any] | None) -> list[str]:
    """No label-free recall, why, and the period's missed_object feedback per predicted image."""
    if not recall:
        return []
    missed = recall["missed_object_feedback"]
    rate = "-" if missed["rate"] is None else f"{missed['rate']:.4f}"
    return [
        "recall without labels: none",
        f"  {recall['reason']}",
        f"  {'missed_object':<16}{rate:<22}{missed['count']} posts / {missed['predictions']} predicted images",
    ]


def format_quality(report: Mapping[str, Any]) -> str:
    """The report as a table: estimate and 95 % interval per class and metric."""
    version = report.get("model_version") or "all versions"
    if report.get("ab_variant"):
        version += f", arm {report['ab_variant']}"
    head = (
        f"{report['model_id']} ({version}), {report['period']}: {report['status']}, "
        f"{report['n_images']} labelled images of the review sample (weighted to production)"
    )
    lines = [head, *_rows(report)]
    feedback = report["feedback_flagged"]
    if feedback["n_images"]:
        lines += [f"flagged by feedback only ({feedback['n_images']} images, unweighted):", *_rows(feedback)]
    lines += _estimated_rows(report.get("estimated_precision"))
    lines += _recall_rows(report.get("label_free_recall"))
    if report.get("without_probability"):
        lines.append(f"{report['without_probability']} labelled items flagged before inclusion probabilities: left out")
    return "\n".join(lines)


@click.command()
@click.argument("model_id")
@click.option("--period", default="7d", show_default=True, help="a window ending now: 7d, 24h, 'last 2w'")
@click.option("--model-version", default=None, help="only this model version")
@click.option("--ab-variant", type=click.Choice(AB_ARMS), default=None, help="only this A/B arm's items")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")
@_url
@_token
def quality(  # noqa: PLR0917 - click passes every option as an argument
    model_id: str,
    period: str,
    model_version: str | None,
    ab_variant: str | None,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """Show a model's precision, recall and AP in production, estimated from reviewed labels."""
    try:
        report = Client(base_url=url, token=token).get_model_quality(
            model_id=model_id, period=period, model_version=model_version, ab_variant=ab_variant
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2) if as_json else format_quality(report))
