"""Dataset exports never carry a path out of the images directory or a line break from a key or URI.

A COCO ``file_name`` of ``../../../../home/someone/.ssh/authorized_keys`` was exported
verbatim, and a newline in an image URI added a line to YOLO's ``images.txt``.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from pathlib import PureWindowsPath
from typing import Any

import pytest

from detwatch.review.export import from_coco, to_coco, to_yolo_zip

HOSTILE_KEYS = [
    "../../../../home/someone/.ssh/authorized_keys",
    "/etc/passwd",
    "cam/../../x.jpg",
    "..",
    "C:\\Windows\\system32\\x.dll",
    "c:evil.jpg",
    "a\\..\\..\\b.jpg",
    "line\nbreak.jpg",
    "tab\there.jpg",
    "./hidden/./x.jpg",
    "trailing.",
]


def _items(images: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        pid: {"image": {"width": 640, "height": 480, **image}, "annotations": [{"class": "car", "box": [1, 2, 3, 4]}]}
        for pid, image in images.items()
    }


def _inside(file_name: str) -> bool:
    """Joined to an images directory, on POSIX and on Windows, the name stays inside it."""
    posix = posixpath.normpath(posixpath.join("/images", file_name))
    windows = PureWindowsPath("C:/images", file_name)
    return (
        posix.startswith("/images/")
        and ".." not in windows.parts
        and windows.drive == "C:"
        and str(windows).startswith("C:\\images\\")
        and file_name.isprintable()
    )


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_coco_file_name_never_leaves_the_images_directory(key: str) -> None:
    document = to_coco(_items({"p-1": {"key": key}}))
    [image] = document["images"]
    assert _inside(image["file_name"]), image["file_name"]
    assert image["detwatch_image_key"] == key  # the key as sent is not lost
    assert from_coco(document) == {"p-1": [{"class": "car", "box": [1.0, 2.0, 3.0, 4.0]}]}


def test_the_uris_last_segment_is_checked_like_a_key() -> None:
    [image] = to_coco(_items({"p-1": {"uri": "file:///data/.."}}))["images"]
    assert _inside(image["file_name"]) and image["file_name"] != ".."


@pytest.mark.parametrize("key", ["cam7/000123.jpg", "x.jpg", "a b/c d.png", "über/bild.jpg"])
def test_a_safe_relative_key_is_the_file_name_as_it_is(key: str) -> None:
    [image] = to_coco(_items({"p-1": {"key": key}}))["images"]
    assert image["file_name"] == key


def test_a_newline_in_an_image_uri_cannot_add_a_line_to_images_txt() -> None:
    uri = "file:///data/a.jpg\nevil\t/etc/passwd"
    archive = zipfile.ZipFile(io.BytesIO(to_yolo_zip(_items({"p-1": {"uri": uri}, "p-2": {"key": "b.jpg"}}))))
    lines = archive.read("images.txt").decode().splitlines()
    assert len(lines) == 2
    assert lines[0] == "p-1\tfile:///data/a.jpg%0Aevil%09/etc/passwd"
    assert all(len(line.split("\t")) == 2 for line in lines)
    [coco_image, _] = to_coco(_items({"p-1": {"uri": uri}, "p-2": {"key": "b.jpg"}}))["images"]
    assert "\n" not in coco_image["coco_url"]


def test_two_prediction_ids_never_share_a_label_file() -> None:
    archive = zipfile.ZipFile(io.BytesIO(to_yolo_zip(_items({"a/b": {}, "a_b": {}, "../x": {}}))))
    labels = [n for n in archive.namelist() if n.startswith("labels/")]
    assert len(labels) == len(set(labels)) == 3
    assert "labels/a_b.txt" in labels  # a safe id keeps its own name
    assert all(_inside(name.removeprefix("labels/")) for name in labels)
