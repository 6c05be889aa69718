"""The item image route serves files from the images root only (real files, real symlinks, the real app)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from detwatch.app import create_app, shutdown
from detwatch.config import Settings, load_settings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def root(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "cam").mkdir(parents=True)
    (images / "cam" / "a.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_text("not an image")
    return images


@pytest.fixture
def app(tmp_path: Path, root: Path) -> Iterator[Flask]:
    application = create_app(Settings(data_dir=tmp_path / "data", api_token=TOKEN, images_root=root))
    yield application
    shutdown(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _item(client: FlaskClient, uri: str) -> tuple[str, str]:
    """A flagged item whose image URI is ``uri`` (every prediction flagged: random_sample at rate 1)."""
    dataset = client.post("/v1/datasets", json={"name": "cars"}, headers=AUTH).get_json()
    policy = {"config": {"random_sample": {"enabled": True, "rate": 1.0}}, "target_dataset_id": dataset["id"]}
    assert client.put("/v1/models/m/data-engine", json=policy, headers=AUTH).status_code == 200
    event = {
        "prediction_id": f"p-{abs(hash(uri))}",
        "time": "2024-02-01T12:00:00Z",
        "model_id": "m",
        "image": {"uri": uri, "width": 64, "height": 48},
        "detections": [{"class": "car", "confidence": 0.9, "box": [1, 2, 30, 40]}],
    }
    sent = client.post("/v1/predictions", json={"predictions": [event]}, headers=AUTH).get_json()
    assert sent["rejected"] == [], sent
    items = client.get(f"/v1/datasets/{dataset['id']}/items", headers=AUTH).get_json()["items"]
    (item,) = [i for i in items if i["image"]["uri"] == uri]
    return dataset["id"], item["id"]


def _get(client: FlaskClient, uri: str, headers: dict[str, str] | None = None) -> Any:
    dataset_id, item_id = _item(client, uri)
    response = client.get(
        f"/v1/datasets/{dataset_id}/items/{item_id}/image", headers=AUTH if headers is None else headers
    )
    response.get_data()  # read, then closed: a served file is streamed from an open handle
    response.close()
    return response


def _refusal(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["field"] == "image.uri", error
    return str(error["message"])


def test_a_file_uri_under_the_root_is_served_with_its_type(client: FlaskClient, root: Path) -> None:
    response = _get(client, (root / "cam" / "a.png").as_uri())
    assert response.status_code == 200
    assert response.data == PNG and response.mimetype == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


def test_percent_encoded_names_and_relative_paths_resolve_under_the_root(client: FlaskClient, root: Path) -> None:
    (root / "cam" / "b c.png").write_bytes(PNG + b"b")
    assert _get(client, (root / "cam" / "b c.png").as_uri()).data == PNG + b"b"  # file:///.../b%20c.png
    assert _get(client, "cam/a.png").data == PNG
    assert _get(client, str(root / "cam" / "a.png")).data == PNG


def test_the_route_needs_the_api_token(client: FlaskClient, root: Path) -> None:
    response = _get(client, (root / "cam" / "a.png").as_uri(), headers={})
    assert response.status_code == 401 and response.get_json()["error"]["field"] == "Authorization"


@pytest.mark.parametrize(
    "uri",
    [
        "../secret.txt",
        "cam/../../secret.txt",
        "cam/%2e%2e/a.png",  # a relative path is a path, not a URI: a literal name, never decoded to ".."
    ],
)
def test_dot_dot_segments_are_refused_or_never_leave_the_root(client: FlaskClient, uri: str) -> None:
    response = _get(client, uri)
    if "%2e" in uri:
        _refusal(response, 404, "image_not_found")  # a literal name '%2e%2e', inside the root, absent
    else:
        assert "'..'" in _refusal(response, 403, "image_outside_root")


def test_encoded_dot_dot_in_a_file_uri_is_refused(client: FlaskClient, root: Path) -> None:
    uri = (root / "cam").as_uri() + "/%2E%2E/%2e%2e/secret.txt"
    assert "'..'" in _refusal(_get(client, uri), 403, "image_outside_root")


def test_absolute_paths_and_file_uris_outside_the_root_are_refused(client: FlaskClient, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    for uri in (str(outside), outside.as_uri(), "file:///etc/passwd", "/etc/passwd"):
        assert "outside the images root" in _refusal(_get(client, uri), 403, "image_outside_root")


def test_a_symlink_out_of_the_root_is_refused(client: FlaskClient, root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", root / "cam" / "link.png")
    os.symlink(tmp_path, root / "up")
    assert "symlink" in _refusal(_get(client, (root / "cam" / "link.png").as_uri()), 403, "image_outside_root")
    assert "symlink" in _refusal(_get(client, "up/secret.txt"), 403, "image_outside_root")


def test_a_symlink_that_stays_inside_the_root_is_served(client: FlaskClient, root: Path) -> None:
    os.symlink(root / "cam" / "a.png", root / "alias.png")
    assert _get(client, "alias.png").data == PNG


def test_a_root_reached_through_a_symlink_still_serves_its_files(tmp_path: Path, root: Path) -> None:
    os.symlink(root, tmp_path / "linked-root")
    application = create_app(Settings(data_dir=tmp_path / "d2", api_token=TOKEN, images_root=tmp_path / "linked-root"))
    try:
        assert _get(application.test_client(), (tmp_path / "linked-root" / "cam" / "a.png").as_uri()).data == PNG
    finally:
        shutdown(application)


def test_nul_other_hosts_schemes_and_missing_files_are_refused_with_the_reason(client: FlaskClient, root: Path) -> None:
    assert "NUL" in _refusal(_get(client, root.as_uri() + "/cam/a.png%00.jpg"), 400, "image_uri_invalid")
    assert "another host" in _refusal(_get(client, "file://evil.example/etc/passwd"), 404, "image_not_served")
    assert "s3:" in _refusal(_get(client, "s3://bucket/cam/a.png"), 404, "image_not_served")
    _refusal(_get(client, (root / "cam" / "missing.png").as_uri()), 404, "image_not_found")
    _refusal(_get(client, (root / "cam").as_uri()), 404, "image_not_found")  # a folder is no image


def test_an_http_uri_answers_where_the_image_is_without_fetching_it(client: FlaskClient) -> None:
    url = "https://images.example.invalid/cam/a.png"  # .invalid never resolves: a fetch would fail
    response = _get(client, url)
    assert response.status_code == 303 and response.headers["Location"] == url
    assert response.get_json() == {"uri": url, "served": False}


def test_an_unknown_item_is_a_404(client: FlaskClient) -> None:
    dataset_id, _ = _item(client, "cam/a.png")
    response = client.get(f"/v1/datasets/{dataset_id}/items/nope/image", headers=AUTH)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "item_not_found"


def test_the_images_root_defaults_to_the_folder_sinks_directory(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).effective_images_root == tmp_path / "flagged"
    environ = {"DETWATCH_IMAGES_ROOT": str(tmp_path / "imgs"), "DETWATCH_CONFIG": str(tmp_path / "none.yaml")}
    assert load_settings(environ).effective_images_root == tmp_path / "imgs"
    (tmp_path / "detwatch.yaml").write_text(f"images_root: {tmp_path / 'from-file'}\n")
    assert load_settings({}, path=tmp_path / "detwatch.yaml").effective_images_root == tmp_path / "from-file"


def test_a_signed_url_opens_its_own_image_without_the_token_and_nothing_else(client: FlaskClient, root: Path) -> None:
    from detwatch.review.images import image_signature

    (root / "cam" / "b.png").write_bytes(PNG + b"b")
    dataset_id, item_id = _item(client, (root / "cam" / "a.png").as_uri())
    _, other_id = _item(client, (root / "cam" / "b.png").as_uri())
    url = f"/v1/datasets/{dataset_id}/items/{item_id}/image"
    signed = client.get(f"{url}?sig={image_signature(TOKEN, dataset_id, item_id)}")
    assert signed.status_code == 200 and signed.get_data() == PNG
    signed.close()
    refused = [
        f"{url}?sig={image_signature(TOKEN, dataset_id, other_id)}",  # another item's signature
        f"{url}?sig={image_signature('another-token', dataset_id, item_id)}",
        f"{url}?sig={'0' * 64}",
        f"/v1/datasets/{dataset_id}/items?sig={image_signature(TOKEN, dataset_id, item_id)}",  # another route
    ]
    for path in refused:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["error"]["field"] == "Authorization"
