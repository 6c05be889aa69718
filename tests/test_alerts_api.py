"""``create_alert`` on the companion: stored, artifacts regenerated and served, pushed to Grafana.

The seed's calls run word for word through the real client against the real server
(gunicorn); Grafana is a local fake that checks each provisioning call against the
SDK's alerting models, the format Grafana's provisioning API takes.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from flask.testing import FlaskClient
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model

import detwatch
from _components import binary
from _loopback import LoopbackServer
from _service import Companion
from detwatch.app import create_app
from detwatch.config import Settings
from detwatch.exceptions import InvalidRequestError

SEED_CONDITION = {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"}
PRECISION_CONDITION = {"metric": "estimated_precision", "operator": "lt", "threshold": 0.8, "window": "1h"}


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    return create_app(Settings(data_dir=tmp_path)).test_client()


def seed_body() -> dict[str, Any]:
    return {
        "name": "Low Confidence Alert",
        "condition": dict(SEED_CONDITION),
        "notify": ["email:team@company.com", "slack:#ml-alerts"],
    }


def test_created_alert_is_listed_and_its_rules_are_served_and_valid(client: FlaskClient, tmp_path: Path) -> None:
    response = client.post("/v1/models/vehicles/alerts", json=seed_body())
    assert response.status_code == 201, response.get_json()
    alert = response.get_json()
    assert alert["id"] == "low-confidence-alert" and alert["model_id"] == "vehicles"
    assert alert["condition"]["threshold"] == 0.7 and alert["notify"] == seed_body()["notify"]
    assert alert["prometheus_rules"]["alert"] == "LowConfidenceAlert"
    assert alert["grafana"] is None  # no Grafana configured

    listed = client.get("/v1/models/vehicles/alerts").get_json()["alerts"]
    assert [a["id"] for a in listed] == ["low-confidence-alert"]
    assert client.get("/v1/models/trucks/alerts").get_json()["alerts"] == []

    files = client.get("/v1/alerts/artifacts").get_json()["files"]
    rules_text = files["rules/detwatch.rules.yml"]
    assert "alert: LowConfidenceAlert" in rules_text
    # The same files were written under the data dir, and promtool accepts them.
    written = tmp_path / "generated" / "rules" / "detwatch.rules.yml"
    assert written.read_text() == rules_text
    for command in (["check", "rules", "detwatch.rules.yml"], ["test", "rules", "detwatch.rules.test.yml"]):
        result = subprocess.run(
            [str(binary("promtool")), *command],
            cwd=written.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    grafana = yaml.safe_load(files["grafana/provisioning/alerting/detwatch.yaml"])
    assert [r["title"] for r in grafana["groups"][0]["rules"]] == ["Low Confidence Alert"]

    # The same name again replaces the definition (names route notifications).
    again = {**seed_body(), "condition": {**SEED_CONDITION, "threshold": 0.6}}
    response = client.post("/v1/models/vehicles/alerts", json=again)
    assert response.status_code == 200
    listed = client.get("/v1/models/vehicles/alerts").get_json()["alerts"]
    assert [a["condition"]["threshold"] for a in listed] == [0.6]


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({**seed_body(), "condition": {**SEED_CONDITION, "threshold": 1.5}}, "condition.threshold", "[0, 1]"),
        ({**seed_body(), "condition": {**SEED_CONDITION, "metric": "mAP"}}, "condition.metric", "p99_latency_ms"),
        ({**seed_body(), "condition": {**SEED_CONDITION, "window": "an hour"}}, "condition.window", "15m"),
        ({**seed_body(), "notify": ["pager:42"]}, "notify[0]", "slack:#"),
        ({**seed_body(), "model_id": "other"}, "model_id", "valid keys"),
        ({**seed_body(), "condition": {**PRECISION_CONDITION, "threshold": 2}}, "condition.threshold", "share"),
        ({**seed_body(), "condition": PRECISION_CONDITION, "arm": "b"}, "arm", "not exported per A/B arm"),
        ({**seed_body(), "condition": PRECISION_CONDITION, "per": "arm"}, "per", "not exported per A/B arm"),
        (
            {**seed_body(), "condition": {**PRECISION_CONDITION, "metric": "estimated_precision:"}},
            "condition.metric",
            "estimated_precision:<class>",
        ),
    ],
)
def test_invalid_definitions_are_refused_naming_the_field(
    client: FlaskClient, body: dict[str, Any], field: str, hint: str
) -> None:
    response = client.post("/v1/models/vehicles/alerts", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == field and hint in error["message"]
    assert client.get("/v1/models/vehicles/alerts").get_json()["alerts"] == []


def test_an_estimated_precision_alert_is_created_per_class_and_its_rules_pass_promtool(
    client: FlaskClient, tmp_path: Path
) -> None:
    for metric, per in (("estimated_precision", "version"), ("estimated_precision:person", "model")):
        body = {"name": f"Precision {metric[-6:]}", "condition": {**PRECISION_CONDITION, "metric": metric}, "per": per}
        response = client.post("/v1/models/cams/alerts", json=body)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["condition"]["metric"] == metric
    rules_text = client.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
    assert 'objdet_detection_class="person"' in rules_text and 'objdet_detection_class="__all__"' in rules_text
    assert "objdet_quality_trusted_ratio" in rules_text
    directory = tmp_path / "generated" / "rules"
    for command in (["check", "rules", "detwatch.rules.yml"], ["test", "rules", "detwatch.rules.test.yml"]):
        result = subprocess.run(
            [str(binary("promtool")), *command], cwd=directory, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_routes_require_the_token_when_configured(tmp_path: Path) -> None:
    client = create_app(Settings(data_dir=tmp_path, api_token="s3cret")).test_client()
    assert client.post("/v1/models/vehicles/alerts", json=seed_body()).status_code == 401
    assert client.get("/v1/alerts/artifacts").status_code == 401
    headers = {"Authorization": "Bearer s3cret"}
    assert client.post("/v1/models/vehicles/alerts", json=seed_body(), headers=headers).status_code == 201


class FakeGrafana(LoopbackServer):
    """Grafana's provisioning API on loopback: keeps what it is sent, checks it against the SDK's models."""

    MODELS: Final[Mapping[str, Any]] = {
        "alert-rules": alerting_model.Rule,
        "contact-points": alerting_model.ContactPoint,
        "policies": alerting_model.NotificationPolicy,
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {"alert-rules": {}, "contact-points": {}}
        self.problems: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length)) if length else None
                fake.calls.append((self.command, self.path, self.headers.get("Authorization", ""), body))
                status = fake.answer(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        super().__init__(Handler)

    def check(self, kind: str, body: Any) -> None:
        decoded = json.loads(json.dumps(self.MODELS[kind].from_json(body), cls=JSONEncoder))
        if decoded != body:
            self.problems.append(f"{kind}: not Grafana's format: {body}")

    def answer(self, method: str, path: str, body: Any) -> int:
        if path == "/api/folders" and method == "POST":
            return 200
        prefix = "/api/v1/provisioning/"
        if not path.startswith(prefix):
            self.problems.append(f"unexpected {method} {path}")
            return 404
        kind, _, uid = path.removeprefix(prefix).partition("/")
        self.check(kind, body)
        if kind == "policies":
            return 202 if method == "PUT" else 405
        if method == "PUT":
            if uid not in self.stored[kind]:
                return 404
            self.stored[kind][uid] = body
            return 200
        self.stored[kind][body["uid"]] = body
        return 201


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def test_seed_create_alert_calls_through_the_real_client_push_to_grafana(tmp_path: Path, grafana: FakeGrafana) -> None:
    env = {
        "DETWATCH_GRAFANA_URL": grafana.url,
        "DETWATCH_GRAFANA_TOKEN": "glsa_test",
        # Not the repository's detwatch.yaml (the server's working directory): only these alerts.
        "DETWATCH_CONFIG": str(tmp_path / "absent.yaml"),
    }
    with Companion(tmp_path / "companion", workers=1, env=env) as companion:
        client = detwatch.Client(base_url=companion.url)
        model = client.register_model(model_id="vehicles", version="v2")
        # The seed's two calls, word for word.
        alert = client.create_alert(
            model_id=model["id"],
            name="Low Confidence Alert",
            condition={"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
            notify=["email:team@company.com", "slack:#ml-alerts"],
        )
        latency_alert = client.create_alert(
            model_id=model["id"],
            name="High Latency Alert",
            condition={"metric": "p99_latency_ms", "operator": "gt", "threshold": 500, "window": "15m"},
        )
        with pytest.raises(InvalidRequestError) as refused:
            client.create_alert(model_id=model["id"], name="Bad", condition={**SEED_CONDITION, "threshold": 1.5})
    assert refused.value.field == "condition.threshold"
    assert alert["id"] == "low-confidence-alert" and latency_alert["id"] == "high-latency-alert"
    assert alert["grafana"] == {"url": grafana.url, "pushed": True, "alert_rules": 1, "contact_points": 2}
    assert latency_alert["grafana"] is not None and latency_alert["grafana"]["pushed"] is True
    assert grafana.problems == []
    assert {auth for _, _, auth, _ in grafana.calls} == {"Bearer glsa_test"}
    assert set(grafana.stored["alert-rules"]) == {"detwatch-low-confidence-alert", "detwatch-high-latency-alert"}
    rule = grafana.stored["alert-rules"]["detwatch-low-confidence-alert"]
    assert rule["title"] == "Low Confidence Alert" and rule["orgID"] == 1 and rule["folderUID"] == "detwatch"
    types = {cp["type"]: cp["settings"] for cp in grafana.stored["contact-points"].values()}
    assert types == {
        "email": {"addresses": "team@company.com", "singleEmail": True},
        "slack": {"recipient": "#ml-alerts", "url": "${DETWATCH_SLACK_WEBHOOK_URL}"},
    }
    policies = [body for method, path, _, body in grafana.calls if path.endswith("/policies")]
    routes = policies[-1]["routes"]
    assert [r["object_matchers"] for r in routes] == [[["detwatch_alert", "=", "low-confidence-alert"]]]
    # A second push updated the first alert in place (PUT by uid), never duplicated it.
    puts = [p for m, p, _, _ in grafana.calls if m == "PUT" and "alert-rules/detwatch-low-confidence-alert" in p]
    assert len(puts) == 2


def test_alerts_from_detwatch_yaml_are_served_and_a_created_one_of_the_same_name_wins(tmp_path: Path) -> None:
    configured = {
        "name": "Low Confidence Alert",
        "model_id": "vehicles",
        "condition": {**SEED_CONDITION, "threshold": 0.5},
    }
    other = {**configured, "name": "Empty Images", "condition": {**SEED_CONDITION, "metric": "no_detection_rate"}}
    client = create_app(Settings(data_dir=tmp_path, extra={"alerts": [configured, other]})).test_client()
    listed = client.get("/v1/models/vehicles/alerts").get_json()["alerts"]
    assert {a["id"]: a["condition"]["threshold"] for a in listed} == {"low-confidence-alert": 0.5, "empty-images": 0.7}
    assert client.post("/v1/models/vehicles/alerts", json=seed_body()).status_code == 201
    listed = client.get("/v1/models/vehicles/alerts").get_json()["alerts"]
    assert {a["id"]: a["condition"]["threshold"] for a in listed} == {"low-confidence-alert": 0.7, "empty-images": 0.7}
    rules_text = client.get("/v1/alerts/artifacts").get_json()["files"]["rules/detwatch.rules.yml"]
    assert rules_text.count("alert: LowConfidenceAlert") == 1 and "alert: EmptyImages" in rules_text


def test_an_invalid_detwatch_yaml_is_reported_not_hidden(tmp_path: Path) -> None:
    broken = {"alerts": [{"name": "x", "model_id": "m", "condition": {**SEED_CONDITION, "threshold": 1.5}}]}
    client = create_app(Settings(data_dir=tmp_path, extra=broken)).test_client()
    response = client.get("/v1/alerts/artifacts")
    assert response.status_code == 503
    assert "alerts[0].condition.threshold" in response.get_json()["error"]["message"]


def test_two_alerts_created_at_once_both_end_up_in_the_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request stops right after reading the set of alerts; the second is created meanwhile.

    A writer that wrote the files from an older read of the set would leave them without
    the other alert; each writer checks the set's revision after writing and writes
    again from the newer set, so the files last written hold both.
    """
    from detwatch.api import alerts as alerts_api

    app = create_app(Settings(data_dir=tmp_path))
    read_config = alerts_api._config
    first_has_read, go_on = threading.Event(), threading.Event()

    def config_then_pause() -> Any:
        config = read_config()
        if threading.current_thread().name == "first":
            first_has_read.set()
            go_on.wait(30)
        return config

    monkeypatch.setattr(alerts_api, "_config", config_then_pause)
    answers: dict[str, int] = {}

    def create(name: str) -> None:
        answers[name] = (
            app.test_client().post("/v1/models/vehicles/alerts", json={**seed_body(), "name": name}).status_code
        )

    first = threading.Thread(target=create, args=("First Alert",), name="first")
    second = threading.Thread(target=create, args=("Second Alert",), name="second")
    first.start()
    assert first_has_read.wait(30)
    second.start()
    second.join(3.0)  # time enough to finish, had it not waited for the first
    go_on.set()
    first.join(30)
    second.join(30)
    assert answers == {"First Alert": 201, "Second Alert": 201}
    rules_text = (tmp_path / "generated" / "rules" / "detwatch.rules.yml").read_text()
    assert "alert: FirstAlert" in rules_text and "alert: SecondAlert" in rules_text


def test_artifacts_are_replaced_whole_and_keep_their_mode(tmp_path: Path) -> None:
    """Rules are read by other services on their own schedule: each file is swapped in by a rename."""
    client = create_app(Settings(data_dir=tmp_path)).test_client()
    assert client.post("/v1/models/vehicles/alerts", json=seed_body()).status_code == 201
    written = tmp_path / "generated" / "rules" / "detwatch.rules.yml"
    assert written.stat().st_mode & 0o777 == 0o644
    written.chmod(0o640)
    before = written.stat().st_ino
    again = {**seed_body(), "condition": {**SEED_CONDITION, "threshold": 0.6}}
    assert client.post("/v1/models/vehicles/alerts", json=again).status_code == 200
    assert written.stat().st_ino != before  # a new file renamed over the old one, not rewritten in place
    assert written.stat().st_mode & 0o777 == 0o640
    assert "0.6" in written.read_text()
    assert not [p.name for p in written.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_name_taken_by_another_models_alert_is_a_409_not_a_silent_replacement(client: FlaskClient) -> None:
    """Names are global (they name rules and route notifications): model b's "Low Confidence!" replaced model a's."""
    assert client.post("/v1/models/model-a/alerts", json=seed_body()).status_code == 201
    clash = client.post("/v1/models/model-b/alerts", json={**seed_body(), "name": "low confidence alert!"})
    assert clash.status_code == 409
    assert clash.get_json()["error"]["field"] == "name" and "model-a" in clash.get_json()["error"]["message"]
    assert [a["id"] for a in client.get("/v1/models/model-a/alerts").get_json()["alerts"]] == ["low-confidence-alert"]
    assert client.get("/v1/models/model-b/alerts").get_json()["alerts"] == []
    renamed = client.post("/v1/models/model-b/alerts", json={**seed_body(), "name": "Model B Low Confidence"})
    assert renamed.status_code == 201
    assert client.post("/v1/models/model-a/alerts", json=seed_body()).status_code == 200  # its own: replaced
