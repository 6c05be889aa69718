"""``detwatch items``, ``detwatch export`` and ``detwatch job``: the review queue and its outputs from a shell.

Registered on :func:`detwatch.cli.main`; they talk to a running companion through
:class:`detwatch.Client` (``--url``/``DETWATCH_URL``, ``--token``/``DETWATCH_API_TOKEN``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from detwatch.client import Client
from detwatch.exceptions import DetwatchError
from detwatch.review import ITEM_STATUSES

__all__ = ["export", "items", "job"]

_url = click.option("--url", envvar="DETWATCH_URL", default="http://127.0.0.1:8000", show_default=True)
_token = click.option("--token", envvar="DETWATCH_API_TOKEN", default=None, help="bearer token")


@click.command()
@click.argument("dataset_id")
@click.option("--status", type=click.Choice([*ITEM_STATUSES, "all"]), default="needs_review", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", default=None, help="next page: the cursor the previous page printed")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON items")
@_url
@_token
def items(  # noqa: PLR0917 - click passes every option as an argument
    dataset_id: str, status: str, limit: int, cursor: str | None, as_json: bool, url: str, token: str | None
) -> None:
    """List a dataset's flagged items (the review queue), oldest first."""
    try:
        page = Client(base_url=url, token=token).get_flagged_items(
            dataset_id=dataset_id, status=status, limit=limit, cursor=cursor
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"items": list(page), "next_cursor": page.next_cursor}, indent=2))
        return
    for item in page:
        image = item["image"].get("uri") or item["image"].get("key") or "-"
        reasons = ",".join(item["reasons"])
        click.echo(f"{item['id']}  {item['status']:<12} {len(item['detections']):>4} det  {reasons:<40} {image}")
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}")


@click.command()
@click.argument("dataset_id")
@click.argument("version_id")
@click.option("--format", "form", type=click.Choice(["coco", "yolo"]), default="coco", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_url
@_token
def export(  # noqa: PLR0917 - click passes every option as an argument
    dataset_id: str, version_id: str, form: str, output: Path, url: str, token: str | None
) -> None:
    """Write a dataset version as COCO JSON or a YOLO zip."""
    try:
        data = Client(base_url=url, token=token).export_dataset_version(
            dataset_id=dataset_id, version_id=version_id, format=form
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    output.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    click.echo(f"wrote {output}")


@click.command()
@click.argument("job_id")
@_url
@_token
def job(job_id: str, url: str, token: str | None) -> None:
    """Show a training job's status and history."""
    try:
        record = Client(base_url=url, token=token).get_training_job(job_id)
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    version = f", model version {record['model_version']}" if record.get("model_version") else ""
    click.echo(f"{record['name']}: {record['status']} after {record['attempts']} hand-off attempt(s){version}")
    for entry in record["history"]:
        click.echo(f"  {entry['status']:<10} {entry.get('message', '')}")
