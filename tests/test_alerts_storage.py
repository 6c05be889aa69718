"""Alerts on the data dir: a read-only or full one, and what creating one more alert costs.

Alerts are files under ``<data_dir>/alerts`` and their artifacts files under
``<data_dir>/generated``. A data dir that cannot take writes answers 503 (retry later)
and leaves nothing half-written; creating an alert does work for that alert only,
however many exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _disk import small_disk
from detwatch.app import create_app
from detwatch.config import Settings


def body(i: int) -> dict[str, Any]:
    return {
        "name": f"Alert {i}",
        "condition": {"metric": "avg_confidence", "operator": "lt", "threshold": 0.7, "window": "1h"},
        "notify": ["email:team@company.com", f"slack:#channel-{i % 3}"],
    }


def stray_files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith((".tmp", ".ready-"))]


@pytest.mark.parametrize("fault", ["read-only", "disk full"])
def test_an_alert_on_a_read_only_or_full_data_dir_is_a_503_and_leaves_no_stray_file(tmp_path: Path, fault: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        data_dir = disk.path / "data"
        client = create_app(
            Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
        ).test_client()
        assert client.post("/v1/models/m/alerts", json=body(0)).status_code == 201
        if fault == "read-only":
            disk.read_only()
        else:
            disk.fill()
        answer = client.post("/v1/models/m/alerts", json=body(1))
        assert answer.status_code == 503, answer.get_json()
        assert answer.headers["Retry-After"].isdigit()
        error = answer.get_json()["error"]
        assert error["code"] == "storage_unavailable" and fault in error["message"], error
        assert str(tmp_path) not in error["message"], error  # the path is in the log, not in the answer
        assert stray_files(data_dir) == []
        if fault == "read-only":
            disk.writable()
        else:
            (disk.path / "filler").unlink()
        retried = client.post("/v1/models/m/alerts", json=body(1))
        assert retried.status_code in (200, 201), retried.get_json()
        listed = client.get("/v1/models/m/alerts").get_json()["alerts"]
        assert [a["name"] for a in listed] == ["Alert 0", "Alert 1"]
        assert stray_files(data_dir) == []
