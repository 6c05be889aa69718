"""Health and readiness of the companion: ``/healthz`` and ``/readyz``.

- ``GET /healthz``: liveness. The process answers HTTP; it touches nothing else, so
  an orchestrator restarts a wedged process, never one whose database is away (a
  restart would not bring the database back).
- ``GET /readyz``: readiness, for a load balancer. 200 ``{"status": "ready"}`` when
  the database takes a write (one is started and rolled back, so a server that is
  down, a standby, a read-only file and a lock held too long all show), the data dir
  takes a small file (alerts, generated artifacts and ingest admission live there)
  and, on SQLite, the database's disk has room (a rolled-back write touches no disk).
  Otherwise 503 with the one JSON error shape and a one-word reason (``disk full``,
  ``read-only``, ``busy``, ``unreachable``); the details go to the log. No token is
  needed: the answer says nothing a caller could not learn from a failed write.

A PostgreSQL server's own disk is out of sight: a full one still shows as 503s on
writes, which senders retry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from flask import Flask, Response, jsonify

from detwatch.api._context import get_storage, settings
from detwatch.api.errors import error_response, os_error_reason, unavailable_message
from detwatch.storage import StorageError, StorageUnavailable
from detwatch.storage.sqlite import MIN_FREE_BYTES

__all__ = ["check_data_dir", "init_app"]

_log = logging.getLogger(__name__)

_PROBE_BYTES = 4096


def check_data_dir(directory: Path) -> None:
    """Raise :class:`StorageUnavailable` unless ``directory`` takes a small file (written, synced, removed)."""
    try:
        found = os.statvfs(directory)
        if found.f_bavail * found.f_frsize < MIN_FREE_BYTES:
            raise StorageUnavailable(f"{directory}: {found.f_bavail * found.f_frsize} bytes free", reason="disk full")
        fd, name = tempfile.mkstemp(dir=directory, prefix=".ready-", suffix=".tmp")
        try:
            os.write(fd, b"\0" * _PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name)
    except OSError as exc:
        raise StorageUnavailable(f"data dir {directory}: {exc}", reason=os_error_reason(exc)) from exc


def init_app(app: Flask) -> None:
    """Register ``/healthz`` and ``/readyz``."""

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            check_data_dir(settings().data_dir)
            get_storage().check_writable()
        except StorageUnavailable as exc:
            _log.warning("not ready: %s", exc)
            return error_response(503, "storage_unavailable", unavailable_message(exc))
        except StorageError as exc:
            _log.warning("not ready: %s", exc)
            return error_response(503, "storage_unavailable", "the database cannot take writes now; retry later")
        return jsonify({"status": "ready"})
