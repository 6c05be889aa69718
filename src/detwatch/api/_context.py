"""What every route of the companion reads from its application: settings, storage, the token check.

The bottom of the HTTP layer: blueprints and the error handlers import it, it imports none of
them. Storage is opened on first use in each process (after gunicorn's fork, never before).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Mapping
from typing import Protocol, cast

from flask import Flask, current_app, request

from detwatch.config import Settings
from detwatch.instruments import CompanionInstruments
from detwatch.storage import Storage, open_storage
from detwatch.storage.review import DataEngineStore
from detwatch_instrumentation import semconv

__all__ = [
    "app_settings",
    "authenticates_itself",
    "bearer_ok",
    "get_storage",
    "instruments",
    "review_store",
    "review_store_for",
    "settings",
    "storage_for",
    "trust_own_authentication",
    "wake_training_dispatcher",
]


def settings() -> Settings:
    """The settings of the app handling this request."""
    return app_settings(current_app)


def app_settings(app: Flask) -> Settings:
    return cast(Settings, app.config["DETWATCH_SETTINGS"])


_storage_lock = threading.Lock()


def get_storage() -> Storage:
    """The process's storage, opened on first use (after a gunicorn fork, never before).

    Opened under a lock: with threaded workers (gunicorn's gthread, Flask's dev server) two
    first requests at once would each open (and migrate) one.
    """
    return storage_for(cast(Flask, current_app._get_current_object()))  # type: ignore[attr-defined]


def storage_for(app: Flask) -> Storage:
    """``app``'s storage, opened on first use; for a job's thread, which has no request."""
    storage = app.extensions.get("detwatch.storage")
    if storage is not None:
        return cast(Storage, storage)
    with _storage_lock:
        return _open_storage(app)


def _open_storage(app: Flask) -> Storage:
    storage = app.extensions.get("detwatch.storage")
    if storage is None:
        storage = open_storage(app_settings(app).effective_database_url)
        storage.on_flagged(_flag_counter(app))
        storage.migrate()
        app.extensions["detwatch.storage"] = storage
    return cast(Storage, storage)


def bearer_ok() -> bool:
    """Whether the request carries the API token, or none is configured."""
    token = settings().api_token
    if not token:  # None or "" (as the environment's empty value): no token required
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def trust_own_authentication(app: Flask, *endpoints: str) -> None:
    """Name routes that check their caller themselves (a webhook signature, a job's token).

    Each blueprint names its own, so that the checks shared by all routes (a NUL in the
    URL) know them without importing the blueprint.
    """
    app.extensions.setdefault("detwatch.self_authenticating", set()).update(endpoints)


def authenticates_itself(endpoint: str | None) -> bool:
    """Whether the route ``endpoint`` checks its caller itself (see :func:`trust_own_authentication`)."""
    return endpoint in current_app.extensions.get("detwatch.self_authenticating", set())


def instruments() -> CompanionInstruments:
    """The app's own instruments (built by ``create_app`` from its meter provider)."""
    return cast(CompanionInstruments, current_app.extensions["detwatch.instruments"])


def review_store() -> DataEngineStore:
    """The process's data-engine store, on the companion's storage."""
    return review_store_for(cast(Flask, current_app._get_current_object()))  # type: ignore[attr-defined]


def review_store_for(app: Flask) -> DataEngineStore:
    """``app``'s data-engine store; for a job's thread, which has no request."""
    storage = storage_for(app)
    found = app.extensions.get("detwatch.review")
    if found is None or found.storage is not storage:
        found = DataEngineStore(storage)
        app.extensions["detwatch.review"] = found
    return cast(DataEngineStore, found)


class _Waker(Protocol):
    def wake(self) -> None: ...


def wake_training_dispatcher() -> None:
    """Tell this process's training dispatcher (a job started by ``create_app``) that a job is due."""
    dispatcher = current_app.extensions.get("detwatch.jobs.training")
    if dispatcher is not None:
        cast(_Waker, dispatcher).wake()


def _flag_counter(app: Flask) -> Callable[[Mapping[str, int]], None]:
    """Count what the data engine flags on the app's ``objdet.review.flagged`` counter, by reason."""
    counter = cast(CompanionInstruments, app.extensions["detwatch.instruments"]).review_flagged

    def count(counts: Mapping[str, int]) -> None:
        for reason, n in counts.items():
            counter.add(n, {semconv.ATTR_SAMPLING_STRATEGY: reason})

    return count
