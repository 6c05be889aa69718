"""A local trainer command for the data engine: the demo's, and a template for yours.

Run by the companion as ``DETWATCH_TRAINER_COMMAND="python -m detwatch.demo.local_trainer"``
(or ``trainer: {command: ...}`` in ``detwatch.yaml``). It reads the job document on
standard input (see :func:`detwatch.review.training.job_document`), reports
``running``, downloads the dataset version as COCO JSON (with the job's callback
token: the companion's API token is not given to trainers), checks it, "trains" and
reports ``succeeded`` with the new model version (or ``failed`` with the reason).

The training here is a stand-in that fits in a second: per-class box statistics of
the labelled data, written as the model artifact (``--output``, default
``./.detwatch/models``). Replace the :func:`train` body with a real fine-tuning run;
the protocol around it stays the same. Standard library only, so that it starts fast.

A job with a gate (the document's ``gate.predictions_url``) is judged on what the new
model detects on the labelled images: before reporting success the trainer posts its
detections per image key there (:func:`candidate_predictions`). The stand-in "detects"
the labelled boxes at confidence 0.9, leaving out the classes named in the job's
``options.drop_classes``, so that a worse model, and the gate stopping it, can be shown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["CANDIDATE_CONFIDENCE", "candidate_predictions", "main", "train"]

CANDIDATE_CONFIDENCE = 0.9
"""The stand-in model's confidence in every box it "detects"."""
_POST_BATCH = 500
"""Images per post of the candidate's detections (the companion takes up to 1000)."""

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,127}")
"""What a model id or version must be to name the artifact's directory or file: one path component."""


def _file_name(value: str, field: str) -> str:
    if _FILE_NAME.fullmatch(value) is None:
        raise ValueError(f"{field}: {value!r} cannot name a file (1-128 of A-Z a-z 0-9 _ . : + -, no leading dot)")
    return value


def _call(url: str, *, token: str | None, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def train(coco: dict[str, Any]) -> dict[str, Any]:
    """The stand-in training: per-class counts and median relative box sizes of the labelled images."""
    images = {i["id"]: i for i in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    sizes: dict[str, list[float]] = {}
    for a in coco["annotations"]:
        image = images[a["image_id"]]
        area = image["width"] * image["height"]
        sizes.setdefault(names[a["category_id"]], []).append(a["area"] / area if area else 0.0)
    return {
        "images": len(images),
        "annotations": len(coco["annotations"]),
        "classes": {n: {"boxes": len(v), "median_relative_area": statistics.median(v)} for n, v in sizes.items()},
    }


def candidate_predictions(coco: dict[str, Any], drop_classes: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """What the stand-in model detects on each image with a key: its labelled boxes, less ``drop_classes``."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    found: dict[int, list[dict[str, Any]]] = {i["id"]: [] for i in coco["images"]}
    for a in coco["annotations"]:
        name = names[a["category_id"]]
        if name in drop_classes:
            continue
        x, y, w, h = a["bbox"]
        found[a["image_id"]].append({"class": name, "confidence": CANDIDATE_CONFIDENCE, "box": [x, y, x + w, y + h]})
    return [
        {"image_key": image["detwatch_image_key"], "detections": found[image["id"]]}
        for image in coco["images"]
        if image.get("detwatch_image_key")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="detwatch-local-trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.environ.get("DETWATCH_TRAINER_OUTPUT", ".detwatch/models"))
    args = parser.parse_args(argv)
    document = json.loads(sys.stdin.read())
    job, callback = document["job"], document["callback"]
    token = callback["token"]  # the job's own: it reports back and reads this job's dataset, nothing else

    def report(status: str, **fields: Any) -> None:
        _call(callback["url"], token=token, body={"status": status, **fields})

    report("running", message="downloading the dataset version")
    try:
        coco = _call(document["dataset"]["coco_url"], token=token)
        model = train(coco)
        # Both come from the job's creator: checked, or "../.." would write outside --output.
        version = _file_name(str(job["options"].get("model_version") or f"ft-{job['version_id'][:8]}"), "model_version")
        out = Path(args.output) / _file_name(job["base_model_id"] or "model", "base_model_id")
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{version}.json").write_text(json.dumps({"job": job, "model": model}, indent=2))
        gate = document.get("gate")
        if gate:
            drop = frozenset(str(c) for c in job["options"].get("drop_classes") or ())
            predictions = candidate_predictions(coco, drop)
            for start in range(0, len(predictions), _POST_BATCH):
                _call(
                    gate["predictions_url"], token=token, body={"predictions": predictions[start : start + _POST_BATCH]}
                )
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as exc:  # the job must hear of it
        report("failed", message=f"{type(exc).__name__}: {exc}")
        return 0  # handed off and reported: the job is failed, not to be retried
    report("succeeded", model_version=version, message=f"{model['annotations']} boxes", metrics=model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
