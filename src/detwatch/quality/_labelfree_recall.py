"""Recall without labels: there is no estimate; the ``missed_object`` feedback rate is shown in its place.

A detector's output says nothing of the objects it missed, so no calibration of its
confidences can give recall (precision's label-free estimate, :mod:`._labelfree`, has no
counterpart here). What production does say about misses without a labelled sample is
the feedback people post: ``missed_object`` reports per predicted image. It is no
recall (people report some misses, not all, and not at random), only a signal whose
rise is worth a look; the labelled recall is the figure to trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["NO_LABEL_FREE_RECALL", "LabelFreeRecall", "MissedObjectFeedback", "label_free_recall"]

NO_LABEL_FREE_RECALL: Final = (
    "recall has no label-free estimate from detections alone: a detector's output says nothing of the objects it"
    " missed; recall is the labelled figure, and missed_object feedback per predicted image is shown beside it"
)


@dataclass(frozen=True)
class MissedObjectFeedback:
    """``missed_object`` posts on the model in the period, and the images it predicted then."""

    count: int
    predictions: int

    @property
    def rate(self) -> float | None:
        """Posts per predicted image (None without predictions)."""
        return self.count / self.predictions if self.predictions else None


@dataclass(frozen=True)
class LabelFreeRecall:
    """No estimate, why, and the feedback shown instead."""

    missed_object_feedback: MissedObjectFeedback
    reason: str = NO_LABEL_FREE_RECALL
    estimate: None = None


class MissedObjectCounts(Protocol):
    """The one read (``detwatch.storage.Storage`` has it)."""

    def missed_object_counts(
        self,
        model_id: str,
        *,
        since_unix_nano: int,
        until_unix_nano: int,
        model_version: str | None = None,
        ab_variant: str | None = None,
    ) -> tuple[int, int]: ...


def label_free_recall(
    storage: MissedObjectCounts,
    model_id: str,
    *,
    since_unix_nano: int,
    until_unix_nano: int,
    model_version: str | None = None,
    ab_variant: str | None = None,
) -> LabelFreeRecall:
    """The period's ``missed_object`` feedback, counted by storage (no raw rows read here)."""
    count, predictions = storage.missed_object_counts(
        model_id,
        since_unix_nano=since_unix_nano,
        until_unix_nano=until_unix_nano,
        model_version=model_version,
        ab_variant=ab_variant,
    )
    return LabelFreeRecall(MissedObjectFeedback(count, predictions))
