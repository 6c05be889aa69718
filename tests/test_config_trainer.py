"""The trainer is a typed setting read at start-up: environment over detwatch.yaml, mistakes named."""

from __future__ import annotations

from pathlib import Path

import pytest

from detwatch.config import ConfigError, TrainerSettings, load_settings


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "detwatch.yaml"
    path.write_text(text)
    return str(path)


def test_the_environment_wins_over_the_file_field_by_field(tmp_path: Path) -> None:
    config = _yaml(tmp_path, "trainer:\n  url: https://train.example/jobs\n  backoff_s: 3\n  max_attempts: 2\n")
    settings = load_settings({"DETWATCH_CONFIG": config, "DETWATCH_TRAINER_MAX_ATTEMPTS": "5"})
    assert settings.trainer == TrainerSettings(url="https://train.example/jobs", backoff_s=3.0, max_attempts=5)
    assert "trainer" not in settings.extra


def test_a_command_is_split_like_a_shell_would_and_a_list_is_kept(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.yaml")
    split = load_settings({"DETWATCH_CONFIG": absent, "DETWATCH_TRAINER_COMMAND": "python -m 'my trainer'"})
    assert split.trainer.command == ("python", "-m", "my trainer")
    listed = load_settings({"DETWATCH_CONFIG": _yaml(tmp_path, "trainer:\n  command: [train, --fast]\n")})
    assert listed.trainer.command == ("train", "--fast")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DETWATCH_TRAINER_URL": "ftp://train.example"}, "trainer.url"),
        ({"DETWATCH_TRAINER_BACKOFF_S": "soon"}, "trainer.backoff_s"),
        ({"DETWATCH_TRAINER_BACKOFF_S": "-1"}, "trainer.backoff_s"),
        ({"DETWATCH_TRAINER_MAX_ATTEMPTS": "0"}, "trainer.max_attempts"),
    ],
)
def test_a_bad_trainer_setting_stops_start_up_naming_it(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings({"DETWATCH_CONFIG": str(tmp_path / "absent.yaml"), **environ})


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.uri"):
        load_settings({"DETWATCH_CONFIG": _yaml(tmp_path, "trainer:\n  uri: https://train.example\n")})
