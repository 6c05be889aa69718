"""Dataset versions in the formats training tools read: COCO JSON and YOLO txt.

COCO (the detection format of https://cocodataset.org/#format-data, what
``pycocotools.coco.COCO`` loads): ``images`` with ``id``, ``file_name``, ``width``,
``height`` (and ``coco_url``: the image URI the flagged item carried);
``annotations`` with ``bbox`` ``[x, y, width, height]`` in pixels, ``area``,
``category_id``, ``iscrowd`` 0; ``categories`` numbered from 1 in class-name order.
Ids follow the snapshot's order (sorted prediction ids), so one version always
exports the same bytes. ``file_name`` is the image key (or the URI's last segment)
when that is a safe relative path; ``detwatch_image_key`` keeps the key as sent.

YOLO (Ultralytics' layout): a zip with ``data.yaml`` (``names`` in class-name order,
ids from 0), ``labels/<stem>.txt`` with one ``class x_center y_center width height``
line per box, normalised by the image size, and ``images.txt`` mapping each label
file's stem to the image URI. Boxes need the image size to be normalised; images
without one (and relative boxes without one) are listed in ``skipped.txt``.

Keys and URIs come from the inference process, and the files are read by tools that
join ``file_name`` to an images directory and split ``images.txt`` into lines, so
nothing from them is written unchecked. Ingest refuses control characters in both
(:data:`detwatch.contract.textfields.LINE_PATTERN`); export does not rely on it (rows stored
before that rule, or written by other means):

- a ``file_name`` is the key only when it is a relative path that stays inside the
  directory it is joined to (no ``..``, ``.`` or empty segment, no leading ``/``, no
  backslash, no drive or scheme, no control character); otherwise it is that text
  flattened to one safe file name, so that ``../../home/x/.ssh/authorized_keys``
  becomes ``home_x_.ssh_authorized_keys``, never a path out of the directory;
- a URI or key written to a line has its control characters percent-encoded, as a
  URI would carry them, so it cannot add a line (or a tab-separated field);
- a label file's stem is the prediction id with unsafe characters replaced, plus a
  hash of the id when anything was replaced, so two ids never share a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping
from typing import Any

__all__ = ["coco_categories", "to_coco", "to_yolo_zip"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SEGMENT = re.compile(r"[^\x00-\x1f\x7f/\\]+")
"""One path segment: no separator of either system, no control character."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _safe_relative_path(text: str) -> bool:
    """Whether ``text`` joined to a directory names a file inside it, on POSIX and on Windows."""
    segments = text.split("/")
    return (
        all(_SEGMENT.fullmatch(seg) and seg not in (".", "..") for seg in segments)
        and ":" not in segments[0]  # c:evil (a drive on Windows), or a URI scheme
        and not text.endswith((" ", "."))  # Windows drops them: a different file
    )


def _flat_file_name(text: str) -> str:
    """``text`` as one file name: its segments (without ``.`` and ``..``) joined by ``_``, unsafe characters too."""
    segments = [seg for seg in re.split(r"[/\\]+", text) if seg not in ("", ".", "..")]
    return _UNSAFE.sub("_", "_".join(segments)).lstrip(".")


def _one_line(text: str) -> str:
    """``text`` with its control characters percent-encoded (a newline or tab cannot start a line or a field)."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text)


def _stem(prediction_id: str) -> str:
    """A label file's stem: the id when it is safe as one, else the id made safe plus a hash of it (no collisions)."""
    stem = _UNSAFE.sub("_", prediction_id)
    if stem == prediction_id and not stem.startswith("."):
        return stem
    return f"{stem.lstrip('.')}-{hashlib.sha256(prediction_id.encode()).hexdigest()[:12]}"


def coco_categories(items: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Class names in category-id order (ids from 1 in COCO, 0 in YOLO)."""
    return sorted({a["class"] for entry in items.values() for a in entry["annotations"]})


def _file_name(prediction_id: str, image: Mapping[str, Any]) -> str:
    """COCO's ``file_name``: the key, else the URI's last segment, kept only when it is a safe relative path."""
    if image.get("key"):
        name = str(image["key"])
    elif image.get("uri"):
        name = str(image["uri"]).rstrip("/").rsplit("/", 1)[-1]
    else:
        name = prediction_id
    if _safe_relative_path(name):
        return name
    return _flat_file_name(name) or _stem(prediction_id)


def to_coco(items: Mapping[str, Mapping[str, Any]], *, description: str = "") -> dict[str, Any]:
    """The COCO detection document of a snapshot (``{prediction_id: {"image", "annotations"}}``)."""
    names = coco_categories(items)
    category = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, prediction_id in enumerate(sorted(items), start=1):
        entry = items[prediction_id]
        image = entry["image"]
        images.append(
            {
                "id": image_id,
                "file_name": _file_name(prediction_id, image),
                "width": int(image.get("width") or 0),
                "height": int(image.get("height") or 0),
                "coco_url": _one_line(str(image.get("uri") or "")),
                "detwatch_prediction_id": prediction_id,
                "detwatch_image_key": image.get("key"),
            }
        )
        for a in entry["annotations"]:
            x1, y1, x2, y2 = (float(v) for v in a["box"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[a["class"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": category[n], "name": n, "supercategory": ""} for n in names],
    }


def from_coco(document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{prediction_id: [{"class", "box" xyxy}]}`` read back from :func:`to_coco` output (round trip)."""
    names = {c["id"]: c["name"] for c in document["categories"]}
    by_image = {i["id"]: i["detwatch_prediction_id"] for i in document["images"]}
    out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in by_image.values()}
    for a in document["annotations"]:
        x, y, w, h = a["bbox"]
        out[by_image[a["image_id"]]].append({"class": names[a["category_id"]], "box": [x, y, x + w, y + h]})
    return out


def to_yolo_zip(items: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The YOLO layout of a snapshot, zipped (see the module docstring)."""
    names = coco_categories(items)
    index = {name: i for i, name in enumerate(names)}
    buffer = io.BytesIO()
    skipped: list[str] = []
    image_lines: list[str] = []
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        yaml_names = "\n".join(f"  {i}: {json.dumps(n)}" for i, n in enumerate(names))
        archive.writestr("data.yaml", f"path: .\ntrain: images\nval: images\nnames:\n{yaml_names}\n")
        for prediction_id in sorted(items):
            entry = items[prediction_id]
            image = entry["image"]
            width, height = image.get("width"), image.get("height")
            if not width or not height:
                skipped.append(prediction_id)
                continue
            stem = _stem(prediction_id)
            lines = []
            for a in entry["annotations"]:
                x1, y1, x2, y2 = (float(v) for v in a["box"])
                cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
                w, h = (x2 - x1) / width, (y2 - y1) / height
                lines.append(f"{index[a['class']]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            archive.writestr(f"labels/{stem}.txt", "".join(line + "\n" for line in lines))
            image_lines.append(f"{stem}\t{_one_line(str(image.get('uri') or image.get('key') or ''))}")
        archive.writestr("images.txt", "".join(line + "\n" for line in image_lines))
        archive.writestr("skipped.txt", "".join(_one_line(p) + "\n" for p in skipped))
    return buffer.getvalue()
