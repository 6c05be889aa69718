"""The demo's improvement loop: real detector to a registered model version, in one process tree."""

from __future__ import annotations

import io
from pathlib import Path

from detwatch.demo.loop import run_loop


def test_the_loop_runs_from_the_real_detector_to_a_new_registered_version(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_loop(out=out, workdir=tmp_path)
    flagged = {item["image"]["key"]: item for item in result["flagged"]}
    # The detector's own output decides what is flagged: an empty mosaic, the crowd of faces,
    # and the coins it mistakes for faces (which the feedback also marks).
    assert result["detections"]["nonfaces/original"] == 0 and "no_detections" in flagged["nonfaces/original"]["reasons"]
    assert result["detections"]["faces/original"] >= 32 and "high_density" in flagged["faces/original"]["reasons"]
    coins = flagged["photos/coins"]
    assert "feedback:false_positive" in coins["reasons"]
    assert len(coins["feedback"]) == result["feedback"] == result["detections"]["photos/coins"]
    # Every flagged item's image was kept by the decorator's sink and opens.
    assert result["images_opened"] == len(flagged)
    for item in flagged.values():
        assert Path(item["image"]["uri"].removeprefix("file://")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The reviewer accepted the pre-filled labels: detections, minus the false positives.
    expected_faces = sum(len(i["detections"]) for k, i in flagged.items() if k != "photos/coins")
    version = result["version"]
    assert version["item_count"] == len(flagged)
    assert version["class_counts"] == ({"face": expected_faces} if expected_faces else {})
    job = result["job"]
    assert job["status"] == "succeeded"
    assert [h["status"] for h in job["history"]][-2:] == ["running", "succeeded"]
    assert job["model_version"] in result["model_versions"] and "haar-n3" in result["model_versions"]
    assert (tmp_path / "companion" / "models" / "faces" / f"{job['model_version']}.json").is_file()
    assert "training job succeeded" in out.getvalue()
