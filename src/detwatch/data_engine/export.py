"""Dataset versions in the formats training tools read: COCO JSON and YOLO txt.

COCO (the detection format of https://cocodataset.org/#format-data, what
``pycocotools.coco.COCO`` loads): ``images`` with ``id``, ``file_name``, ``width``,
``height`` (and ``coco_url``: the image URI the flagged item carried);
``annotations`` with ``bbox`` ``[x, y, width, height]`` in pixels, ``area``,
``category_id``, ``iscrowd`` 0; ``categories`` numbered from 1 in class-name order.
Ids follow the snapshot's order (sorted prediction ids), so one version always
exports the same bytes. ``file_name`` is the image key (or the URI's last segment).

YOLO (Ultralytics' layout): a zip with ``data.yaml`` (``names`` in class-name order,
ids from 0), ``labels/<stem>.txt`` with one ``class x_center y_center width height``
line per box, normalised by the image size, and ``images.txt`` mapping each label
file's stem to the image URI. Boxes need the image size to be normalised; images
without one (and relative boxes without one) are listed in ``skipped.txt``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from typing import Any

__all__ = ["coco_categories", "to_coco", "to_yolo_zip"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def coco_categories(items: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Class names in category-id order (ids from 1 in COCO, 0 in YOLO)."""
    return sorted({a["class"] for entry in items.values() for a in entry["annotations"]})


def _file_name(prediction_id: str, image: Mapping[str, Any]) -> str:
    if image.get("key"):
        return str(image["key"])
    if image.get("uri"):
        return str(image["uri"]).rstrip("/").rsplit("/", 1)[-1]
    return prediction_id


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
                "coco_url": image.get("uri") or "",
                "detwatch_prediction_id": prediction_id,
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
            stem = _UNSAFE.sub("_", prediction_id)
            lines = []
            for a in entry["annotations"]:
                x1, y1, x2, y2 = (float(v) for v in a["box"])
                cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
                w, h = (x2 - x1) / width, (y2 - y1) / height
                lines.append(f"{index[a['class']]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            archive.writestr(f"labels/{stem}.txt", "".join(line + "\n" for line in lines))
            image_lines.append(f"{stem}\t{image.get('uri') or image.get('key') or ''}")
        archive.writestr("images.txt", "".join(line + "\n" for line in image_lines))
        archive.writestr("skipped.txt", "".join(p + "\n" for p in skipped))
    return buffer.getvalue()
