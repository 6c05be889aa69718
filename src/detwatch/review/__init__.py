"""The data engine: flagging predictions for review, the review queue, dataset versions, training jobs.

The improvement loop of the user guide, on the companion::

    data_engine = client.configure_data_engine(model_id=model.id, config={...}, target_dataset_id=dataset.id)
    flagged_items = client.get_flagged_items(dataset_id=dataset.id, status="needs_review", limit=100)
    new_version = client.create_dataset_version(dataset_id=dataset.id, parent_version_id=version.id, name="v2")
    job = client.create_training_job(name="v2", dataset_id=dataset.id, version_id=new_version.id,
                                     base_model_id=model.id)

- The policy (what to flag, and why) is :mod:`detwatch_instrumentation.flagging`,
  shared with the decorator, which keeps the selected images (``DataEngine``).
- Ingest and feedback flag in their own transactions; the SQL of the queue, the
  snapshots and the jobs lives in storage (:mod:`detwatch.storage.review`); items move
  ``needs_review`` -> ``in_review`` -> ``labeled`` | ``rejected``.
- Dataset versions are immutable, content-addressed snapshots exported as COCO JSON
  or YOLO txt (:mod:`.export`).
- Training jobs are handed to a trainer, a signed webhook or a local command, with
  retries and backoff, and report back through a status callback
  (:mod:`.training`); a succeeded job registers the new model version.

The HTTP routes are in :mod:`.routes`.
"""

from __future__ import annotations

__all__: list[str] = []
