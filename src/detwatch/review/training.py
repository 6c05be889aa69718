"""Handing training jobs to a trainer, with retries that never lose a job.

``POST /v1/training-jobs`` records the job (``queued``) before anything else, then a
dispatcher thread in the serving process hands it to the configured trainer:

- a **webhook** (``DETWATCH_TRAINER_URL``, signed with the Standard Webhooks scheme
  when ``DETWATCH_TRAINER_SECRET`` is set; the same ``webhook-id`` on every retry, so
  the receiver can de-duplicate): a 2xx answer is a hand-off;
- a **local command** (``DETWATCH_TRAINER_COMMAND``, split like a shell would, run
  without a shell): the job document on its standard input, ``DETWATCH_JOB_FILE``
  naming the same document on disk; exit status 0 is a hand-off.

Either may be given in ``detwatch.yaml`` as ``trainer: {url, secret, command}``. The
job document (:func:`job_document`) holds the job, where to download the dataset
version (COCO and YOLO export URLs) and where to report back: ``POST
{callback.url}`` with ``Authorization: Bearer {callback.token}`` and ``{"status":
"running" | "succeeded" | "failed", "model_version": ..., "message": ...}``. A
succeeded job registers ``model_version`` of the base model, ready for an A/B test.
A job with a gate (``gate: {"metric", "max_drop"}``) also gives ``gate.predictions_url``:
the trainer posts its candidate's detections on the labelled images there before
reporting success, and a candidate worse than the base by more than ``max_drop``
ends ``gated``, unregistered (:mod:`detwatch.quality._gate`).

What a trainer is trusted with, and why:

- Every URL of the document starts with the configured public URL
  (``DETWATCH_PUBLIC_URL`` or ``public_url`` in ``detwatch.yaml``), never with the
  request's ``Host`` header: a token holder who sent ``Host: attacker:port`` got the
  job handed to the trainer with URLs on that host, which served the trainer a
  dataset of its choosing and received the job's token. Without a public URL no job
  is handed off (``POST /v1/training-jobs`` says so with a 503).
- The trainer's one credential is the job's callback token: it reports the job's
  status and reads that job's dataset version (the ``dataset`` URLs are job-scoped
  routes, ``/v1/training-jobs/{id}/dataset...``) until the job has finished. The
  companion's API token never reaches a trainer: a local command runs without the
  companion's secrets in its environment.

A failed hand-off (connection refused, 5xx, non-zero exit, timeout) is recorded in
the job's history and retried with exponential backoff (``DETWATCH_TRAINER_BACKOFF_S``,
default 2 s, doubling up to 5 minutes) up to ``DETWATCH_TRAINER_MAX_ATTEMPTS`` (8)
times; then the job
is ``failed`` with the last error. Jobs are leased while being handed off, so several
processes never hand off the same job at once, and a process that dies mid-way
leaves the job to be retried when the lease ends. Without a trainer configured the
job stays ``queued`` (recorded, due) until one is.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from detwatch.config import DEFAULT_MAX_ATTEMPTS, TrainerSettings
from detwatch.contract.shapes.review import FINISHED_JOB_STATUSES
from detwatch.contract.webhooks import signed_headers
from detwatch.review._store import DataEngineStore
from detwatch.storage.records import TrainingJobRecord

__all__ = ["MAX_ATTEMPTS", "Trainer", "dispatch_once", "job_document", "trainer_from"]

_logger = logging.getLogger("detwatch.training")

MAX_ATTEMPTS: Final = DEFAULT_MAX_ATTEMPTS
MAX_BACKOFF_S: Final = 300.0
WEBHOOK_TIMEOUT_S: Final = 10.0
COMMAND_TIMEOUT_S: Final = 3600.0


@dataclass(frozen=True)
class Trainer:
    """Where jobs go: a webhook URL (optionally signed) or a local command."""

    url: str | None = None
    secret: str | None = None
    command: tuple[str, ...] = ()
    backoff_s: float = 2.0
    max_attempts: int = MAX_ATTEMPTS
    public_url: str | None = None
    """The companion's configured address, the base of every URL a trainer is given."""

    @property
    def configured(self) -> bool:
        return bool(self.url or self.command)

    @property
    def ready(self) -> bool:
        """Whether jobs can be handed off: a trainer, and an address to give it (see the module docstring)."""
        return self.configured and bool(self.public_url)

    @property
    def lease_s(self) -> float:
        return COMMAND_TIMEOUT_S + 60 if self.command else WEBHOOK_TIMEOUT_S + 60

    def describe(self) -> str:
        """What the API says the trainer is: never its credentials (user:password@, the query string)."""
        if self.url:
            parts = urllib.parse.urlsplit(self.url)
            host = parts.hostname or ""
            if ":" in host:  # IPv6: bracketed again
                host = f"[{host}]"
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            return f"webhook {urllib.parse.urlunsplit((parts.scheme, host, parts.path, '', ''))}"
        return f"command {shlex.join(self.command)}" if self.command else "none"


def trainer_from(settings: TrainerSettings, public_url: str | None) -> Trainer:
    """The trainer of the companion's settings (``DETWATCH_TRAINER_*`` or ``detwatch.yaml``'s ``trainer``)."""
    return Trainer(
        url=settings.url,
        secret=settings.secret,
        command=settings.command,
        backoff_s=settings.backoff_s,
        max_attempts=settings.max_attempts,
        public_url=public_url,
    )


def job_document(job: TrainingJobRecord, base_url: str) -> dict[str, Any]:
    """What the trainer receives: the job, its dataset's URLs, the callback (all under ``base_url``).

    The callback token is the bearer for the dataset URLs too: they are the job's own
    routes, so that the token reads nothing but this job's dataset version.
    """
    own = f"{base_url}/v1/training-jobs/{job.id}"
    document: dict[str, Any] = {
        "type": "training_job.created",
        "job": {"id": job.id, "name": job.name, "dataset_id": job.dataset_id, "version_id": job.version_id,
                "base_model_id": job.base_model_id, "options": job.options, "gate": job.gate},
        "dataset": {"version_url": f"{own}/dataset", "coco_url": f"{own}/dataset/export?format=coco",
                    "yolo_url": f"{own}/dataset/export?format=yolo"},
        "callback": {"url": f"{own}/status", "token": job.callback_token},
    }  # fmt: skip
    if job.gate is not None:
        # Where the candidate's detections on the labelled images go before it reports
        # success (image keys: the COCO export's ``detwatch_image_key``), same token.
        document["gate"] = {"predictions_url": f"{own}/predictions", **job.gate}
    return document


_SECRET_VARIABLES: Final = frozenset(
    {"DETWATCH_API_TOKEN", "DETWATCH_WEBHOOK_SECRET", "DETWATCH_TRAINER_SECRET", "DETWATCH_DATABASE_URL",
     "DETWATCH_GRAFANA_TOKEN"}
)  # fmt: skip
"""The companion's credentials: a local trainer command's environment goes without them."""


def hand_off(trainer: Trainer, job: TrainingJobRecord) -> str | None:
    """One attempt; returns the error, or ``None`` when the trainer took the job."""
    assert trainer.public_url, "hand_off needs a trainer.ready"
    document = job_document(job, trainer.public_url)
    body = json.dumps(document, separators=(",", ":")).encode()
    if trainer.url:
        headers = {"Content-Type": "application/json"}
        if trainer.secret:
            headers.update(signed_headers(trainer.secret, body, webhook_id=f"msg_job_{job.id}"))
        request = urllib.request.Request(trainer.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            return f"trainer webhook answered {exc.code}"
        except (OSError, ValueError) as exc:
            return f"trainer webhook unreachable: {exc}"
    with tempfile.NamedTemporaryFile("wb", suffix=".json", prefix="detwatch-job-", delete=False) as handle:
        handle.write(body)
    env = {k: v for k, v in os.environ.items() if k not in _SECRET_VARIABLES}
    env["DETWATCH_JOB_FILE"] = handle.name
    try:
        done = subprocess.run(
            list(trainer.command), input=body, capture_output=True, timeout=COMMAND_TIMEOUT_S, env=env, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"trainer command failed to run: {exc}"
    finally:
        # missing_ok: a trainer may take the file for itself (move or delete it); that is a hand-off too.
        Path(handle.name).unlink(missing_ok=True)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-500:]
        return f"trainer command exited {done.returncode}: {tail}"
    return None


def dispatch_once(store: DataEngineStore, trainer: Trainer) -> bool:
    """Hand off one due job (if any); ``True`` when one was attempted (never without :attr:`Trainer.ready`)."""
    if not trainer.ready:
        return False
    job = store.take_due_job(lease_s=trainer.lease_s)
    if job is None:
        return False
    if job.status in FINISHED_JOB_STATUSES:
        store.record_dispatch(job.id, error=None, retry_in_s=None)
        return True
    error = hand_off(trainer, job)
    attempts = job.attempts
    if error is None:
        store.record_dispatch(job.id, error=None, retry_in_s=None)
    elif attempts >= trainer.max_attempts:
        store.record_dispatch(job.id, error=error, retry_in_s=None)
    else:
        delay = min(trainer.backoff_s * 2.0 ** (attempts - 1), MAX_BACKOFF_S)
        store.record_dispatch(job.id, error=error, retry_in_s=delay)
    _logger.info("training job %s hand-off attempt %d: %s", job.id, attempts, error or "ok")
    return True
