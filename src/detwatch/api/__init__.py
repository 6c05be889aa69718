"""The ``/v1`` HTTP API of the companion: one Flask blueprint per concern, registered here.

Routes (the OpenAPI document at ``/openapi.json`` describes each body):

- ``POST /v1/logs``: OTLP/HTTP logs (protobuf or JSON, gzip), as a Collector's
  ``otlphttp`` exporter sends them; prediction events are stored, other records
  ignored; partial success names rejected records.
- ``POST /v1/predictions``: ``{"predictions": [...]}`` plain JSON batch.
- ``POST /v1/feedback``: one feedback object, or ``{"feedback": [...]}``.
- ``POST/GET /v1/models``, ``GET /v1/models/{id}``: the model registry.
- ``POST /v1/datasets``, ``GET /v1/datasets/{id}``, ``POST /v1/datasets/{id}/versions``.
- ``POST/GET /v1/ab-tests``, ``GET /v1/ab-tests/{id}`` (what a router polls),
  ``POST /v1/ab-tests/{id}/stop``, ``GET /v1/ab-tests/{id}/results`` (:mod:`detwatch.abtest`).
- ``POST /v1/models/{id}/drift``: a drift report between two periods (:mod:`detwatch.drift`).
- ``GET /v1/models/{id}/quality``: precision, recall and AP estimated from reviewed labels
  (:mod:`detwatch.quality`).
- ``GET /v1/models/{id}/quality/compare``: two versions on the same labelled images, paired.
- ``GET /v1/status``: counts and version.
- ``/review``: the review page for people (:mod:`detwatch.api.review_page`), signed in
  with a reviewer token and a session cookie instead of the API token.

Each blueprint module (``ingest``, ``feedback``, ``registry``, ``drift``, ``abtests``,
``alerts``, ``review``, ``quality``) imports the shared :mod:`detwatch.api._request` and
:mod:`detwatch.api._context`, never another blueprint.

Authentication: with ``DETWATCH_API_TOKEN`` set, every ``/v1`` call needs
``Authorization: Bearer <token>``; ``/v1/feedback`` also accepts a Standard Webhooks
signature instead, when ``DETWATCH_WEBHOOK_SECRET`` is set.
"""

from __future__ import annotations

from flask import Flask

from detwatch.api import (
    abtests,
    alerts,
    drift,
    feedback,
    ingest,
    item_images,
    label_studio,
    quality,
    quality_comparison,
    registry,
    review,
    review_page,
)
from detwatch.api._context import INGEST_HOOKS, app_settings, get_storage, review_store_for, storage_for
from detwatch.api._request import no_nul_in_url

__all__ = ["INGEST_HOOKS", "app_settings", "get_storage", "init_app", "review_store_for", "storage_for"]


def init_app(app: Flask) -> None:
    """Register every ``/v1`` blueprint and the checks they share."""
    for module in (ingest, registry, drift, abtests, quality, quality_comparison):
        app.register_blueprint(module.bp)
    for with_own_auth in (feedback, alerts, review, item_images, label_studio, review_page):
        with_own_auth.init_app(app)
    app.before_request(no_nul_in_url)

    @app.teardown_appcontext
    def _nothing(_exc: BaseException | None) -> None:
        # Connections are per thread inside the backend and live with the process.
        return None
