"""Per-call information the caller knows but the model's signature does not carry.

Image keys and URIs, the A/B arm and extra attributes travel in a context variable,
so the decorated function keeps its own signature and the information follows
``asyncio`` tasks and threads that copy the context.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

AttributeValue = str | bool | int | float

Arm = Literal["a", "b"]

MAX_KEPT_IDS = 1000
"""Prediction ids a context keeps (a context around a whole serving loop must not grow without end)."""
MAX_PREDICTION_ID_LENGTH = 256
"""The longest prediction id the companion accepts."""


@dataclass(frozen=True)
class PredictionContext:
    """What :func:`prediction_context` set for the calls inside it, and the prediction ids they produced."""

    image_key: str | Sequence[str] | None = None
    image_uri: str | Sequence[str] | None = None
    ab_variant: Arm | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    prediction_id: str | Sequence[str] | None = None
    prediction_ids: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_KEPT_IDS), compare=False)
    """The ``prediction_id`` of every image of the calls made inside this context, in order
    (filled as each call returns; the last :data:`MAX_KEPT_IDS` of a long-lived context):
    the id to send feedback about (``send_feedback``)."""

    def __reduce__(self) -> tuple[type[PredictionContext], tuple[Any, ...]]:
        # Sent to the recorder process with every call: without the ids it collected.
        return (
            PredictionContext,
            (self.image_key, self.image_uri, self.ab_variant, self.attributes, self.prediction_id),
        )


CURRENT: ContextVar[PredictionContext | None] = ContextVar("detwatch_prediction_context", default=None)


@contextlib.contextmanager
def prediction_context(
    *,
    image_key: str | Sequence[str] | None = None,
    image_uri: str | Sequence[str] | None = None,
    ab_variant: Arm | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    prediction_id: str | Sequence[str] | None = None,
) -> Iterator[PredictionContext]:
    """Attach image keys/URIs, an A/B arm or attributes to the decorated calls inside.

    For a batch call pass sequences aligned with the images. Image keys and URIs go
    to the prediction event and the span, never to metric attributes. ``attributes``
    go to the span and the event, and to metrics only when their names are in the
    decorator's ``metric_attribute_allowlist``. Nested contexts inherit what they do
    not override, except ``prediction_id``.

    ``prediction_id`` names the prediction event of the call made inside (a sequence,
    one per image, for a batch call), e.g. your request id, so that feedback can refer
    to it; it is used by the first call only (a second call gets generated ids). Either
    way, the yielded object's ``prediction_ids`` lists the ids the calls produced::

        with prediction_context() as ctx:
            predict(frame)
        client.send_feedback(type="false_positive", prediction_id=ctx.prediction_ids[0])
    """
    if ab_variant not in (None, "a", "b"):
        raise ValueError(f"ab_variant: must be 'a' or 'b', not {ab_variant!r}")
    if prediction_id is not None:
        ids = [prediction_id] if isinstance(prediction_id, str) else list(prediction_id)
        for value in ids:
            if not isinstance(value, str) or not 0 < len(value) <= MAX_PREDICTION_ID_LENGTH:
                raise ValueError(
                    f"prediction_id: must be a string of 1 to {MAX_PREDICTION_ID_LENGTH} characters"
                    f" (or a sequence of them), got {value!r}"
                )
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ValueError(f"prediction_id: control characters are not allowed, got {value!r}")
    outer = CURRENT.get()
    merged_attrs: dict[str, AttributeValue] = dict(outer.attributes) if outer else {}
    merged_attrs.update(attributes or {})
    ctx = PredictionContext(
        image_key=image_key if image_key is not None else (outer.image_key if outer else None),
        image_uri=image_uri if image_uri is not None else (outer.image_uri if outer else None),
        ab_variant=ab_variant if ab_variant is not None else (outer.ab_variant if outer else None),
        attributes=merged_attrs,
        prediction_id=prediction_id,
    )
    token = CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        CURRENT.reset(token)
