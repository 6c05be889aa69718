"""Flagging is the review package's policy, acted on inside the storage's own transactions.

The storage decides nothing about review: without a hook it flags nothing. With the
review package's :class:`Flagger` installed, a flag is stored in the transaction of the
event or feedback that caused it (a hook that fails rolls the event back with it), and
each flag is counted on the counter handed to the flagger at wiring time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest

from detwatch.contract.feedback import FeedbackInput
from detwatch.contract.predictions import Prediction, parse_prediction
from detwatch.review._store import DataEngineStore, Flagger
from detwatch.storage import FeedbackRecord, FlagWriter, Storage
from detwatch_instrumentation import semconv
from detwatch_instrumentation.flagging import FlaggingPolicy

NO_DETECTIONS = {"edge_cases": {"enabled": True, "conditions": ["no_detections"]}}


class Counted:
    """A counter's ``add``, kept: what the flagger reported."""

    def __init__(self) -> None:
        self.added: list[tuple[int, dict[str, str]]] = []

    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None:
        self.added.append((amount, dict(attributes or {})))


class Failing:
    """A hook that fails inside the transaction."""

    def predictions_stored(self, writer: FlagWriter, new: Sequence[Prediction], feedback_joined: int) -> int:
        raise RuntimeError("hook failed")

    def feedback_stored(self, writer: FlagWriter, records: Sequence[FeedbackRecord]) -> int:
        raise RuntimeError("hook failed")


def event(prediction_id: str, detections: int) -> Prediction:
    boxes = [{"class": "car", "confidence": 0.9, "box": [1, 1, 30, 30]}] * detections
    return parse_prediction(
        {
            "prediction_id": prediction_id,
            "model_id": "m",
            "time_unix_nano": time.time_ns(),
            "detections": boxes,
            "image": {"key": f"{prediction_id}.jpg", "width": 640, "height": 480},
        }
    )


def with_policy(storage: Storage) -> str:
    dataset = storage.create_dataset("review", "")
    DataEngineStore(storage).set_policy("m", FlaggingPolicy.from_config(NO_DETECTIONS), dataset.id)
    return dataset.id


def queue(storage: Storage, dataset_id: str) -> dict[str, list[str]]:
    page = storage.list_flagged_items(dataset_id, status=None, limit=100)
    return {item.prediction_id: item.reasons for item in page.items}


def test_without_a_hook_storage_flags_nothing(storage: Storage) -> None:
    dataset_id = with_policy(storage)
    storage.ingest_predictions([event("empty", 0)])
    storage.add_feedback([FeedbackInput(type="false_positive", prediction_id="empty", detection_index=0)])
    assert queue(storage, dataset_id) == {}


def test_the_flagger_flags_events_and_feedback_and_counts_each_reason(storage: Storage) -> None:
    dataset_id = with_policy(storage)
    counter = Counted()
    storage.add_ingest_hook(Flagger(counter))
    storage.ingest_predictions([event("empty", 0), event("busy", 2)])
    assert queue(storage, dataset_id) == {"empty": ["no_detections"]}
    storage.add_feedback([FeedbackInput(type="wrong_label", prediction_id="busy", detection_index=0)])
    assert queue(storage, dataset_id) == {"empty": ["no_detections"], "busy": ["feedback:wrong_label"]}
    by_reason = {attributes[semconv.ATTR_SAMPLING_STRATEGY]: n for n, attributes in counter.added}
    assert by_reason == {"no_detections": 1, "feedback:wrong_label": 1}


@pytest.mark.parametrize("what", ["ingest", "feedback"])
def test_a_failing_hook_rolls_its_event_back(storage: Storage, what: str) -> None:
    with_policy(storage)
    storage.ingest_predictions([event("stored", 1)])
    storage.add_ingest_hook(Failing())
    with pytest.raises(RuntimeError, match="hook failed"):
        if what == "ingest":
            storage.ingest_predictions([event("new", 0)])
        else:
            storage.add_feedback([FeedbackInput(type="false_positive", prediction_id="stored", detection_index=0)])
    assert storage.get_prediction("new") is None
    assert storage.list_feedback() == []


def test_a_flagged_item_keeps_the_chance_the_policy_selected_it_and_feedback_items_have_none(
    storage: Storage,
) -> None:
    dataset = storage.create_dataset("review", "")
    config = {
        "edge_cases": {"enabled": True, "conditions": ["no_detections"], "sample_rate": 1.0},
        "random_sample": {"enabled": True, "rate": 0.25},
    }
    DataEngineStore(storage).set_policy("m", FlaggingPolicy.from_config(config), dataset.id)
    storage.add_ingest_hook(Flagger())
    # Empty images: the edge case takes all of them (1); busy ones only the random 25 %.
    storage.ingest_predictions([event("empty", 0), *(event(f"busy{i}", 1) for i in range(40))])
    storage.add_feedback([FeedbackInput(type="wrong_label", prediction_id="busy0", detection_index=0)])
    storage.add_feedback([FeedbackInput(type="false_positive", prediction_id="empty", detection_index=0)])
    items = {i.prediction_id: i for i in storage.list_flagged_items(dataset.id, status=None, limit=100).items}
    assert items["empty"].inclusion_probability == pytest.approx(1.0)
    assert items["empty"].reasons == ["no_detections", "feedback:false_positive"]
    busy = {p: i for p, i in items.items() if p.startswith("busy")}
    by_policy = {p for p, i in busy.items() if "random_sample" in i.reasons}
    assert by_policy, "no busy image sampled: the test needs one"
    assert all(busy[p].inclusion_probability == pytest.approx(0.25) for p in by_policy)
    # busy0's key is not in the random 25 % (the hash is deterministic): its feedback
    # alone flagged it, and that is not a probability sample.
    assert "busy0" not in by_policy
    assert busy["busy0"].inclusion_probability is None
    assert busy["busy0"].reasons == ["feedback:wrong_label"]
