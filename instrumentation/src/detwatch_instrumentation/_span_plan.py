"""The call's span, planned in the inference process and built in the recorder process.

Why
---
Starting and ending an SDK span costs the caller ~17 µs in a tight loop and some 40 µs
right after a forward pass (cold caches): attribute cleaning, the span object, the
span processor's queue; exporting it then encodes and posts it on a thread of the
inference process, which takes the GIL from the next forward pass. When the recorder
process (:mod:`._recorder_process`) has the application's tracer provider too, the
caller only *plans* the span: it draws the ids from the application's id generator,
asks the application's sampler, takes the parent from the current context, and notes
the start and end times; the recorder process builds the same span from that plan and
hands it to its span processors (:func:`build_span`). The call's context holds a
:class:`CollectingSpan` with the planned ids, so spans the model creates nest under it
and the prediction event carries the same trace and span ids.

What differs from an SDK span
-----------------------------
Attributes that code inside the call sets on the current span are kept (sent with the
plan). Events, links, status and name changes made by that code are not (the
decorator's own status and exception event on failure are); span processors see the
span only at its end, in the recorder process (``on_start`` is not called), and the
SDK's own span-count metrics do not count it. Planning is used only for the
tracer provider given to :func:`._recorder_process.use_recorder_process` (the one
``detwatch.configure_opentelemetry`` builds), when it is the SDK's own ``TracerProvider``;
any other provider gets a real span in this process, as before.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from . import semconv

_PLAIN = (str, bool, int, float)

try:  # the API's own cleaning, which the SDK's span applies (private: absent from some versions)
    from opentelemetry.attributes import _clean_attribute_value
except ImportError:  # pragma: no cover - other API versions
    _clean_attribute_value = None  # type: ignore[assignment]


class PlannedSpan(NamedTuple):
    """Everything the recorder process needs to build the span the SDK would have started.

    A named tuple, not a frozen dataclass: made on the caller's thread for every call, it
    is built several times faster; ``fields()`` is the plain tuple the hand-off pickles.
    """

    name: str
    trace_id: int
    span_id: int
    trace_flags: int
    trace_state: tuple[tuple[str, str], ...]
    parent: tuple[int, int, int, bool] | None
    """The parent's (trace id, span id, flags, is remote), as the SDK records it."""
    attributes: Mapping[str, Any]
    """The sampler's attributes (the SDK starts the span with those)."""
    start_ns: int
    recording: bool

    def fields(self) -> tuple[Any, ...]:
        """The fields as a plain tuple (``PlannedSpan(*fields)``): the hand-off pickles only built-in types."""
        return tuple(self)

    def span_context(self) -> SpanContext:
        return SpanContext(
            self.trace_id,
            self.span_id,
            is_remote=False,
            trace_flags=TraceFlags(self.trace_flags),
            trace_state=TraceState(list(self.trace_state)) if self.trace_state else None,
        )


class SpanEnd(NamedTuple):
    """How the planned span ended: when, what the call set on it, and the decorator's error status."""

    end_ns: int
    attributes: Mapping[str, Any]
    error: tuple[str, str, Mapping[str, Any]] | None = None
    """(error type, status description, exception event attributes) when the call raised."""

    def fields(self) -> tuple[Any, ...]:
        return tuple(self)


class CollectingSpan(trace.Span):
    """The current span during a planned call: the planned ids, and the attributes set on it."""

    __slots__ = ("_context", "_recording", "attributes")

    def __init__(self, context: SpanContext, recording: bool) -> None:
        self._context = context
        self._recording = recording
        self.attributes: dict[str, Any] = {}

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._recording

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        if not (self._recording and isinstance(key, str)):
            return
        if _clean_attribute_value is not None:
            # What the SDK's span would store (a sequence as a tuple, an odd object as None):
            # plain values, which the recorder process's span then stores as they are.
            self.attributes[key] = _clean_attribute_value(value, None)
        elif _attribute_value(value):
            self.attributes[key] = tuple(value) if isinstance(value, list) else value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        """Not kept (see the module documentation)."""

    def update_name(self, name: str) -> None:
        """Not kept (see the module documentation)."""

    def set_status(self, status: Any, description: str | None = None) -> None:
        """Not kept (see the module documentation)."""

    def record_exception(
        self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False
    ) -> None:
        """Not kept (see the module documentation)."""

    def end(self, end_time: int | None = None) -> None:
        """The decorator ends the planned span."""


def _attribute_value(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value)


def is_standard(tracer_provider: object) -> bool:
    """Whether spans of this provider can be planned: the SDK's own ``TracerProvider``, tracing enabled."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return False
    return type(tracer_provider) is TracerProvider and not getattr(tracer_provider, "_disabled", False)


def plan_span(tracer_provider: Any, name: str, attributes: Mapping[str, Any]) -> PlannedSpan:
    """Plan the span ``tracer.start_span(name, attributes=attributes)`` would start now, in the current context.

    As the SDK's ``Tracer.start_span``: the parent is the current span, a root span gets
    a new trace id, the sampler decides (and may add attributes and trace state).
    """
    context: Context | None = None
    parent = trace.get_current_span(context).get_span_context()
    ids = tracer_provider.id_generator
    if parent is None or not parent.is_valid:
        parent_tuple = None
        trace_id = ids.generate_trace_id()
        random_trace_id = ids.is_trace_id_random()
    else:
        parent_tuple = (parent.trace_id, parent.span_id, int(parent.trace_flags), parent.is_remote)
        trace_id = parent.trace_id
        random_trace_id = parent.trace_flags.random_trace_id
    result = tracer_provider.sampler.should_sample(context, trace_id, name, SpanKind.INTERNAL, attributes, ())
    flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
    if random_trace_id:
        flags |= TraceFlags.RANDOM_TRACE_ID
    return PlannedSpan(
        name=name,
        trace_id=trace_id,
        span_id=ids.generate_span_id(),
        trace_flags=flags,
        trace_state=tuple(result.trace_state.items()) if result.trace_state else (),
        parent=parent_tuple,
        attributes=dict(result.attributes or {}),
        start_ns=time.time_ns(),
        recording=result.decision.is_recording(),
    )


def error_end(exc: BaseException, error_type: str) -> tuple[str, str, Mapping[str, Any]]:
    """The ``error.type``, status description and exception event the decorator gives a failed call's span."""
    module = type(exc).__module__
    qualname = type(exc).__qualname__
    event = {
        "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        "exception.escaped": "False",
    }
    return error_type, f"{error_type}: {exc}", event


@functools.lru_cache(maxsize=64)
def _scope(tracer_provider: Any, scope_name: str, scope_version: str) -> Any:
    """The instrumentation scope the provider's tracer of that name has (a tracer is made once, not per span)."""
    return tracer_provider.get_tracer(scope_name, scope_version)._instrumentation_scope


def build_span(tracer_provider: Any, plan: PlannedSpan, end: SpanEnd, scope_name: str, scope_version: str) -> None:
    """Build the planned span with ``tracer_provider`` (the SDK's) and hand it to its span processors."""
    if not plan.recording:
        return
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.trace import Event, ReadableSpan

    limits = tracer_provider._span_limits
    attributes = BoundedAttributes(
        limits.max_span_attributes, plan.attributes, immutable=False, max_value_len=limits.max_span_attribute_length
    )
    for key, value in end.attributes.items():
        attributes[key] = value
    events: Sequence[Any] = ()
    status = Status(StatusCode.UNSET)
    if end.error is not None:
        error_type, description, event_attributes = end.error
        attributes[semconv.ATTR_ERROR_TYPE] = error_type
        events = (Event("exception", dict(event_attributes), end.end_ns),)
        status = Status(StatusCode.ERROR, description)
    scope = _scope(tracer_provider, scope_name, scope_version)
    parent = None
    if plan.parent is not None:
        trace_id, span_id, flags, remote = plan.parent
        parent = SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(flags))
    span = ReadableSpan(
        name=plan.name,
        context=plan.span_context(),
        parent=parent,
        resource=tracer_provider.resource,
        attributes=attributes,
        events=events,
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=plan.start_ns,
        end_time=max(plan.start_ns, end.end_ns),
        instrumentation_scope=scope,
    )
    tracer_provider._active_span_processor.on_end(span)
