"""The label-free estimate read from a real store (SQLite and PostgreSQL): the period's stored cells and labels.

The same predictions the labelled-quality route test ingests, flagged by the real
policy and labelled through the review routes; the stored per-class confidence cells
must be exactly the ingested detections' bins, and the estimate the analysis's answer
on those histograms and the stored labelled sample.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Flask
from flask.testing import FlaskClient

from detwatch.contract import bins
from detwatch.quality import estimate_precision, labelled_images
from detwatch.quality._labelfree_from_storage import period_confidence, period_precision
from test_quality_api import detections, label_everything, setup

NANO = 1_000_000_000


def test_the_period_s_cells_and_labels_give_the_analysis_s_estimate(app: Flask, client: FlaskClient) -> None:
    dataset_id, now = setup(client)
    label_everything(client, dataset_id)
    storage: Any = app.extensions["detwatch.storage"]
    since, until = int((now - 7 * 86400) * NANO), int(time.time() * NANO) + NANO

    histograms = period_confidence(storage, "cams", since_unix_nano=since, until_unix_nano=until, model_version="v1")
    expected: dict[str, np.ndarray[Any, Any]] = {}
    for i in range(150):
        for d in detections(i):
            expected.setdefault(d["class"], np.zeros(bins.CONFIDENCE_BINS))[bins.confidence_bin(d["confidence"])] += 1
    assert set(histograms) == set(expected)
    for name, counts in expected.items():
        assert histograms[name].tolist() == counts.tolist()

    result = period_precision(storage, "cams", since_unix_nano=since, until_unix_nano=until, model_version="v1")
    records = storage.labelled_items("cams", since_unix_nano=since, until_unix_nano=until, model_version="v1")
    direct = estimate_precision(labelled_images(records).sampled, expected)
    assert result == direct
    assert result.classes["car"].estimate == 1.0  # every sure car is right
    assert 0.0 < result.classes["person"].estimate < 1.0
