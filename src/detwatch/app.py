"""The companion's Flask application factory.

``create_app()`` builds a new application; nothing binds at import time, so tests
get their own app with their own database, and gunicorn workers each open their
storage after the fork (see :func:`detwatch.api._context.get_storage`). Production runs
under gunicorn (``detwatch serve``); ``flask --app detwatch.app run`` works for
development.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from opentelemetry import metrics

from detwatch import api
from detwatch.api import INGEST_HOOKS, app_settings, errors, health, review_store_for, storage_for
from detwatch.api.openapi import openapi_document
from detwatch.config import Settings, load_settings
from detwatch.instruments import CompanionInstruments
from detwatch.jobs.drift_schedule import start_drift_schedule
from detwatch.jobs.quality_schedule import start_quality_schedule
from detwatch.jobs.retention import RetentionScheduler
from detwatch.jobs.training_dispatch import TrainingDispatcher
from detwatch.review import Flagger
from detwatch.review.training import trainer_from
from detwatch.storage import backend_for
from detwatch.version import __version__

__all__ = ["create_app", "shutdown"]

_telemetry_configured = False


def _configure_own_telemetry() -> None:
    """Export the companion's own metrics (``objdet.feedback``, ...) when a Collector is named.

    Only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the metrics-specific variable) is set
    and ``OTEL_SDK_DISABLED`` is not, once per process (each gunicorn worker).
    """
    global _telemetry_configured  # noqa: PLW0603 - one SDK set-up per process
    if _telemetry_configured or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")):
        return
    from detwatch.telemetry import configure_opentelemetry

    # The companion decorates no inference: nothing for a recorder process to do.
    configure_opentelemetry(service_name="detwatch-companion", service_version=__version__, recorder="thread")
    _telemetry_configured = True


def create_app(
    settings: Settings | None = None,
    test_config: Mapping[str, Any] | None = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
) -> Flask:
    """A new companion application; ``settings`` default to the environment/``detwatch.yaml``.

    The companion's own metrics go to ``meter_provider``; by default to the global provider
    as it is when the app is built (after :func:`_configure_own_telemetry` set it up).
    """
    app = Flask("detwatch")
    resolved = settings if settings is not None else load_settings()
    backend_for(resolved.effective_database_url)  # an unknown scheme fails here, not at the first request
    app.config["DETWATCH_SETTINGS"] = resolved
    app.config["MAX_CONTENT_LENGTH"] = resolved.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if test_config:
        app.config.update(test_config)
    resolved.data_dir.mkdir(parents=True, exist_ok=True)
    _configure_own_telemetry()
    # After the telemetry set-up, so that the instruments reach the Collector.
    instruments = CompanionInstruments.create(meter_provider)
    app.extensions["detwatch.instruments"] = instruments
    # The review package decides what is flagged; storage calls it inside its ingest and
    # feedback transactions once the storage is opened (api._context). Wired before the
    # blueprints, since one of them may open the storage at start (the alerts' import).
    flagger = Flagger(instruments.review_flagged)
    app.extensions["detwatch.review.flagger"] = flagger
    app.extensions[INGEST_HOOKS] = (flagger,)
    errors.init_app(app)
    api.init_app(app)
    health.init_app(app)
    app.extensions["detwatch.drift_scheduler"] = start_drift_schedule(
        resolved.extra.get("drift"), resolved.data_dir, resolved.effective_database_url, instruments
    )
    app.extensions["detwatch.quality_scheduler"] = start_quality_schedule(
        resolved.extra.get("quality"), resolved.data_dir, resolved.effective_database_url, instruments
    )

    retention = RetentionScheduler(
        lambda: storage_for(app),
        days=resolved.retention_days,
        interval_s=resolved.retention_interval_s,
        lock_path=resolved.data_dir / "retention.lock",
        hourly_days=resolved.aggregate_hourly_days,
    )
    retention.start()  # one daemon thread per process; gunicorn builds the app in each worker, after the fork
    app.extensions["detwatch.jobs.retention"] = retention
    training = TrainingDispatcher(
        lambda: review_store_for(app), lambda: trainer_from(app_settings(app).trainer, app_settings(app).public_url)
    )
    training.start()
    app.extensions["detwatch.jobs.training"] = training

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    return app


def shutdown(app: Flask) -> None:
    """Stop ``app``'s jobs and close its storage: for a test, or a process embedding the companion, that ends.

    A gunicorn worker needs none of it: its daemon threads end with the process.
    """
    for key in (
        "detwatch.jobs.training",
        "detwatch.jobs.retention",
        "detwatch.drift_scheduler",
        "detwatch.quality_scheduler",
    ):
        job = app.extensions.get(key)
        if job is not None:
            job.stop()
    storage = app.extensions.pop("detwatch.storage", None)
    if storage is not None:
        storage.close()
