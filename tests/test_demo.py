"""The demo runs the real detector through the decorator and reports what was emitted."""

from __future__ import annotations

import io

from detwatch import demo
from detwatch_instrumentation import semconv


def test_demo_reports_real_detections_metrics_and_events() -> None:
    out = io.StringIO()
    result = demo.run(out=out, limit=5)
    text = out.getvalue()
    images = result["images"]
    assert images["faces/original"]["faces"] >= 90
    assert images["nonfaces/original"]["faces"] <= 5
    # Blurring the same scene lowers the detector's confidence: what drift detection will see.
    assert images["faces/blurred-4"]["mean_confidence"] < images["faces/original"]["mean_confidence"] - 0.1
    assert result["spans"] == 5
    assert result["events"] == 5
    assert semconv.DETECTION_CONFIDENCE.name in result["metrics"]
    assert "objdet_detection_confidence_bucket" in text
    assert text.splitlines()[6].startswith("faces/blurred-4")  # the per-image table, in input order
    assert '"prediction_id"' in text
