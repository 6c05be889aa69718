"""The common decorated call in a few steps: planned span, arrays copied raw into the ring.

Why
---
Right after a forward pass the caller's caches are cold: each Python step of the
decorator then costs several times what it costs in a tight loop (measured: the whole
hand-off, ~140 interpreter calls, took ~30 µs in a loop and ~200 µs after a 3 ms
sleep or a 15 ms GIL-holding forward pass). What the caller pays is therefore set by
the number of steps, and the general path (:meth:`._monitor._Monitor.begin`,
``finish``, :func:`._snapshot.snapshot`, the pickled frame) takes many, because it
handles every output format, prediction contexts, batches and in-process recording.

This module takes the call that most applications make, in few steps:

- **begin**: the parent span is read from the current context once; the ids come
  from the application's id generator; the sampling decision of the SDK's default
  samplers (``parentbased_always_on``, ``always_on``) is made inline, with what
  their ``should_sample`` would return; the current span during the call is a
  :class:`FastSpan`, whose ``SpanContext`` is built only if code inside the call asks
  for it.
- **finish**: a torchvision-layout dict of NumPy arrays or CPU tensors (``boxes [N, 4]``,
  ``scores [N]``, ``labels [N]``) is written into the ring as one fixed header and the arrays'
  raw bytes (:meth:`._ring.Ring.write_parts`): no ``tolist()``, no pickling. Any other
  output follows the header as the general path would send it (its
  :func:`._snapshot.snapshot`, pickled), with the attributes code inside the call set
  on the span.

The recorder process turns such a frame back into the frame the general path would
have sent (:func:`decode`): the arrays' bytes as lists equal ``ndarray.tolist()``, the
planned span's name and attributes are the twin monitor's. What the fast frame does
not carry takes the general path: a parent with trace state, another sampler or
tracer provider (decided in ``_Monitor._read_enabled``), a prediction context, a
batch, an input path, a call that raised, an array whose memory is not one block.
Nothing about the telemetry differs.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import struct
import sys
import time
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, SpanContext, TraceFlags

from ._outputs import MAX_DETECTIONS
from ._snapshot import is_plain, pickle_frame, snapshot
from ._span_plan import CollectingSpan

MAGIC = b"\x00D"
"""A fast frame's first bytes (a pickle of protocol 2 or later starts with ``\\x80``)."""

_HEADER = struct.Struct("<2sBBB3sIIqqqQQQQdd")
"""magic, bits, trace flags, parent flags, formats (boxes, scores, labels), monitor key, detections,
duration, end (unix ns), start (unix ns), trace id (high, low), span id, parent span id, width, height."""

PICKLED = b"\x00\x00\x00"
"""The formats of a frame whose output travels pickled (its length in place of the detections)."""

METRICS_ON, LOGS_ON, PLANNED, RECORDING, HAS_PARENT, PARENT_REMOTE, HAS_SIZE = (1 << i for i in range(7))

_FORMATS = frozenset("fdqlihbQLIHB")
"""Struct (and ``memoryview.cast``) formats of the NumPy dtypes that cross as raw bytes."""
_U64 = (1 << 64) - 1
_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM_TRACE_ID = int(TraceFlags.RANDOM_TRACE_ID)

_SPAN_KEY: str = next(iter(trace.set_span_in_context(INVALID_SPAN, Context())))
"""The context key of the current span (found through the public API, not imported from a private name)."""


class FastSpan(CollectingSpan):
    """The current span during a fast call: its ``SpanContext`` is made only when asked for."""

    __slots__ = ("_ids",)

    def __init__(self, trace_id: int, span_id: int, flags: int, recording: bool) -> None:
        self._ids = (trace_id, span_id, flags)
        self._recording = recording
        self.attributes: dict[str, Any] = {}

    def get_span_context(self) -> SpanContext:
        try:
            return self._context
        except AttributeError:
            trace_id, span_id, flags = self._ids
            self._context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags))
            return self._context


class FastCall:
    """One fast call, from its begin to its finish on the caller's thread (``stage()`` reads it too)."""

    __slots__ = (
        "active_token",
        "bits",
        "flags",
        "image",
        "logs_on",
        "metrics_on",
        "monitor",
        "parent",
        "span",
        "start_ns",
        "start_unix_ns",
        "token",
    )
    variant = None
    """Fast calls have no prediction context, hence no A/B arm."""

    def __init__(self, monitor: Any, image: Any, metrics_on: bool, logs_on: bool) -> None:
        self.monitor = monitor
        self.image = image
        self.metrics_on = metrics_on
        self.logs_on = logs_on
        self.bits = (METRICS_ON if metrics_on else 0) | (LOGS_ON if logs_on else 0)
        self.span: FastSpan | None = None
        self.flags = 0
        self.parent: tuple[int, int, int, bool] | None = None
        self.token: object | None = None
        self.active_token: Token[Any] | None = None
        self.start_ns = 0
        self.start_unix_ns = 0


class FastRoute:
    """How one monitor's calls take the fast path, decided with the providers (see ``_Monitor._read_enabled``)."""

    __slots__ = ("always_on", "ids", "random_ids", "tracing")

    def __init__(self, tracer_provider: Any | None) -> None:
        self.tracing = tracer_provider is not None
        self.ids = tracer_provider.id_generator if tracer_provider is not None else None
        self.always_on = False
        self.random_ids = False
        """The SDK's own ``RandomIdGenerator``: its draws (``random.getrandbits``) are made inline."""
        if tracer_provider is not None:
            from opentelemetry.sdk.trace import sampling
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

            self.always_on = tracer_provider.sampler is sampling.ALWAYS_ON
            self.random_ids = type(self.ids) is RandomIdGenerator

    @staticmethod
    def for_provider(tracer_provider: Any | None) -> FastRoute | None:
        """The route, or ``None`` when the provider's sampler is not one whose decision is made inline."""
        if tracer_provider is None:
            return FastRoute(None)
        try:
            from opentelemetry.sdk.trace import sampling
        except ImportError:  # pragma: no cover - planned spans need the SDK
            return None
        sampler = getattr(tracer_provider, "sampler", None)
        if sampler is not sampling.DEFAULT_ON and sampler is not sampling.ALWAYS_ON:
            return None
        return FastRoute(tracer_provider)

    def begin(self, call: FastCall) -> bool:
        """Plan the call's span and make it current, as :func:`._span_plan.plan_span` would; ``False``: general path."""
        ids: Any = self.ids
        context: Context = otel_context.get_current()
        current: Any = context.get(_SPAN_KEY)
        parent = current.get_span_context() if current is not None else None
        random_ids = self.random_ids
        if parent is None or not parent.is_valid:
            if random_ids:  # RandomIdGenerator.generate_trace_id and is_trace_id_random, inline
                trace_id = random.getrandbits(128)
                while not trace_id:
                    trace_id = random.getrandbits(128)
                flags = _SAMPLED | _RANDOM_TRACE_ID
            else:
                trace_id = ids.generate_trace_id()
                flags = _SAMPLED | (_RANDOM_TRACE_ID if ids.is_trace_id_random() else 0)
            recording = True
        else:
            if parent.trace_state:
                return False  # the samplers pass the parent's trace state on: the general path carries it
            parent_flags = parent.trace_flags
            trace_id = parent.trace_id
            recording = self.always_on or parent_flags & _SAMPLED != 0
            flags = (_SAMPLED if recording else 0) | (parent_flags & _RANDOM_TRACE_ID)
            call.parent = (trace_id, parent.span_id, int(parent_flags), parent.is_remote)
            call.bits |= HAS_PARENT | (PARENT_REMOTE if parent.is_remote else 0)
        if random_ids:
            span_id = random.getrandbits(64)
            while not span_id:
                span_id = random.getrandbits(64)
        else:
            span_id = ids.generate_span_id()
        span = call.span = FastSpan(trace_id, span_id, flags, recording)
        call.flags = flags
        call.bits |= PLANNED | (RECORDING if recording else 0)
        call.start_unix_ns = time.time_ns()
        # What trace.set_span_in_context(span) makes, without reading the current context again.
        values = dict(context)
        values[_SPAN_KEY] = span
        call.token = otel_context.attach(type(context)(values))
        return True


_NDARRAY: list[Any] = []
"""NumPy's ``ndarray`` once NumPy is imported (this distribution does not import it)."""


def _ndarray() -> Any:
    if not _NDARRAY:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        _NDARRAY.append(numpy.ndarray)
    return _NDARRAY[0]


def _on_cpu(*tensors: Any) -> bool:
    """Whether these are PyTorch tensors in host memory (``.numpy()`` then views them without a copy)."""
    return all(type(t).__module__ == "torch" and getattr(t, "is_cpu", False) is True for t in tensors)


def encode(
    call: FastCall, key: int, output: Any, *, size: tuple[float, float] | None, duration_ns: int, end_unix_ns: int
) -> tuple[Any, ...]:
    """The call's frame: a header, then the three arrays' bytes or the pickled snapshot of the output.

    The arrays' bytes for a torchvision dict of native NumPy arrays or CPU tensors; for any other
    output (or when code inside the call set attributes on its span) the output's
    :func:`._snapshot.snapshot`, pickled as the general frame pickles it, with those
    attributes.
    """
    span = call.span
    attributes = span.attributes if span is not None else None
    formats = b""
    n = 0
    if type(output) is dict and not attributes:
        # A torchvision dict of native arrays of the formats memoryview reads: raw bytes.
        boxes: Any = output.get("boxes")
        kind = type(boxes)
        scores: Any = output.get("scores")
        labels: Any = output.get("labels")
        if kind.__name__ == "Tensor" and _on_cpu(boxes, scores, labels):
            # CPU tensors (torchvision on a CPU): their NumPy views, no copy.
            with contextlib.suppress(TypeError, RuntimeError):  # bfloat16 and others NumPy lacks: pickled frame
                try:
                    boxes, scores, labels = boxes.numpy(), scores.numpy(), labels.numpy()
                except RuntimeError:  # a tensor that requires grad (outside inference mode)
                    boxes, scores, labels = boxes.detach().numpy(), scores.detach().numpy(), labels.detach().numpy()
            kind = type(boxes)
        if kind is _ndarray() and type(scores) is kind and type(labels) is kind:
            shape = boxes.shape
            n = shape[0] if len(shape) == 2 else -1
            if shape == (n, 4) and scores.shape == (n,) and labels.shape == (n,) and n <= MAX_DETECTIONS + 1:
                b, s, lab = boxes.dtype, scores.dtype, labels.dtype
                chars = b.char + s.char + lab.char
                native = b.isnative and s.isnative and lab.isnative
                if native and chars[0] in _FORMATS and chars[1] in _FORMATS and chars[2] in _FORMATS:
                    formats = chars.encode("ascii")
    if not formats:
        snap = snapshot(output, None)
        body = pickle_frame((snap, attributes or None), is_plain(snap))
        formats = PICKLED
        n = len(body)
    if span is None:
        trace_id = span_id = 0
    else:
        trace_id, span_id, _ = span._ids
    parent = call.parent
    bits = call.bits | (HAS_SIZE if size is not None else 0)
    width, height = size if size is not None else (0.0, 0.0)
    header = _HEADER.pack(
        MAGIC,
        bits,
        call.flags,
        parent[2] if parent is not None else 0,
        formats,
        key,
        n,
        duration_ns,
        end_unix_ns,
        call.start_unix_ns,
        trace_id >> 64,
        trace_id & _U64,
        span_id,
        parent[1] if parent is not None else 0,
        width,
        height,
    )
    if formats is not PICKLED:
        return header, boxes, scores, labels
    return header, body


_KEY = struct.Struct("<I")
_KEY_OFFSET = 8
"""Where the monitor key lies in the header (after magic, bits, the two flags and the formats)."""


def is_fast(payload: bytes) -> bool:
    """Whether a ring frame is a fast frame (else a pickle)."""
    return payload[:2] == MAGIC


def key_of(payload: bytes) -> int:
    """The monitor key of a fast frame (to find its twin monitor before :func:`decode`)."""
    key: int = _KEY.unpack_from(payload, _KEY_OFFSET)[0]
    return key


def decode(payload: bytes, span_name: str, span_attributes: dict[str, Any]) -> tuple[Any, ...]:
    """The frame :meth:`._monitor._Monitor.process_frame` would have made of the same call.

    ``span_name`` and ``span_attributes`` are the monitor's (the twin in the recorder
    process has the same), which the sampler's result carries for a recording span.
    """
    (
        _,
        bits,
        flags,
        parent_flags,
        formats,
        key,
        n,
        duration_ns,
        end_unix_ns,
        start_unix_ns,
        trace_high,
        trace_low,
        span_id,
        parent_span_id,
        width,
        height,
    ) = _HEADER.unpack_from(payload)
    view = memoryview(payload)
    offset = _HEADER.size
    span_attributes_set: dict[str, Any] = {}
    if formats == PICKLED:
        output, attributes = pickle.loads(view[offset : offset + n])
        span_attributes_set = attributes or {}
    else:
        columns = []
        for fmt, per_row in zip(formats.decode("ascii"), (4, 1, 1), strict=True):
            end = offset + n * per_row * struct.calcsize(fmt)
            columns.append(view[offset:end].cast(fmt).tolist())
            offset = end
        flat, scores, labels = columns
        output = {"boxes": [flat[i : i + 4] for i in range(0, 4 * n, 4)], "scores": scores, "labels": labels}
    trace_id = (trace_high << 64) | trace_low
    planned: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    span: tuple[int, int, int] | None = None
    if bits & PLANNED:
        recording = bool(bits & RECORDING)
        span = (trace_id, span_id, flags)
        parent = (trace_id, parent_span_id, parent_flags, bool(bits & PARENT_REMOTE)) if bits & HAS_PARENT else None
        plan = (
            span_name,
            trace_id,
            span_id,
            flags,
            (),
            parent,
            dict(span_attributes) if recording else {},
            start_unix_ns,
            recording,
        )
        planned = (plan, (end_unix_ns, span_attributes_set, None))
    info = ((width, height) if bits & HAS_SIZE else None, None, None)
    return (
        "call",
        key,
        None,
        None,
        duration_ns,
        end_unix_ns,
        None,
        False,
        info,
        span,
        output,
        bool(bits & METRICS_ON),
        bool(bits & LOGS_ON),
        None,
        planned,
    )
