"""A queued training job on a fresh dataset: the starting point of the hand-off tests."""

from __future__ import annotations

from typing import Any

from detwatch.storage import Storage
from detwatch.storage.review import DataEngineStore


def queued_job(storage: Storage) -> tuple[DataEngineStore, dict[str, Any]]:
    """The data engine's store on ``storage`` and a new job (no base model) for a new dataset's first version."""
    store = DataEngineStore(storage)
    dataset = storage.create_dataset("d", "")
    job = store.create_job(
        name="j", dataset_id=dataset.id, version_id=dataset.version.id, base_model_id=None, options={},
        callback_base="http://127.0.0.1:9",
    )  # fmt: skip
    return store, job
