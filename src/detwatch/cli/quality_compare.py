"""``detwatch quality-compare``: two model versions scored on the same labelled images, paired.

Registered on :func:`detwatch.cli.main`; it talks to a running companion through
:class:`detwatch.Client` (``--url``/``DETWATCH_URL``, ``--token``/``DETWATCH_API_TOKEN``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from detwatch.client import Client
from detwatch.exceptions import DetwatchError

__all__ = ["format_comparison", "quality_compare"]

_url = click.option("--url", envvar="DETWATCH_URL", default="http://127.0.0.1:8000", show_default=True)
_token = click.option("--token", envvar="DETWATCH_API_TOKEN", default=None, help="bearer token")
_METRICS = ("precision", "recall", "ap50", "ap")


def _cell(figure: Mapping[str, Any]) -> str:
    difference, (low, high) = figure["difference"], figure["ci"]
    if difference is None:
        return "-"
    interval = "" if low is None or high is None else f" [{low:+.2f}, {high:+.2f}]"
    return f"{difference:+.3f}{interval}"


def format_comparison(report: Mapping[str, Any]) -> str:
    """The report as a table: ``b - a`` and its 95 % paired interval per class and metric."""
    head = (
        f"{report['model_id']}: {report['version_b']} - {report['version_a']} on dataset {report['dataset_id']}: "
        f"{report['status']}, {report['n_images']} of {report['labelled_images']} labelled images predicted by both"
    )
    lines = [head, f"  {'class':<16}" + "".join(f"{name:<26}" for name in _METRICS)]
    for name, figures in [*sorted(report["classes"].items()), ("(overall)", report["overall"])]:
        lines.append(f"  {name:<16}" + "".join(f"{_cell(figures[m]):<26}" for m in _METRICS).rstrip())
    return "\n".join(lines)


@click.command("quality-compare")
@click.argument("model_id")
@click.option("--version-a", required=True, help="the base version")
@click.option("--version-b", required=True, help="the version compared (differences are b - a)")
@click.option("--dataset-id", required=True, help="the dataset whose labelled images both are scored on")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")
@_url
@_token
def quality_compare(  # noqa: PLR0917 - click passes every option as an argument
    model_id: str, version_a: str, version_b: str, dataset_id: str, as_json: bool, url: str, token: str | None
) -> None:
    """Compare two versions of a model on the same reviewed images: differences with paired intervals."""
    try:
        report = Client(base_url=url, token=token).compare_model_versions(
            model_id=model_id, version_a=version_a, version_b=version_b, dataset_id=dataset_id
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2) if as_json else format_comparison(report))
