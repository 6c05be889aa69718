"""Companion configuration: environment variables, or a ``detwatch.yaml``.

=========================== ================================================ =====================
variable                    meaning                                          default
=========================== ================================================ =====================
``DETWATCH_DATABASE_URL``   ``sqlite:///path`` or ``postgresql://...``       SQLite in the data dir
``DETWATCH_DATA_DIR``       SQLite file, generated artifacts, sampled images ``./.detwatch``
``DETWATCH_API_TOKEN``      bearer token required on ``/v1``                 none (loopback only)
``DETWATCH_WEBHOOK_SECRET`` Standard Webhooks secret(s), comma-separated     none
``DETWATCH_RETENTION_DAYS`` days raw prediction events are kept             30
``DETWATCH_RETENTION_INTERVAL`` seconds between expiry runs (detwatch.jobs.retention) 3600
``DETWATCH_INGEST_CONCURRENCY`` ingest requests at once on this machine      0 (no limit; ``serve``: workers - 1)
``DETWATCH_PUBLIC_URL``     the companion's address as trainers reach it      none (no job hand-off)
``DETWATCH_TRAINER_URL``    a trainer webhook that training jobs are posted to none
``DETWATCH_TRAINER_SECRET`` Standard Webhooks secret signing those posts       none
``DETWATCH_TRAINER_COMMAND`` a local trainer command instead of a webhook     none
``DETWATCH_TRAINER_BACKOFF_S`` first retry delay of a failed hand-off (doubles) 2
``DETWATCH_TRAINER_MAX_ATTEMPTS`` hand-off attempts before a job fails        8
``DETWATCH_GRAFANA_URL``    a Grafana to push created alerts to              none (no push)
``DETWATCH_GRAFANA_TOKEN``  that Grafana's service-account token             none
``DETWATCH_IMAGES_ROOT``    the folder item images are served from           ``<data dir>/flagged``
``DETWATCH_LABEL_STUDIO_SECRET`` the secret Label Studio's webhook sends      none (API token rule)
``DETWATCH_REVIEWERS``      who signs in to ``/review``: ``name:token,...``  none (no sign-in)
``DETWATCH_SESSION_SECRET`` signs the review page's session cookie           from the reviewers' tokens
``DETWATCH_CONFIG``         path of the YAML file                            ``./detwatch.yaml``
=========================== ================================================ =====================

The YAML file holds the same settings under lowercase names (``database_url``,
``data_dir``, ``api_token``, ``webhook_secrets``, ``retention_days``, ``public_url``, ``grafana_url``,
``grafana_token``, ``images_root``, ``label_studio_secret``, ``reviewers`` (a list of
``{name, token}``), ``session_secret``, and ``trainer: {url, secret, command, backoff_s,
max_attempts}``); an environment variable wins over the file, so a deployment can override one setting without
editing it. Mistakes raise :class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from detwatch.contract.webhooks import parse_secret

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "ConfigError",
    "Reviewer",
    "Settings",
    "TrainerSettings",
    "load_settings",
    "trainer_settings",
]

DEFAULT_MAX_ATTEMPTS = 8
"""Hand-off attempts of a training job before it fails."""


class ConfigError(ValueError):
    """A setting has an invalid value; the message names it."""


@dataclass(frozen=True)
class TrainerSettings:
    """Where training jobs are handed off: a webhook (optionally signed) or a local command.

    Read at start-up like every setting (``DETWATCH_TRAINER_*`` over ``detwatch.yaml``'s
    ``trainer``), so a request never reads the environment and a mistake stops the
    companion at start, naming the setting, instead of failing each job later.
    """

    url: str | None = None
    secret: str | None = None
    command: tuple[str, ...] = ()
    backoff_s: float = 2.0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class Reviewer:
    """A person who reviews flagged items in the browser (``/review``), signing in with ``token``."""

    name: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything the companion reads at start-up."""

    data_dir: Path = Path(".detwatch")
    database_url: str = ""
    api_token: str | None = None
    webhook_secrets: tuple[str, ...] = ()
    retention_days: float = 30.0
    retention_interval_s: float = 3600.0
    aggregate_hourly_days: float = 7.0
    ingest_concurrency: int = 0
    max_body_bytes: int = 32 * 1024 * 1024
    public_url: str | None = None
    """Where a trainer downloads a job's dataset and reports back; never taken from a request's Host."""
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    grafana_url: str | None = None
    """A Grafana the alerting objects of created alerts are pushed to (``detwatch.alerting.grafana_push``)."""
    grafana_token: str | None = None
    """The service-account token for ``grafana_url``."""
    images_root: Path | None = None
    """The one folder item images are served from (the review page, ``GET .../items/{id}/image``);
    see :attr:`effective_images_root`."""
    label_studio_secret: str | None = None
    """What Label Studio's webhook must send (header or ``?secret=``); ``None``: the API token rule."""
    reviewers: tuple[Reviewer, ...] = ()
    """Who may sign in to the review page; none: the page only says how to add reviewers."""
    session_secret: str | None = None
    """Signs the review page's session cookie; by default derived from the reviewers' tokens,
    so that every replica with the same configuration reads the others' cookies."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept a str for data_dir from code as from the environment.
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.images_root is not None and not isinstance(self.images_root, Path):
            object.__setattr__(self, "images_root", Path(self.images_root))

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'detwatch.db').resolve()}"

    @property
    def effective_images_root(self) -> Path:
        """The images root, defaulting to the folder sink's default directory under the data dir.

        The decorator's ``DataEngine`` keeps images in ``./.detwatch/flagged`` unless told
        otherwise, which is ``flagged`` under the default data dir: a companion started
        beside the inference process serves them with no setting.
        """
        if self.images_root is not None:
            return self.images_root
        return self.data_dir / "flagged"

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
"""A database URL starts with a scheme; which ones open is storage's to say."""

_KEYS = {
    "data_dir": "DETWATCH_DATA_DIR",
    "database_url": "DETWATCH_DATABASE_URL",
    "api_token": "DETWATCH_API_TOKEN",
    "webhook_secrets": "DETWATCH_WEBHOOK_SECRET",
    "retention_days": "DETWATCH_RETENTION_DAYS",
    "retention_interval_s": "DETWATCH_RETENTION_INTERVAL",
    "aggregate_hourly_days": "DETWATCH_AGGREGATE_HOURLY_DAYS",
    "ingest_concurrency": "DETWATCH_INGEST_CONCURRENCY",
    "public_url": "DETWATCH_PUBLIC_URL",
    "grafana_url": "DETWATCH_GRAFANA_URL",
    "grafana_token": "DETWATCH_GRAFANA_TOKEN",
    "images_root": "DETWATCH_IMAGES_ROOT",
    "label_studio_secret": "DETWATCH_LABEL_STUDIO_SECRET",
    "reviewers": "DETWATCH_REVIEWERS",
    "session_secret": "DETWATCH_SESSION_SECRET",
}


_MAXIMA: dict[str, tuple[float, str]] = {
    # A cutoff this far back is before any event time (1970); beyond it the nanosecond
    # cutoff no longer fits the databases' 64-bit integers.
    "retention_days": (36_525, "100 years"),
    "aggregate_hourly_days": (36_525, "100 years"),
    "retention_interval_s": (366 * 86_400, "a year"),
}


def _coerce(name: str, value: Any) -> Any:
    if name == "data_dir":
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"data_dir: expected a path, got {value!r}")
        return Path(value)
    if name in ("database_url", "api_token"):
        if isinstance(value, str):
            value = value.strip()  # a token read from a file ends in a newline; it would never match
        if value is None or value == "":
            return "" if name == "database_url" else None
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string")
        # Any scheme: storage knows the backends, including ones a program registered.
        if name == "database_url" and not _URL_SCHEME.match(value):
            raise ConfigError(f"database_url: expected a URL such as sqlite:///path or postgresql://..., got {value!r}")
        return value
    if name == "public_url":
        return _public_url(value)
    if name == "images_root":
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, (str, os.PathLike)) or "\x00" in str(value):
            raise ConfigError(f"images_root: expected a folder path, got {value!r}")
        return Path(value)
    if name == "label_studio_secret":
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or not value.strip().isprintable():
            raise ConfigError("label_studio_secret: expected a string of printable characters")
        return value.strip()
    if name in ("grafana_url", "grafana_token"):
        # Blank is none: compose passes ${DETWATCH_GRAFANA_TOKEN:-} through as "".
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string")
        return value.strip()
    if name == "reviewers":
        return _reviewers(value)
    if name == "session_secret":
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str) or len(value.strip()) < 16:
            raise ConfigError("session_secret: expected a string of at least 16 characters")
        return value.strip()
    if name == "webhook_secrets":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
            raise ConfigError("webhook_secrets: expected a string or a list of strings")
        secrets = tuple(s.strip() for s in items if s.strip())
        for secret in secrets:
            try:
                parse_secret(secret)
            except ValueError as exc:
                raise ConfigError(f"webhook_secrets: {exc}") from None
        return secrets
    if name in _MAXIMA:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if not 0 < number < float("inf"):  # NaN fails too
            raise ConfigError(f"{name}: must be a positive number")
        most, unit = _MAXIMA[name]
        if number > most:
            raise ConfigError(f"{name}: at most {most:g} ({unit}), got {number:g}")
        return number
    if name == "ingest_concurrency":
        try:
            slots = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"ingest_concurrency: expected an integer, got {value!r}") from None
        if slots < 0:
            raise ConfigError("ingest_concurrency: must be 0 (no limit) or more")
        return slots
    raise ConfigError(f"{name}: unknown setting")  # pragma: no cover - _KEYS is closed


def _reviewers(value: Any) -> tuple[Reviewer, ...]:
    """``name:token,name:token`` (the environment), or a list of ``{name, token}`` / a mapping name -> token (YAML)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        pairs = [item.strip().partition(":")[::2] for item in value.split(",") if item.strip()]
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(item, Mapping) for item in value):
        pairs = [(item.get("name"), item.get("token")) for item in value]
    else:
        raise ConfigError("reviewers: expected name:token,... or a list of {name, token}")
    reviewers: list[Reviewer] = []
    for name, token in pairs:
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise ConfigError(f"reviewers: a reviewer needs a printable name, got {name!r}")
        if not isinstance(token, str) or len(token.strip()) < 8:
            raise ConfigError(f"reviewers: {name!r} needs a token of at least 8 characters")
        reviewers.append(Reviewer(name.strip(), token.strip()))
    names, tokens = [r.name for r in reviewers], [r.token for r in reviewers]
    if len(set(names)) < len(names) or len(set(tokens)) < len(tokens):
        raise ConfigError("reviewers: each name and each token may appear once")
    return tuple(reviewers)


def _public_url(value: Any) -> str | None:
    """``http(s)://host[:port][/path]`` without a trailing slash, credentials, query or fragment; blank: none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError("public_url: expected a string")
    url = value.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"public_url: expected http(s)://host[:port][/path], got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(f"public_url: not a valid port in {url!r}") from None
    if parts.username is not None or parts.query or parts.fragment or "\\" in url or not url.isprintable():
        raise ConfigError("public_url: no credentials, query, fragment or control characters")
    return url


_TRAINER_KEYS = {
    "url": "DETWATCH_TRAINER_URL",
    "secret": "DETWATCH_TRAINER_SECRET",
    "command": "DETWATCH_TRAINER_COMMAND",
    "backoff_s": "DETWATCH_TRAINER_BACKOFF_S",
    "max_attempts": "DETWATCH_TRAINER_MAX_ATTEMPTS",
}


def trainer_settings(section: Any, environ: Mapping[str, str] | None = None) -> TrainerSettings:
    """The trainer of ``environ`` (``DETWATCH_TRAINER_*``) over a ``trainer`` section.

    Raises :class:`ConfigError` naming the setting that is wrong.
    """
    env = environ or {}
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError("trainer: expected a mapping with url, secret or command")
    unknown = sorted(set(section) - set(_TRAINER_KEYS))
    if unknown:
        raise ConfigError(f"trainer.{unknown[0]}: unknown setting (expected one of {', '.join(_TRAINER_KEYS)})")
    raw = {key: env.get(variable) or section.get(key) for key, variable in _TRAINER_KEYS.items()}
    url, secret, command = raw["url"] or None, raw["secret"] or None, raw["command"] or ""
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise ConfigError(f"trainer.url: expected http(s)://..., got {url!r}")
    if secret is not None and not isinstance(secret, str):
        raise ConfigError("trainer.secret: expected a string")
    if isinstance(command, str):
        argv = tuple(shlex.split(command))
    elif isinstance(command, (list, tuple)):
        argv = tuple(str(part) for part in command)
    else:
        raise ConfigError("trainer.command: expected a string or a list of strings")
    try:
        backoff = float(raw["backoff_s"] or 2.0)
        attempts = int(raw["max_attempts"] or DEFAULT_MAX_ATTEMPTS)
    except (TypeError, ValueError):
        raise ConfigError("trainer.backoff_s, trainer.max_attempts: expected numbers") from None
    if not 0 < backoff < float("inf"):
        raise ConfigError("trainer.backoff_s: must be a positive number")
    if attempts < 1:
        raise ConfigError("trainer.max_attempts: must be at least 1")
    return TrainerSettings(url=url, secret=secret, command=argv, backoff_s=backoff, max_attempts=attempts)


def load_settings(environ: Mapping[str, str] | None = None, path: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from ``detwatch.yaml`` (if present) overridden by the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = Path(path or env.get("DETWATCH_CONFIG", "detwatch.yaml"))
    extra: dict[str, Any] = {}
    section: Any = None
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: expected a mapping at the top level")
        for key, value in loaded.items():
            if key in _KEYS:
                values[key] = _coerce(key, value)
            elif key == "trainer":
                section = value
            else:
                extra[key] = value  # alerts, dashboards: read by their own modules
    elif path is not None:
        raise ConfigError(f"config: {config_path} does not exist")
    for key, variable in _KEYS.items():
        if variable in env:
            values[key] = _coerce(key, env[variable])
    return Settings(**values, trainer=trainer_settings(section, env), extra=extra)
