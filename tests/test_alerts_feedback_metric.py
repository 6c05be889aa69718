"""``feedback_accuracy`` alerts select a model: the companion's feedback counter carries it when known."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_feedback_on_an_ingested_prediction_is_counted_with_its_model(tmp_path: Path) -> None:
    # A fresh interpreter: the global MeterProvider can be set only once per process.
    code = textwrap.dedent(
        f"""
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        from detwatch.app import create_app
        from detwatch.config import Settings

        client = create_app(Settings(data_dir={str(tmp_path)!r})).test_client()
        prediction = {{"prediction_id": "p1", "model_id": "vehicles", "time": "2024-02-01T12:00:00Z", "detections": []}}
        assert client.post("/v1/predictions", json={{"predictions": [prediction]}}).get_json()["accepted"] == 1
        assert client.post("/v1/feedback", json={{"type": "correct", "prediction_id": "p1"}}).status_code == 201
        unknown = {{"type": "wrong_label", "prediction_id": "p-unknown", "corrected_class": "bus"}}
        assert client.post("/v1/feedback", json=unknown).status_code == 201
        points = []
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "objdet.feedback":
                        points += [(sorted(p.attributes.items()), p.value) for p in m.data.data_points]
        print(sorted(points))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(
        [
            ([("objdet.feedback.type", "correct"), ("objdet.model.id", "vehicles")], 1),
            ([("objdet.feedback.type", "wrong_label")], 1),
        ]
    )
