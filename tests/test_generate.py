"""``detwatch generate``: the committed rules/, grafana/ and collector/ files are exactly what it writes.

A hand edit, or a generator change without regenerating, fails here with the list of
stale files; so does a committed file the generator no longer produces.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from click.testing import CliRunner

from _components import REPO_ROOT
from detwatch.alerting.generate import artifacts, load_config
from detwatch.cli import main

GENERATED_DIRS = ("rules", "grafana", "collector")


def test_committed_artifacts_are_current() -> None:
    expected = artifacts(load_config(REPO_ROOT / "detwatch.yaml"))
    stale = [rel for rel, text in expected.items() if (REPO_ROOT / rel).read_text() != text]
    assert not stale, f"run `detwatch generate` and commit: {stale}"
    # Committed files only: a user's collector/secrets/ is not the generator's business.
    listed = subprocess.run(
        ["git", "ls-files", "--", *GENERATED_DIRS], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    # Hand-written beside the generated files: the READMEs and the companion image's recipe (its lock
    # file is written by scripts/lock-companion, from the environment, not from detwatch.yaml).
    hand_written = ("README.md", "companion.Dockerfile", "companion-requirements.txt")
    committed = {path for path in listed if not path.endswith(hand_written)}
    assert committed == set(expected), f"differ from the generated set: {sorted(committed ^ set(expected))}"


def test_every_generated_file_says_it_is_generated() -> None:
    for rel, text in artifacts(load_config(REPO_ROOT / "detwatch.yaml")).items():
        if rel.endswith(".json"):
            assert json.loads(text)["description"].startswith("DO NOT EDIT"), rel
        else:
            assert text.startswith("# DO NOT EDIT"), rel
            assert "regenerate with `detwatch generate`" in text.splitlines()[1], rel
            yaml.safe_load(text)


def test_cli_writes_everything_and_check_catches_a_hand_edit(tmp_path: Path) -> None:
    runner = CliRunner()
    config = str(REPO_ROOT / "detwatch.yaml")
    result = runner.invoke(main, ["generate", "--config", config, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == set(artifacts(load_config(config)))
    assert result.output.count("wrote ") == len(written)

    result = runner.invoke(main, ["generate", "--config", config, "--out", str(tmp_path), "--check"])
    assert result.exit_code == 0, result.output
    # A second run writes nothing: output is deterministic.
    result = runner.invoke(main, ["generate", "--config", config, "--out", str(tmp_path)])
    assert result.exit_code == 0 and "wrote" not in result.output

    edited = tmp_path / "grafana" / "dashboards" / "overview.json"
    edited.write_text(edited.read_text().replace("Throughput", "Throughput (edited)"))
    result = runner.invoke(main, ["generate", "--config", config, "--out", str(tmp_path), "--check"])
    assert result.exit_code == 1
    assert "stale: grafana/dashboards/overview.json" in result.output


def test_cli_refuses_an_invalid_definition_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "detwatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "alerts": [
                    {
                        "name": "Low Confidence Alert",
                        "model_id": "vehicles",
                        "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 1.5, "window": "1h"},
                    }
                ]
            }
        )
    )
    result = CliRunner().invoke(main, ["generate", "--config", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "alerts[0].condition.threshold" in result.output
    assert "[0, 1]" in result.output
    assert not (tmp_path / "rules").exists()
    config.write_text(yaml.safe_dump({"stack": {"store_ulr": "http://x:1"}}))
    result = CliRunner().invoke(main, ["generate", "--config", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "stack.store_ulr: unknown setting" in result.output
