"""Telemetry queued on the recording thread is not lost when the process exits."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_queued_telemetry_is_recorded_before_the_sdk_shuts_down_at_exit() -> None:
    # The SDK's MeterProvider exports on shutdown at exit; the recorder registers its
    # drain later (at the first call), so it runs first and nothing queued is lost.
    code = textwrap.dedent(
        """
        import time
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from detwatch_instrumentation import monitor_detections

        class Print(MetricExporter):
            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                for rm in metrics_data.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name == "objdet.detections":
                                print("detections", sum(p.value for p in m.data.data_points), flush=True)
                return MetricExportResult.SUCCESS
            def force_flush(self, timeout_millis=10_000):
                return True
            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(Print(), 3_600_000)])

        def slow_adapter(output):
            time.sleep(0.001)  # keep the recording thread behind the caller
            return output

        @monitor_detections(model_id="m", meter_provider=provider, adapter=slow_adapter)
        def predict(image):
            return [{"class": "car", "confidence": 0.5, "box": [0, 0, 1, 1]}] * 3

        for _ in range(300):
            predict(None)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["detections", "900"]
