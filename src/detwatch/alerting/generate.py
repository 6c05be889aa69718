"""``detwatch generate``: every artifact of ``rules/``, ``grafana/`` and ``collector/`` from one file.

The input is ``detwatch.yaml`` (its ``alerts:`` and ``stack:`` sections; the
companion's own settings in the same file are ignored here). :func:`artifacts` maps
each relative output path to its text, so that the CLI can write them, a test can
compare them with the committed copies, and the companion can serve them after
``create_alert`` without touching the disk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detwatch.alerting import collector as collector_config
from detwatch.alerting import dashboards, rules
from detwatch.alerting import grafana as grafana_provisioning
from detwatch.alerting.definitions import AlertDefinition, AlertDefinitionError, parse_alerts
from detwatch.alerting.stack import StackSettings, StackSettingsError, parse_stack

__all__ = ["GenerateConfig", "GenerateError", "artifacts", "load_config", "parse_config", "stale", "write_artifacts"]


class GenerateError(ValueError):
    """The configuration cannot be turned into artifacts; the message names the field."""


@dataclass(frozen=True)
class GenerateConfig:
    """The validated input of the generators."""

    alerts: tuple[AlertDefinition, ...] = ()
    stack: StackSettings = field(default_factory=StackSettings)


def parse_config(data: Mapping[str, Any]) -> GenerateConfig:
    """Validate the ``alerts:`` and ``stack:`` sections of a loaded ``detwatch.yaml``."""
    try:
        return GenerateConfig(alerts=parse_alerts(data.get("alerts")), stack=parse_stack(data.get("stack")))
    except (AlertDefinitionError, StackSettingsError) as exc:
        raise GenerateError(str(exc)) from None


def load_config(path: str | Path) -> GenerateConfig:
    """Read and validate ``detwatch.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise GenerateError(f"config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GenerateError(f"config: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise GenerateError(f"config: {path} must hold a mapping at the top level")
    return parse_config(data)


def artifacts(config: GenerateConfig) -> dict[str, str]:
    """Every generated file: relative path -> text.

    The companion asks again after every change and for every ``GET /v1/alerts/artifacts``:
    the last few answers are kept by configuration (alerts and stack are frozen values),
    and each alert's part of a file is built once (:class:`detwatch.alerting.rules.CachedItem`).
    """
    return dict(_artifacts(config))


@functools.lru_cache(maxsize=4)
def _artifacts(config: GenerateConfig) -> dict[str, str]:
    alerts, stack = config.alerts, config.stack
    out = {
        f"rules/{rules.RULES_FILE}": rules.render_yaml(rules.rule_groups(alerts, stack)),
        f"rules/{rules.RULES_TEST_FILE}": rules.render_yaml(rules.rules_tests(alerts, stack)),
        "rules/alertmanager.yml": rules.render_yaml(rules.alertmanager_config(alerts, stack)),
        "grafana/provisioning/alerting/detwatch.yaml": rules.render_yaml(
            grafana_provisioning.alerting_file(alerts, stack)
        ),
        **_stack_artifacts(stack),
    }
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=8)
def _stack_artifacts(stack: StackSettings) -> dict[str, str]:
    """The files that depend on the stack only (cached: the companion regenerates often)."""
    out = {
        "grafana/provisioning/datasources/detwatch.yaml": rules.render_yaml(grafana_provisioning.datasources(stack)),
        "grafana/provisioning/dashboards/detwatch.yaml": rules.render_yaml(
            grafana_provisioning.dashboard_providers(stack)
        ),
        "collector/otelcol.yaml": rules.render_yaml(collector_config.collector_config(stack)),
        "collector/compose.yaml": rules.render_yaml(collector_config.compose_file(stack)),
        "collector/tempo.yaml": rules.render_yaml(collector_config.tempo_config()),
    }
    for name, board in dashboards.dashboards(stack).items():
        out[f"grafana/dashboards/{name}.json"] = dashboards.render_dashboard(board)
    return out


def write_artifacts(config: GenerateConfig, root: str | Path) -> list[Path]:
    """Write every artifact under ``root``; returns the paths whose content changed.

    Each file is replaced atomically (written beside it, then renamed): Prometheus,
    vmalert and Grafana reload these files on their own schedule and must never read
    half of one.
    """
    root = Path(root)
    changed = []
    for relative, text in artifacts(config).items():
        path = root / relative
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file 0600; other services read these: keep a file's mode, else rw-r--r--.
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        changed.append(path)
    return changed


def stale(config: GenerateConfig, root: str | Path, generated: Sequence[str] | None = None) -> list[str]:
    """Relative paths whose file under ``root`` differs from what would be generated."""
    root = Path(root)
    expected = artifacts(config)
    return [
        rel
        for rel in (generated or list(expected))
        if not (root / rel).is_file() or (root / rel).read_text() != expected[rel]
    ]
