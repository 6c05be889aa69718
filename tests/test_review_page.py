"""The review page's server side: sign-in, the session and CSRF token, what a submit stores, which images it serves.

Through Flask's test client on the real app and database (the browser tests drive the
same routes from Chromium); what needs no browser is checked here, on both backends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.app import create_app, shutdown
from detwatch.config import ConfigError, Reviewer, Settings, load_settings
from detwatch.storage import Storage

ANN, BOB = Reviewer("ann", "ann-token-0001"), Reviewer("bob", "bob-token-0002")
BOXES = [
    {"class": "car", "confidence": 0.9, "box": [10.0, 20.0, 110.0, 220.0]},
    {"class": "bus", "confidence": 0.4, "box": [200.0, 100.0, 400.0, 300.0]},
]


def make_app(tmp_path: Path, database_url: str, reviewers: tuple[Reviewer, ...] = (ANN, BOB)) -> Flask:
    images = tmp_path / "images"
    images.mkdir(parents=True, exist_ok=True)
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    return create_app(
        Settings(data_dir=tmp_path / "data", database_url=database_url, images_root=images, reviewers=reviewers)
    )


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    application = make_app(tmp_path, database_url)
    yield application
    shutdown(application)


def queue(client: FlaskClient, count: int, uri: str | None = None, root: Path | None = None) -> str:
    dataset = client.post("/v1/datasets", json={"name": "cars"}).get_json()
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset["id"]}
    assert client.put("/v1/models/m/data-engine", json=policy).status_code == 200
    now = time.time_ns()
    image_uri = uri if root is None else f"file://{root / 'a.png'}"
    events = [
        {
            "prediction_id": f"p{i}",
            "model_id": "m",
            "time_unix_nano": now + i,
            "image": {"key": "a.png", "uri": image_uri, "width": 640, "height": 480},
            "detections": BOXES,
        }
        for i in range(count)
    ]
    assert client.post("/v1/predictions", json={"predictions": events}).get_json()["accepted"] == count
    return str(dataset["id"])


def csrf(client: FlaskClient, path: str = "/review/sign-in") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"|data-csrf="([^"]+)"', page)
    assert found, page
    return found.group(1) or found.group(2)


def signed_in(app: Flask, reviewer: Reviewer) -> FlaskClient:
    client = app.test_client()
    response = client.post("/review/sign-in", data={"token": reviewer.token, "csrf_token": csrf(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def shown_item(client: FlaskClient, dataset_id: str) -> tuple[str, str]:
    """The id of the item the page shows, and the page's CSRF token."""
    page = client.get(f"/review/{dataset_id}").get_data(as_text=True)
    found = re.search(r'"item_id": ?"([0-9a-f]+)"', page)
    assert found, page
    token = re.search(r'data-csrf="([^"]+)"', page)
    assert token
    return found.group(1), token.group(1)


def storage_of(app: Flask) -> Storage:
    storage: Storage = app.extensions["detwatch.storage"]
    return storage


def test_sign_in_needs_a_listed_token_and_the_forms_csrf_token(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/review/").status_code == 302 and "/review/sign-in" in client.get("/review/").location
    assert client.post("/review/sign-in", data={"token": ANN.token}).status_code == 403  # no CSRF token
    wrong = client.post("/review/sign-in", data={"token": "guess-guess", "csrf_token": csrf(client)})
    assert wrong.status_code == 401 and "unknown token" in wrong.get_data(as_text=True)
    right = client.post("/review/sign-in", data={"token": ANN.token, "csrf_token": csrf(client)})
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/review" in cookie
    assert client.get("/review/").status_code == 200
    # The API token is not needed, and the session is not an API credential.
    assert client.get("/v1/models").status_code == 200  # no API token configured in this app
    out = client.post("/review/sign-out", data={"csrf_token": csrf(client, "/review/")})
    assert out.status_code == 302 and client.get("/review/").status_code == 302


def test_without_reviewers_the_page_says_how_to_add_them(tmp_path: Path) -> None:
    app = make_app(tmp_path, "", reviewers=())
    try:
        page = app.test_client().get("/review/sign-in").get_data(as_text=True)
        assert "DETWATCH_REVIEWERS" in page and 'name="token"' not in page
    finally:
        shutdown(app)


def test_a_session_holds_on_every_replica_and_ends_when_the_token_changes(tmp_path: Path) -> None:
    first = make_app(tmp_path / "one", "")
    same = make_app(tmp_path / "two", "")
    rotated = make_app(tmp_path / "three", "", reviewers=(Reviewer("ann", "ann-token-9999"), BOB))
    try:
        client = signed_in(first, ANN)
        cookie = client.get_cookie("detwatch_review", path="/review")
        assert cookie is not None
        for other, allowed in ((same, True), (rotated, False)):
            visitor = other.test_client()
            visitor.set_cookie("detwatch_review", cookie.value, path="/review")
            assert (visitor.get("/review/").status_code == 200) is allowed
    finally:
        for app in (first, same, rotated):
            shutdown(app)


def test_a_submit_labels_the_item_and_records_one_feedback_item_per_action(app: Flask, tmp_path: Path) -> None:
    dataset_id = queue(app.test_client(), 2, root=tmp_path / "images")
    client = signed_in(app, ANN)
    item_id, token = shown_item(client, dataset_id)
    body = {
        "action": "label",
        "annotations": [{"class": "van", "box": [200, 100, 400, 300]}, {"class": "car", "box": [5, 5, 50, 50]}],
        "feedback": [
            {"type": "false_positive", "detection_index": 0},
            {"type": "wrong_label", "detection_index": 1, "corrected_class": "van"},
            {"type": "missed_object", "corrected_class": "car", "corrected_box": [5, 5, 50, 50]},
        ],
    }
    url = f"/review/{dataset_id}/items/{item_id}"
    assert client.post(url, json=body).status_code == 403  # the script sends its CSRF token; a forged post does not
    response = client.post(url, json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"next": f"/review/{dataset_id}", "feedback": 3}
    item = storage_of(app).get_flagged_item(dataset_id, item_id)
    assert item is not None and item.status == "labeled" and item.reviewer == "ann"
    assert sorted(a["class"] for a in item.label or []) == ["car", "van"]
    feedback = {(f.type, f.detection_index, f.corrected_class, f.reviewer) for f in item.feedback}
    assert feedback == {
        ("false_positive", 0, None, "ann"),
        ("wrong_label", 1, "van", "ann"),
        ("missed_object", None, "car", "ann"),
    }
    # The browser retries the same submit: nothing is recorded twice, the label stays.
    again = client.post(url, json=body, headers={"X-CSRF-Token": token})
    assert again.status_code == 200
    refreshed = storage_of(app).get_flagged_item(dataset_id, item_id)
    assert refreshed is not None and len(refreshed.feedback) == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"feedback": [{"type": "false_positive", "detection_index": 2}]}, "feedback[0].detection_index"),
        ({"feedback": [{"type": "wrong_label", "detection_index": 0}]}, "feedback[0].corrected_class"),
        ({"feedback": [{"type": "guess", "detection_index": 0}]}, "feedback[0].type"),
        ({"annotations": [{"class": "car", "box": [10, 10, 5, 5]}]}, "annotations[0].box"),
        ({"annotations": [{"class": " ", "box": [1, 1, 5, 5]}]}, "annotations[0].class"),
        ({"action": "approve"}, "action"),
    ],
)
def test_a_bad_submit_is_a_400_naming_the_field_and_stores_nothing(
    app: Flask, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    dataset_id = queue(app.test_client(), 1, root=tmp_path / "images")
    client = signed_in(app, ANN)
    item_id, token = shown_item(client, dataset_id)
    body = {"action": "label", "annotations": [], "feedback": [], **change}
    response = client.post(f"/review/{dataset_id}/items/{item_id}", json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field, response.get_json()
    item = storage_of(app).get_flagged_item(dataset_id, item_id)
    assert item is not None and item.status == "in_review" and not item.feedback


def test_skip_gives_the_item_back_and_another_reviewer_cannot_submit_a_held_one(app: Flask, tmp_path: Path) -> None:
    dataset_id = queue(app.test_client(), 2, root=tmp_path / "images")
    ann, bob = signed_in(app, ANN), signed_in(app, BOB)
    ann_item, ann_token = shown_item(ann, dataset_id)
    bob_item, bob_token = shown_item(bob, dataset_id)
    assert ann_item != bob_item
    refused = bob.post(
        f"/review/{dataset_id}/items/{ann_item}", json={"action": "reject"}, headers={"X-CSRF-Token": bob_token}
    )
    assert refused.status_code == 409 and refused.get_json()["error"]["field"] == "reviewer"
    skip = ann.post(
        f"/review/{dataset_id}/items/{ann_item}", json={"action": "skip"}, headers={"X-CSRF-Token": ann_token}
    )
    assert skip.status_code == 200
    # Nothing else is waiting, and ann skipped hers: her queue is empty; bob can take the skipped one.
    assert "queue-empty" in ann.get(f"/review/{dataset_id}").get_data(as_text=True)
    reject = bob.post(
        f"/review/{dataset_id}/items/{bob_item}", json={"action": "reject"}, headers={"X-CSRF-Token": bob_token}
    )
    assert reject.status_code == 200
    assert shown_item(bob, dataset_id)[0] == ann_item
    progress = app.test_client().get(f"/v1/datasets/{dataset_id}").get_json()["review"]
    assert progress == {
        "waiting": 0,
        "claimed": 1,
        "labeled": 0,
        "rejected": 1,
        "by_reviewer": {"bob": {"claimed": 1, "rejected": 1}},
    }


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file://{root}/../secret.png", "segment"),
        ("{root}/../secret.png", "segment"),
        ("../secret.png", "segment"),
        ("file://{root}/%2e%2e/secret.png", "segment"),
        ("file:///etc/passwd", "outside the images root"),
        ("file://{root}/link.png", "symlink leads outside the images root"),
        ("file://{root}/missing.png", "no image file"),
        ("file://other-host/{root}/a.png", "another host"),
        ("https://images.example.com/a.png", "on another server"),
        ("s3://bucket/a.png", "serves no s3"),
    ],
)
def test_only_images_under_the_root_are_served(app: Flask, tmp_path: Path, uri: str, reason: str) -> None:
    root = tmp_path / "images"
    (tmp_path / "secret.png").write_bytes(b"secret")
    if not (root / "link.png").exists():
        (root / "link.png").symlink_to(tmp_path / "secret.png")
    dataset_id = queue(app.test_client(), 1, uri=uri.format(root=root))
    client = signed_in(app, ANN)
    item_id, _ = shown_item(client, dataset_id)
    page = client.get(f"/review/{dataset_id}").get_data(as_text=True)
    assert reason in page and 'id="no-image"' in page
    served = client.get(f"/review/{dataset_id}/items/{item_id}/image")
    assert served.status_code in (400, 403, 404) and served.get_json()["error"]["field"] == "image.uri"
    assert b"secret" not in served.data


def test_an_image_under_the_root_is_served_to_a_signed_in_reviewer_only(app: Flask, tmp_path: Path) -> None:
    dataset_id = queue(app.test_client(), 1, root=tmp_path / "images")
    client = signed_in(app, ANN)
    item_id, _ = shown_item(client, dataset_id)
    with client.get(f"/review/{dataset_id}/items/{item_id}/image") as served:  # a file response: closed after
        assert served.status_code == 200 and served.data.startswith(b"\x89PNG")
    assert app.test_client().get(f"/review/{dataset_id}/items/{item_id}/image").status_code == 401


def test_reviewers_are_read_from_the_environment_and_checked(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.yaml")
    settings = load_settings(
        {"DETWATCH_REVIEWERS": "ann:token-aaaa1, bob:token:with:colons", "DETWATCH_CONFIG": absent}
    )
    assert [(r.name, r.token) for r in settings.reviewers] == [("ann", "token-aaaa1"), ("bob", "token:with:colons")]
    assert "token" not in repr(settings.reviewers[0]).replace("Reviewer", "")  # never printed
    for bad in ("ann:short", "ann:token-aaaa1,ann:token-bbbb2", ":token-aaaa1", "ann:token-aaaa1,bob:token-aaaa1"):
        with pytest.raises(ConfigError, match="reviewers"):
            load_settings({"DETWATCH_REVIEWERS": bad, "DETWATCH_CONFIG": absent})


def test_the_page_works_without_the_api_token_in_the_browser(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    app = create_app(
        Settings(data_dir=tmp_path / "data", images_root=images, reviewers=(ANN,), api_token="api-token-secret")
    )
    try:
        api = app.test_client()
        api.environ_base["HTTP_AUTHORIZATION"] = "Bearer api-token-secret"
        dataset_id = queue(api, 1, root=images)
        browser = signed_in(app, ANN)  # no Authorization header anywhere below
        item_id, token = shown_item(browser, dataset_id)
        with browser.get(f"/review/{dataset_id}/items/{item_id}/image") as served:
            assert served.status_code == 200
        done = browser.post(
            f"/review/{dataset_id}/items/{item_id}", json={"action": "reject"}, headers={"X-CSRF-Token": token}
        )
        assert done.status_code == 200
        assert browser.get("/v1/models").status_code == 401  # and the session opens nothing of /v1
    finally:
        shutdown(app)
