"""Per-call information the caller knows but the model's signature does not carry.

Image keys and URIs, the A/B arm and extra attributes travel in a context variable,
so the decorated function keeps its own signature and the information follows
``asyncio`` tasks and threads that copy the context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

AttributeValue = str | bool | int | float

Arm = Literal["a", "b"]


@dataclass(frozen=True)
class PredictionContext:
    """What :func:`prediction_context` set for the calls inside it."""

    image_key: str | Sequence[str] | None = None
    image_uri: str | Sequence[str] | None = None
    ab_variant: Arm | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


CURRENT: ContextVar[PredictionContext | None] = ContextVar("detwatch_prediction_context", default=None)


@contextlib.contextmanager
def prediction_context(
    *,
    image_key: str | Sequence[str] | None = None,
    image_uri: str | Sequence[str] | None = None,
    ab_variant: Arm | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[PredictionContext]:
    """Attach image keys/URIs, an A/B arm or attributes to the decorated calls inside.

    For a batch call pass sequences aligned with the images. Image keys and URIs go
    to the prediction event and the span, never to metric attributes. ``attributes``
    go to the span and the event, and to metrics only when their names are in the
    decorator's ``metric_attribute_allowlist``. Nested contexts inherit what they do
    not override.
    """
    if ab_variant not in (None, "a", "b"):
        raise ValueError(f"ab_variant: must be 'a' or 'b', not {ab_variant!r}")
    outer = CURRENT.get()
    merged_attrs: dict[str, AttributeValue] = dict(outer.attributes) if outer else {}
    merged_attrs.update(attributes or {})
    ctx = PredictionContext(
        image_key=image_key if image_key is not None else (outer.image_key if outer else None),
        image_uri=image_uri if image_uri is not None else (outer.image_uri if outer else None),
        ab_variant=ab_variant if ab_variant is not None else (outer.ab_variant if outer else None),
        attributes=merged_attrs,
    )
    token = CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        CURRENT.reset(token)
