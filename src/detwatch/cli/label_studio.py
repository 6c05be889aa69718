"""``detwatch label-studio export|import``: the review queue to and from Label Studio, from a shell.

Registered on :func:`detwatch.cli.main`; they talk to a running companion through
:class:`detwatch.Client` (``--url``/``DETWATCH_URL``, ``--token``/``DETWATCH_API_TOKEN``)::

    detwatch label-studio export DATASET_ID -o tasks.json --config label_config.xml
    # ... import tasks.json into a Label Studio project with that labeling config, annotate,
    # export the project as JSON ...
    detwatch label-studio import DATASET_ID project-export.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from detwatch.client import Client
from detwatch.exceptions import DetwatchError
from detwatch.review import ITEM_STATUSES

__all__ = ["label_studio"]

_url = click.option("--url", envvar="DETWATCH_URL", default="http://127.0.0.1:8000", show_default=True)
_token = click.option("--token", envvar="DETWATCH_API_TOKEN", default=None, help="bearer token")


@click.group("label-studio")
def label_studio() -> None:
    """Review in Label Studio: export items as tasks, import the annotations back."""


@label_studio.command("export")
@click.argument("dataset_id")
@click.option("--status", type=click.Choice([*ITEM_STATUSES, "all"]), default="needs_review", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="tasks JSON")
@click.option("--config", "config_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the labeling config (XML) the tasks are made for")  # fmt: skip
@_url
@_token
def export_tasks(  # noqa: PLR0917 - click passes every option as an argument
    dataset_id: str, status: str, output: Path, config_out: Path | None, url: str, token: str | None
) -> None:
    """Write a dataset's items as Label Studio tasks (its JSON import format)."""
    try:
        tasks = Client(base_url=url, token=token).export_label_studio_tasks(dataset_id=dataset_id, status=status)
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    output.write_text(json.dumps(list(tasks), indent=1))
    if config_out is not None:
        config_out.write_text(tasks.label_config + "\n")
    click.echo(f"wrote {len(tasks)} task(s) to {output}")


@label_studio.command("import")
@click.argument("dataset_id")
@click.argument("export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reviewer", default=None, help="recorded as the items' reviewer (default: label-studio)")
@_url
@_token
def import_annotations(dataset_id: str, export_file: Path, reviewer: str | None, url: str, token: str | None) -> None:
    """Label the items of a Label Studio JSON export (tasks with annotations); exits 1 if a task failed."""
    try:
        tasks = json.loads(export_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{export_file}: not JSON: {exc}") from None
    if not isinstance(tasks, list):
        raise click.ClickException(f"{export_file}: expected a JSON list of tasks (Label Studio's JSON export)")
    try:
        result = Client(base_url=url, token=token).import_label_studio_annotations(
            dataset_id=dataset_id, tasks=tasks, reviewer=reviewer
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    for outcome in result["results"]:
        if outcome["status"] == "failed":
            error = outcome.get("error") or {"code": "?", "message": ""}
            where = f" ({error['field']})" if error.get("field") else ""
            click.echo(f"task {outcome['index']}: {error['code']}: {error['message']}{where}", err=True)
    click.echo(f"labeled {result['labeled']}, unchanged {result['unchanged']}, failed {result['failed']}")
    if result["failed"]:
        raise SystemExit(1)
