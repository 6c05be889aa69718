"""The data engine: flagging predictions for review, the review queue, dataset versions, training jobs.

The improvement loop of the user guide, on the companion::

    data_engine = client.configure_data_engine(model_id=model.id, config={...}, target_dataset_id=dataset.id)
    flagged_items = client.get_flagged_items(dataset_id=dataset.id, status="needs_review", limit=100)
    new_version = client.create_dataset_version(dataset_id=dataset.id, parent_version_id=version.id, name="v2")
    job = client.create_training_job(name="v2", dataset_id=dataset.id, version_id=new_version.id,
                                     base_model_id=model.id)

- The policy (what to flag, and why) is :mod:`detwatch_instrumentation.flagging`,
  shared with the decorator, which keeps the selected images (``DataEngine``).
- What gets flagged is decided here (:class:`._store.Flagger`, an ingest hook the app
  installs on its storage: ingest and feedback flag in their own transactions); the
  review queue, snapshots and jobs are kept by storage, orchestrated by
  :class:`._store.DataEngineStore`; items move ``needs_review`` -> ``in_review`` ->
  ``labeled`` | ``rejected``.
- Dataset versions are immutable, content-addressed snapshots exported as COCO JSON
  or YOLO txt (:mod:`.export`).
- Training jobs are handed to a trainer, a signed webhook or a local command, with
  retries and backoff, and report back through a status callback
  (:mod:`.training`); a succeeded job registers the new model version.

The HTTP routes are in :mod:`detwatch.api.review`; the JSON of the records in :mod:`.documents`.
"""

from __future__ import annotations

from detwatch.contract.shapes.review import ITEM_STATUSES, JOB_STATUSES
from detwatch.review._store import (
    CURSOR_PATTERN,
    DataEngineStore,
    FlagCounter,
    Flagger,
    decode_cursor,
    forget_learned,
)
from detwatch.storage.records import ConflictError

__all__ = [
    "CURSOR_PATTERN",
    "ITEM_STATUSES",
    "JOB_STATUSES",
    "ConflictError",
    "DataEngineStore",
    "FlagCounter",
    "Flagger",
    "decode_cursor",
    "forget_learned",
]
