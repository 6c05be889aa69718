"""A storage backend of one's own: the companion runs on anything that implements the protocols.

The backend here derives from nothing of the SQL storage: it *has* a SQLite storage and
offers exactly the methods the :class:`~detwatch.storage.Storage` protocols declare, each
forwarding to it. Any other attribute the companion reached for (a ``_run``, a
connection, a dialect) would be recorded and refused, and the test would fail: so
the companion, its jobs and the user guide's loop depend on the protocols alone, and a
backend is plugged in by URL scheme (:func:`~detwatch.storage.register_backend`), as
a program embedding the companion would.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from flask.testing import FlaskClient

from detwatch.app import create_app, shutdown
from detwatch.config import Settings
from detwatch.demo.loop import run_loop
from detwatch.storage import (
    ABTestStorage,
    AlertStore,
    FeedbackStorage,
    PredictionStorage,
    RegistryStorage,
    ReviewStorage,
    Storage,
    open_storage,
    register_backend,
)

SCHEME = "protocol-only"
CONCERNS: tuple[type, ...] = (
    PredictionStorage,
    FeedbackStorage,
    RegistryStorage,
    ReviewStorage,
    ABTestStorage,
    AlertStore,
)


def _protocols(protocol: type) -> list[type]:
    return [c for c in protocol.__mro__ if getattr(c, "_is_protocol", False) and c.__module__ == protocol.__module__]


def protocol_methods(protocol: type) -> set[str]:
    """The public methods ``protocol`` declares, with those of the protocols it combines."""
    return {n for c in _protocols(protocol) for n, v in vars(c).items() if callable(v) and not n.startswith("_")}


def protocol_attributes(protocol: type) -> set[str]:
    """The attributes ``protocol`` declares (``url``), with those of the protocols it combines."""
    return {n for c in _protocols(protocol) for n in vars(c).get("__annotations__", {})}


class ProtocolOnly:
    """Forwards the protocols' methods to ``inner``, counting calls; refuses (and records) anything else."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: what the protocols do not declare.
        self.refused.append(name)
        raise AttributeError(f"{name!r} is not part of the Storage protocols")


def _forward(name: str) -> Callable[..., Any]:
    def method(self: ProtocolOnly, *args: Any, **kwargs: Any) -> Any:
        self.calls[name] += 1
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


def _attribute(name: str) -> property:
    return property(lambda self: getattr(self.inner, name))


for _name in protocol_methods(Storage):
    setattr(ProtocolOnly, _name, _forward(_name))
for _name in protocol_attributes(Storage):
    setattr(ProtocolOnly, _name, _attribute(_name))


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[list[ProtocolOnly]]:
    """Registers the scheme; every backend the companion opens with it (one per process role) is listed."""
    opened: list[ProtocolOnly] = []

    def open_backend(url: str) -> Storage:
        backend = ProtocolOnly(open_storage("sqlite:///" + url.removeprefix(f"{SCHEME}://")))
        opened.append(backend)
        return cast(Storage, backend)

    register_backend(SCHEME, open_backend)
    yield opened


def url(tmp_path: Path) -> str:
    return f"{SCHEME}://{tmp_path / 'own.db'}"


def seen(backends: list[ProtocolOnly]) -> Counter[str]:
    total: Counter[str] = Counter()
    for backend in backends:
        assert not backend.refused, f"the companion reached past the protocols: {backend.refused}"
        total.update(backend.calls)
    return total


def test_the_protocols_cover_every_concern_and_are_disjoint_from_sql_internals() -> None:
    methods = protocol_methods(Storage)
    assert set().union(*(protocol_methods(c) for c in CONCERNS)) <= methods
    assert not any(name.startswith("_") for name in methods)
    assert protocol_attributes(Storage) == {"url"}  # what /v1/status shows (without credentials)
    assert {"migrate", "close", "ingest_predictions", "add_feedback", "put_alert", "claim_flagged_items"} <= methods


def test_the_user_guides_loop_runs_on_a_backend_of_ones_own(tmp_path: Path, backends: list[ProtocolOnly]) -> None:
    out = io.StringIO()
    result = run_loop(out=out, workdir=tmp_path, database_url=url(tmp_path))
    # The same loop as on SQLite: flags, feedback, a reviewed version, a job that registers a model.
    assert result["images_opened"] == len(result["flagged"]) > 0
    assert result["version"]["item_count"] == len(result["flagged"])
    assert result["job"]["status"] == "succeeded", result["job"]
    assert result["job"]["model_version"] in result["model_versions"]
    calls = seen(backends)
    for concern in (PredictionStorage, FeedbackStorage, RegistryStorage, ReviewStorage):
        assert calls.keys() & protocol_methods(concern), f"nothing of {concern.__name__} was used"
    assert calls["ingest_predictions"] and calls["add_feedback"] and calls["claim_flagged_items"]
    assert calls["take_due_training_job"]  # the training dispatcher's thread, on the same backend


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def test_drift_ab_tests_and_alerts_run_on_a_backend_of_ones_own(tmp_path: Path, backends: list[ProtocolOnly]) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=url(tmp_path)))
    try:
        client: FlaskClient = app.test_client()
        _ok(client.post("/v1/models", json={"model_id": "cars", "version": "v1"}), 201)
        now = time.time_ns()
        events = [
            {
                "prediction_id": f"p{i}",
                "model_id": "cars",
                "ab_variant": "ab"[i % 2],
                "time_unix_nano": now - (i % 48) * 3_600_000_000_000,
                "latency_ms": 20.0 + i % 7,
                "image": {"key": f"{i}.jpg", "width": 640, "height": 480},
                "detections": [{"class": "car", "confidence": 0.5 + (i % 5) / 10, "box": [1, 1, 40, 40]}],
            }
            for i in range(200)
        ]
        assert _ok(client.post("/v1/predictions", json={"predictions": events}))["accepted"] == 200
        _ok(client.post("/v1/feedback", json={"type": "false_positive", "prediction_id": "p3"}), 201)
        drift = _ok(
            client.post(
                "/v1/models/cars/drift", json={"reference_period": "previous 24h", "current_period": "last 24h"}
            )
        )
        assert drift["model_id"] == "cars"
        test = _ok(
            client.post(
                "/v1/ab-tests",
                json={"name": "a/a", "model_a_id": "cars", "model_b_id": "cars", "config": {"traffic_split": 0.5}},
            ),
            201,
        )
        _ok(client.get(f"/v1/ab-tests/{test['id']}/results"))
        alert = {
            "name": "Low confidence",
            "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
            "notify": ["slack:#ml-alerts"],
        }
        _ok(client.post("/v1/models/cars/alerts", json=alert), 201)
        assert [a["name"] for a in _ok(client.get("/v1/models/cars/alerts"))["alerts"]] == ["Low confidence"]
        quality = _ok(client.get("/v1/models/cars/quality?period=7d&ab_variant=a"))
        assert quality["estimated_precision"]["classes"]["car"]["detections"] == 100  # arm a's, summed by the backend
        _ok(client.get("/v1/status"))
    finally:
        shutdown(app)
    calls = seen(backends)
    for concern in (PredictionStorage, FeedbackStorage, RegistryStorage, ABTestStorage, AlertStore):
        assert calls.keys() & protocol_methods(concern), f"nothing of {concern.__name__} was used"
    assert calls["aggregates"] and calls["ab_arm_sums"] and calls["put_alert"] and calls["close"]
    assert calls["aggregate_counts"] and calls["labelled_items"]


def test_an_unknown_scheme_is_refused_when_the_app_is_built_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"schemes: sqlite:, postgresql:, postgres:.*'nosuch://x'"):
        create_app(Settings(data_dir=tmp_path, database_url="nosuch://x"))
    with pytest.raises(ValueError, match="scheme"):
        register_backend("not a scheme", lambda url: open_storage("sqlite:///x"))
