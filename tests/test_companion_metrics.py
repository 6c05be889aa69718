"""The companion counts feedback through its own OpenTelemetry metrics (objdet.feedback)."""

from __future__ import annotations

import time
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from _telemetry import sums_by
from detwatch.app import create_app
from detwatch.config import Settings


def test_accepted_feedback_is_counted_by_type_and_duplicates_are_not(tmp_path: Path) -> None:
    # The app records on the provider it is given: no global provider, no fresh interpreter.
    reader = InMemoryMetricReader()
    app = create_app(Settings(data_dir=tmp_path), meter_provider=MeterProvider(metric_readers=[reader]))
    client = app.test_client()
    for key, body in [
        ("a", {"type": "correct", "prediction_id": "p1"}),
        ("a", {"type": "correct", "prediction_id": "p1"}),  # retried: counted once
        ("b", {"type": "wrong_label", "prediction_id": "p2", "corrected_class": "truck"}),
        ("c", {"type": "wrong_label", "prediction_id": "p3", "corrected_class": "bus"}),
    ]:
        assert client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key}).status_code in (200, 201)
    assert client.post("/v1/feedback", json={"type": "nope"}).status_code == 400
    unit, counts = sums_by(reader, "objdet.feedback", "objdet.feedback.type")
    assert unit == "{feedback}"
    assert sorted(counts.items()) == [("correct", 1), ("wrong_label", 2)]


def test_two_apps_in_one_process_count_on_their_own_providers(tmp_path: Path) -> None:
    """Instruments belong to the app, not to the module: a second app does not count into the first's."""
    readers = [InMemoryMetricReader(), InMemoryMetricReader()]
    apps = [
        create_app(Settings(data_dir=tmp_path / str(i)), meter_provider=MeterProvider(metric_readers=[reader]))
        for i, reader in enumerate(readers)
    ]
    apps[1].test_client().post("/v1/feedback", json={"type": "correct", "prediction_id": "p1"})
    names = []
    for reader in readers:
        data = reader.get_metrics_data()
        names.append(
            sorted(m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
            if data is not None
            else []
        )
    assert names == [[], ["objdet.feedback"]]


def test_under_gunicorn_the_companion_exports_its_metrics_to_the_named_collector(tmp_path: Path) -> None:
    from _otlp_receiver import Receiver
    from _service import Companion
    from detwatch import Client

    with Receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_METRIC_EXPORT_INTERVAL": "200"}
        with Companion(tmp_path, workers=1, env=env) as companion:
            Client(base_url=companion.url).send_feedback(type="false_positive", prediction_id="p-9")
            deadline = time.monotonic() + 15
            found: dict[str, str] = {}
            while time.monotonic() < deadline and not found:
                time.sleep(0.2)
                for request in receiver.metrics():
                    for rm in request.resource_metrics:
                        for sm in rm.scope_metrics:
                            for metric in sm.metrics:
                                if metric.name == "objdet.feedback":
                                    point = metric.sum.data_points[0]
                                    found = {kv.key: kv.value.string_value for kv in point.attributes}
                                    service = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
            assert found == {"objdet.feedback.type": "false_positive"}
            assert service["service.name"] == "detwatch-companion"
