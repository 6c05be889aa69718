"""The ``detwatch`` command line (click, as Flask's own CLI).

- ``detwatch serve [--host] [--port] [--workers]``: the companion under gunicorn;
  without ``DETWATCH_API_TOKEN`` it binds loopback only and refuses another address.
- ``detwatch feedback TYPE --prediction-id ... [--class ...] [--box x1,y1,x2,y2]``:
  post one feedback item from the shell.
- ``detwatch status``: the service's version and row counts.
- ``detwatch drift MODEL --reference ... --current ...``: a drift report, readable
  (``--json`` for the API's answer).
- ``detwatch demo``: the instrumentation demo (a real detector on bundled images).
- ``detwatch generate [--config detwatch.yaml] [--out .] [--check]``: write (or check) the
  generated ``rules/``, ``grafana/`` and ``collector/`` files.

Client commands read ``--url`` (``DETWATCH_URL``, default ``http://127.0.0.1:8000``)
and ``--token`` (``DETWATCH_API_TOKEN``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from typing import Any

import click

from detwatch.client import Client
from detwatch.config import ConfigError, load_settings
from detwatch.exceptions import DetwatchError
from detwatch.storage import FEEDBACK_TYPES

__all__ = ["main"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
@click.version_option(package_name="detwatch")
def main() -> None:
    """detwatch: monitoring for object-detection models."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes")
@click.option("--timeout", default=30, show_default=True, type=click.IntRange(1, 3600), help="worker timeout (s)")
def serve(host: str, port: int, workers: int, timeout: int) -> None:
    """Run the companion service under gunicorn."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    if settings.api_token is None and not _is_loopback(host):
        raise click.BadParameter(
            f"{host} is not a loopback address: set DETWATCH_API_TOKEN to serve beyond this machine",
            param_hint="--host",
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.ingest_concurrency and "DETWATCH_INGEST_CONCURRENCY" not in os.environ:
        # Keep a worker free of ingest, for feedback and reads (detwatch.api._admission).
        os.environ["DETWATCH_INGEST_CONCURRENCY"] = str(max(1, workers - 1))
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--timeout", str(timeout),
        "--graceful-timeout", "10",
        "--access-logfile", "-",
        "--config", "python:detwatch.gunicorn_config",
        "detwatch.app:create_app()",
    ]  # fmt: skip
    click.echo(f"detwatch companion on http://{host}:{port} ({workers} workers, {settings.effective_database_url})")
    os.execv(sys.executable, argv)


def _client(url: str, token: str | None) -> Client:
    return Client(base_url=url, token=token)


_url = click.option("--url", envvar="DETWATCH_URL", default="http://127.0.0.1:8000", show_default=True)
_token = click.option("--token", envvar="DETWATCH_API_TOKEN", default=None, help="bearer token")


def _box(value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter("expected x1,y1,x2,y2 numbers", param_hint="--box") from None
    if len(parts) != 4:
        raise click.BadParameter("expected four numbers x1,y1,x2,y2", param_hint="--box")
    return parts


@main.command()
@click.argument("type_", metavar="TYPE", type=click.Choice(FEEDBACK_TYPES))
@click.option("--prediction-id", default=None)
@click.option("--trace-id", default=None)
@click.option("--span-id", default=None)
@click.option("--detection-index", type=click.IntRange(0), default=None)
@click.option("--class", "corrected_class", default=None, help="the right class (wrong_label, missed_object)")
@click.option("--box", default=None, help="the right box x1,y1,x2,y2 (wrong_box, missed_object)")
@click.option("--reviewer", default=None)
@click.option("--comment", default=None)
@_url
@_token
def feedback(  # noqa: PLR0917 - click passes every option as an argument
    type_: str,
    prediction_id: str | None,
    trace_id: str | None,
    span_id: str | None,
    detection_index: int | None,
    corrected_class: str | None,
    box: str | None,
    reviewer: str | None,
    comment: str | None,
    url: str,
    token: str | None,
) -> None:
    """Post one feedback item about a prediction."""
    fields: dict[str, Any] = {
        "prediction_id": prediction_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "detection_index": detection_index,
        "corrected_class": corrected_class,
        "corrected_box": _box(box),
        "reviewer": reviewer,
        "comment": comment,
    }
    try:
        record = _client(url, token).send_feedback(type=type_, **fields)
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(record, indent=2))


@main.command()
@_url
@_token
def status(url: str, token: str | None) -> None:
    """Show the service's version and stored counts."""
    try:
        record = _client(url, token).status()
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"detwatch {record.get('version')} at {url}, database {record.get('database')}")
    for table, count in sorted(record.get("counts", {}).items()):
        click.echo(f"  {table:<20} {count}")


@main.command()
@click.argument("model_id")
@click.option("--reference", "reference_period", required=True, help="e.g. 2024-01-01:2024-01-31 or 'previous 7d'")
@click.option("--current", "current_period", required=True, help="e.g. 2024-02-01:2024-02-28 or 'last 24h'")
@click.option("--model-version", default=None, help="only this model version")
@click.option("--ab-variant", default=None, help="only this A/B arm (a, b)")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")
@_url
@_token
def drift(  # noqa: PLR0917 - click passes every option as an argument
    model_id: str,
    reference_period: str,
    current_period: str,
    model_version: str | None,
    ab_variant: str | None,
    alpha: float | None,
    as_json: bool,
    url: str,
    token: str | None,
) -> None:
    """Compare a model's current period with a reference period."""
    options = {"model_version": model_version, "ab_variant": ab_variant, "alpha": alpha}
    try:
        report = _client(url, token).check_drift(
            model_id, reference_period, current_period, **{k: v for k, v in options.items() if v is not None}
        )
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from detwatch.drift import format_report

    click.echo(format_report(report))


@main.command()
@click.argument("ab_test_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")
@_url
@_token
def ab(ab_test_id: str | None, as_json: bool, url: str, token: str | None) -> None:
    """Show an A/B test's results (verdict, per-arm metrics, p-values); without an id, list the tests."""
    client = _client(url, token)
    try:
        if ab_test_id is None:
            tests = client.list_ab_tests()
            if as_json:
                click.echo(json.dumps(tests, indent=2))
                return
            for t in tests:
                click.echo(f"{t['id']}  {t['status']:<9} split {t['traffic_split']:<5g} {t['name']}")
            return
        results = client.get_ab_test_results(ab_test_id)
    except DetwatchError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    from detwatch.abtest.text import format_results

    click.echo(format_results(results))


def _data_engine_commands() -> None:
    from detwatch.cli import review as data_engine_cli

    for command in (data_engine_cli.items, data_engine_cli.export, data_engine_cli.job):
        main.add_command(command)


_data_engine_commands()


def _label_studio_commands() -> None:
    from detwatch.cli.label_studio import label_studio

    main.add_command(label_studio)


_label_studio_commands()


def _quality_commands() -> None:
    from detwatch.cli import quality as quality_cli

    main.add_command(quality_cli.quality)
    from detwatch.cli import quality_compare as quality_compare_cli

    main.add_command(quality_compare_cli.quality_compare)


_quality_commands()


@main.command()
@click.option("--limit", type=click.IntRange(1), default=None, help="only the first N images")
def demo(limit: int | None) -> None:
    """Run the instrumentation demo (OpenCV face detector on bundled images)."""
    from detwatch import demo as demo_module

    demo_module.run(limit=limit)


@main.command()
@click.option(
    "--config", "config_path", default="detwatch.yaml", show_default=True, type=click.Path(dir_okay=False),
    help="the file with alerts: and stack:",
)  # fmt: skip
@click.option(
    "--out", default=".", show_default=True, type=click.Path(file_okay=False),
    help="where rules/, grafana/ and collector/ are written",
)  # fmt: skip
@click.option("--check", is_flag=True, help="write nothing; fail when a generated file is missing or differs")
def generate(config_path: str, out: str, check: bool) -> None:
    """Write the rules, Grafana provisioning and dashboards, and collector config from detwatch.yaml."""
    from detwatch.alerting.generate import GenerateError, load_config, stale, write_artifacts

    try:
        config = load_config(config_path)
    except GenerateError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    if check:
        outdated = stale(config, out)
        for path in outdated:
            click.echo(f"stale: {path}", err=True)
        if outdated:
            raise click.ClickException(f"{len(outdated)} generated file(s) differ: run `detwatch generate`")
        click.echo("all generated files are current")
        return
    for written in write_artifacts(config, out):
        click.echo(f"wrote {written}")
