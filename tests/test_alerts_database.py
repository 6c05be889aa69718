"""Alerts in the database: replicas sharing one see each other's alerts, and what they derive follows.

Two companion apps on two data dirs (two replicas on two machines) share one real
database, SQLite and PostgreSQL in turn. An alert created on one is listed and
generated on the other at its next request; the other's cached artifacts are rebuilt
because the set's revision moved, and only then. Alert files of an older version are
imported once at start-up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.alerting import generate
from detwatch.alerting.definitions import MAX_MIN_IMAGES, MAX_NOTIFY, MAX_THRESHOLD, parse_alert
from detwatch.api.openapi import openapi_document
from detwatch.app import create_app
from detwatch.config import Settings, load_settings
from detwatch.storage import AlertNameTaken, Storage

CONDITION = {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"}


def body(name: str, threshold: float = 0.7) -> dict[str, Any]:
    return {"name": name, "condition": {**CONDITION, "threshold": threshold}, "notify": ["slack:#ml-alerts"]}


def rules_file(data_dir: Path) -> str:
    return (data_dir / "generated" / "rules" / "detwatch.rules.yml").read_text()


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[tuple[Flask, Flask]]:
    """Two apps, each with its own data dir, on one database (no detwatch.yaml alerts)."""
    apps = tuple(create_app(Settings(data_dir=tmp_path / f"replica-{i}", database_url=database_url)) for i in (0, 1))
    yield apps[0], apps[1]
    for app in apps:
        storage = app.extensions.get("detwatch.storage")
        if storage is not None:
            storage.close()


def names(client: FlaskClient, model_id: str = "vehicles") -> list[str]:
    answer = client.get(f"/v1/models/{model_id}/alerts")
    assert answer.status_code == 200, answer.get_json()
    return sorted(a["name"] for a in answer.get_json()["alerts"])


def test_an_alert_created_on_one_replica_is_listed_and_generated_on_the_other(
    replicas: tuple[Flask, Flask], tmp_path: Path
) -> None:
    a, b = (app.test_client() for app in replicas)
    assert names(b) == []
    before = b.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
    assert "alert: LowConfidence" not in before

    assert a.post("/v1/models/vehicles/alerts", json=body("Low Confidence")).status_code == 201
    assert names(b) == ["Low Confidence"]
    served = b.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
    assert "alert: LowConfidence" in served
    # The other replica's own files follow too (its vmalert reads them), not only its answers.
    assert rules_file(tmp_path / "replica-1") == served

    # A change of the threshold on b reaches a's cached artifacts.
    assert a.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"] == served
    assert b.post("/v1/models/vehicles/alerts", json=body("Low Confidence", 0.55)).status_code == 200
    changed = a.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
    assert "0.55" in changed and changed != served
    assert a.get("/v1/models/vehicles/alerts").get_json()["alerts"][0]["condition"]["threshold"] == 0.55
    assert rules_file(tmp_path / "replica-0") == changed


def test_artifacts_are_rebuilt_when_the_revision_moves_and_only_then(
    replicas: tuple[Flask, Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = (app.test_client() for app in replicas)
    assert a.post("/v1/models/vehicles/alerts", json=body("First")).status_code == 201
    b.get("/v1/alerts/artifacts")  # b derives revision 1
    built: list[int] = []
    real = generate.artifacts

    def counted(config: generate.GenerateConfig) -> dict[str, str]:
        built.append(len(config.alerts))
        return real(config)

    monkeypatch.setattr("detwatch.api.alerts.artifacts", counted)
    for _ in range(3):
        b.get("/v1/alerts/artifacts")
    assert built == []  # same revision: the cached files
    assert a.post("/v1/models/vehicles/alerts", json=body("Second")).status_code == 201
    files = b.get("/v1/alerts/artifacts").get_json()["files"]
    assert "alert: Second" in files["rules/detwatch.rules.yml"]
    b.get("/v1/alerts/artifacts")
    assert built == [2]  # once, for the new revision


def test_a_name_held_by_another_models_alert_on_another_replica_is_a_409(replicas: tuple[Flask, Flask]) -> None:
    a, b = (app.test_client() for app in replicas)
    assert a.post("/v1/models/model-a/alerts", json=body("Shared Name")).status_code == 201
    clash = b.post("/v1/models/model-b/alerts", json=body("shared name!"))
    assert clash.status_code == 409, clash.get_json()
    assert clash.get_json()["error"]["field"] == "name" and "model-a" in clash.get_json()["error"]["message"]
    assert names(a, "model-b") == [] and names(b, "model-a") == ["Shared Name"]


def test_replicas_creating_alerts_at_once_all_end_up_stored_and_generated(
    replicas: tuple[Flask, Flask], tmp_path: Path
) -> None:
    answers: list[int] = []
    lock = threading.Lock()

    def create(app: Flask, prefix: str) -> None:
        client = app.test_client()
        for i in range(6):
            status = client.post("/v1/models/vehicles/alerts", json=body(f"{prefix} {i}")).status_code
            with lock:
                answers.append(status)

    threads = [
        threading.Thread(target=create, args=(app, f"Replica {n} Thread {t}"))
        for n, app in enumerate(replicas)
        for t in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answers == [201] * 24
    expected = sorted(f"Replica {n} Thread {t} {i}" for n in range(2) for t in range(2) for i in range(6))
    storage: Storage = replicas[0].extensions["detwatch.storage"]
    assert storage.alerts_revision() == 24  # every write moved it once
    for n, app in enumerate(replicas):
        client = app.test_client()
        assert names(client) == expected
        served = client.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
        assert served.count("alert: Replica") == 24
        assert rules_file(tmp_path / f"replica-{n}") == served


def test_put_alert_raises_the_revision_and_refuses_another_models_name(storage: Storage) -> None:
    alert = parse_alert({**body("Lag"), "model_id": "m1"})
    assert storage.alerts_revision() == 0 and storage.list_alerts() == []
    first = storage.put_alert(slug=alert.slug, name=alert.name, model_id="m1", definition=alert.to_json())
    assert (first.replaced, first.record.revision) == (False, 1)
    again = storage.put_alert(slug=alert.slug, name=alert.name, model_id="m1", definition=alert.to_json())
    assert (again.replaced, again.record.revision, storage.alerts_revision()) == (True, 2, 2)
    assert again.record.created_unix_nano == first.record.created_unix_nano
    with pytest.raises(AlertNameTaken) as taken:
        storage.put_alert(slug=alert.slug, name="LAG", model_id="m2", definition=alert.to_json())
    assert taken.value.existing.model_id == "m1"
    assert storage.alerts_revision() == 2  # the refused write rolled back, revision included
    [stored] = storage.list_alerts()
    assert parse_alert(stored.definition) == alert and stored.revision == 2
    assert storage.counts()["alerts"] == 1


def test_import_stores_missing_alerts_once(storage: Storage) -> None:
    rows = [(f"a-{i}", f"A {i}", "m", parse_alert({**body(f"A {i}"), "model_id": "m"}).to_json()) for i in range(3)]
    assert storage.import_alerts(rows) == 3
    revision = storage.alerts_revision()
    assert storage.import_alerts(rows) == 0
    assert storage.alerts_revision() == revision  # nothing changed: derived artifacts stay valid
    assert storage.import_alerts([]) == 0
    assert [r.slug for r in storage.list_alerts()] == ["a-0", "a-1", "a-2"]


def write_old_alert_files(data_dir: Path) -> None:
    """The layout of an older version: one JSON file per alert, a lock file and a stray temporary file."""
    directory = data_dir / "alerts"
    directory.mkdir(parents=True)
    for name, threshold in (("Old One", 0.6), ("Old Two", 0.4)):
        alert = parse_alert({**body(name, threshold), "model_id": "vehicles"})
        (directory / f"{alert.slug}.json").write_text(json.dumps(alert.to_json(), indent=2))
    (directory / "broken.json").write_text('{"name": "half')
    (directory / ".lock").write_bytes(b"")
    (directory / ".tmp-x.json").write_text("{}")


def test_alert_files_of_an_older_version_are_imported_once(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    write_old_alert_files(data_dir)
    settings = Settings(data_dir=data_dir, database_url=database_url)
    client = create_app(settings).test_client()
    assert names(client) == ["Old One", "Old Two"]
    assert not (data_dir / "alerts").exists() and (data_dir / "alerts.imported" / "old-one.json").is_file()
    assert "alert: OldOne" in rules_file(data_dir)  # generated at start from the imported set

    # Changed through the API, then the old files come back (a restored backup, a second
    # replica's copy of the data dir): the stored alert wins, nothing is duplicated.
    assert client.post("/v1/models/vehicles/alerts", json=body("Old One", 0.3)).status_code == 200
    (data_dir / "alerts.imported").rename(data_dir / "alerts")
    again = create_app(settings).test_client()
    listed = {
        a["name"]: a["condition"]["threshold"] for a in again.get("/v1/models/vehicles/alerts").get_json()["alerts"]
    }
    assert listed == {"Old One": 0.3, "Old Two": 0.4}


def test_grafana_settings_come_from_the_environment_or_the_yaml(tmp_path: Path) -> None:
    config = tmp_path / "detwatch.yaml"
    config.write_text("grafana_url: http://grafana.internal:3000\n")
    from_file = load_settings({}, config)
    assert (from_file.grafana_url, from_file.grafana_token) == ("http://grafana.internal:3000", None)
    assert "grafana_url" not in from_file.extra
    env = {"DETWATCH_GRAFANA_URL": "http://g:3000", "DETWATCH_GRAFANA_TOKEN": "glsa_x\n"}
    from_env = load_settings(env, config)
    assert (from_env.grafana_url, from_env.grafana_token) == ("http://g:3000", "glsa_x")
    blank = load_settings({"DETWATCH_GRAFANA_TOKEN": ""}, config)  # compose's ${VAR:-}
    assert blank.grafana_token is None


FUZZ_FOUND: dict[str, Any] = {
    "condition": {
        "metric": "avg_confidence",
        "window": "880m",
        "for": "068s",
        "anomaly": None,
        "min_images": 1029463647994336768,
        "threshold": 0.8,
        "operator": "lt",
    },
    "name": "C80",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({}, "condition.anomaly"),  # the body the fuzz test found: refused for its first fault
        ({"anomaly": "absent"}, "condition.min_images"),
        ({"anomaly": "absent", "min_images": MAX_MIN_IMAGES + 1}, "condition.min_images"),
        ({"anomaly": "absent", "min_images": -1}, "condition.min_images"),
        (
            {"anomaly": "absent", "min_images": 5, "metric": "throughput", "threshold": MAX_THRESHOLD * 10},
            "condition.threshold",
        ),
    ],
)
def test_what_the_document_forbids_the_server_refuses_naming_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    client = create_app(Settings(data_dir=tmp_path)).test_client()
    condition = {**FUZZ_FOUND["condition"], **change}
    if condition.pop("anomaly") != "absent":
        condition["anomaly"] = None
    answer = client.post("/v1/models/vehicles/alerts", json={**FUZZ_FOUND, "condition": condition})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["field"] == field
    condition = {**FUZZ_FOUND["condition"], "min_images": MAX_MIN_IMAGES}
    del condition["anomaly"]
    # At the bound, the document's and the server's, it is accepted.
    assert client.post("/v1/models/vehicles/alerts", json={**FUZZ_FOUND, "condition": condition}).status_code == 201


@pytest.mark.parametrize("key", ["version", "arm", "notify"])
def test_a_null_optional_key_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    client = create_app(Settings(data_dir=tmp_path)).test_client()
    answer = client.post("/v1/models/vehicles/alerts", json={**body("Nulls"), key: None})
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == key


def _alert_create_schema() -> dict[str, Any]:
    """The request schema of ``POST /v1/models/{model_id}/alerts``, its ``$ref`` followed."""
    document = openapi_document()
    body = document["paths"]["/v1/models/{model_id}/alerts"]["post"]["requestBody"]["content"]
    schema: dict[str, Any] = body["application/json"]["schema"]
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_the_document_states_the_servers_bounds() -> None:
    branches = _alert_create_schema()["properties"]["condition"]["oneOf"]
    assert {b["properties"]["min_images"]["maximum"] for b in branches} == {MAX_MIN_IMAGES}
    assert max(b["properties"]["threshold"]["maximum"] for b in branches) == MAX_THRESHOLD
    # Nowhere is null allowed for an optional key: none of them names the type.
    for branch in branches:
        assert "null" not in json.dumps(branch.get("properties", {}).get("anomaly", {}))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "-leading dash"}, "name"),  # the slug drops it: the document requires a letter or digit first
        ({"name": " Leading Space"}, "name"),
        ({"notify": [f"slack:#c{i}" for i in range(MAX_NOTIFY + 1)]}, "notify"),
    ],
)
def test_names_and_notify_lists_the_document_forbids_are_refused(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    client = create_app(Settings(data_dir=tmp_path)).test_client()
    answer = client.post("/v1/models/vehicles/alerts", json={**body("Fine"), **change})
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field, answer.get_json()
    at_most = {**body("Fine"), "notify": [f"slack:#c{i}" for i in range(MAX_NOTIFY)]}
    assert client.post("/v1/models/vehicles/alerts", json=at_most).status_code == 201
    assert _alert_create_schema()["properties"]["notify"]["maxItems"] == MAX_NOTIFY
