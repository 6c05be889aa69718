"""The ``monitor_detections`` decorator.

On the caller's thread the decorator does constant work: start a span and make it
current (so spans the model itself creates nest under it), time the call, end the
span, and queue the output for the recording thread (:mod:`._recorder`). The
wrapped function runs exactly once; its result is returned as the same object and
its exception re-raised as the same object. Every telemetry step goes through the
guard (:mod:`._guard`), so telemetry can fail without inference noticing.

The recording thread reads the output (:mod:`._outputs`), records the metrics of
the telemetry contract (:mod:`.semconv`) and emits one ``objdet.prediction`` log
record per image, linked to the call's span through the log record's context.

When the recorder process records the call (:mod:`._recorder_process`) and has the
application's tracer provider, the span is planned instead of started
(:mod:`._span_plan`): the current span during the call is a stand-in with the
planned ids that keeps the attributes set on it, and the recorder process builds the
span; if the call ends up recorded here after all, the span is built here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LoggerProvider, SeverityNumber, get_logger, get_logger_provider
from opentelemetry.metrics import MeterProvider, get_meter, get_meter_provider
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)

from . import semconv
from ._cardinality import ClassFolder
from ._context import CURRENT, AttributeValue, PredictionContext
from ._fast_path import FastCall, FastRoute, encode
from ._guard import guarded, log_failure
from ._histogram_batch import HistogramBatch
from ._instruments import create_instruments
from ._json import dumps
from ._outputs import BoxFormat, ImageDetections, LabelNames, OutputOptions, image_size_of, read_image_output
from ._recorder import RECORDER
from ._recorder_process import PROCESS, MonitorSpec
from ._snapshot import device_snapshot, on_device, replay_adapter, snapshot, type_name
from ._span_plan import CollectingSpan, PlannedSpan, SpanEnd, build_span, error_end, plan_span
from .version import __version__

if TYPE_CHECKING:
    from .sinks import DataEngine

P = ParamSpec("P")
R = TypeVar("R")
_logger = logging.getLogger("detwatch_instrumentation")

_SCOPE = "detwatch_instrumentation"
_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_STAGES = ("preprocess", "inference", "postprocess")
_RESERVED_PREFIXES = ("objdet.", "error.type")
ENABLED_TTL_S = 1.0
"""How long the decision "is an SDK configured?" is reused before the globals are read again."""
DEFAULT_MAX_CLASSES = 100
"""Distinct class labels per model before the rest fold into ``other``."""

Attrs = dict[str, AttributeValue]


def _api_default(provider: object, api_module: str) -> bool:
    # A provider defined by the API package itself (no-op or proxy) records nothing:
    # then the decorator skips all telemetry work. An SDK (or any other
    # implementation) lives in another module.
    return type(provider).__module__.startswith(api_module)


def _rfc3339(unix_ns: int) -> str:
    secs, rem = divmod(unix_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem // 1_000_000:03d}Z"


def _enabled_always() -> bool:
    """A tracer's enablement where its SDK has no per-tracer configurator."""
    return True


def _pick(value: Any, index: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if index == 0 else None
    try:
        item = value[index]
    except (IndexError, TypeError, KeyError):
        return None
    return None if item is None else str(item)


class ImageInfo(NamedTuple):
    """What the recorder process knows of an input image: its size and, for a path, its key and URI."""

    size: tuple[float, float] | None
    key: str | None
    uri: str | None


def _path_ref(image: Any) -> tuple[str | None, str | None]:
    """The image key and ``file://`` URI an input path gives (``None``s for other inputs)."""
    if isinstance(image, ImageInfo):
        return image.key, image.uri
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if isinstance(path, str):
            return path, "file://" + os.path.abspath(path)
    return None, None


def _image_info(image: Any, size: tuple[float, float] | None) -> ImageInfo:
    key, uri = _path_ref(image)
    return ImageInfo(size or image_size_of(image), key, uri)


def _images_of(call: _Call) -> list[Any]:
    """The call's input images, one per output (off the caller's thread for in-process recording)."""
    if not call.batch:
        return [call.image]
    if isinstance(call.image, list):
        return call.image
    if isinstance(call.image, Iterator):  # one-shot: iterating it here would take it from the caller
        return [call.image]
    # batch=True with an array-like batch (e.g. a [B, H, W, C] array): one entry per leading index.
    try:
        return list(call.image)
    except TypeError:
        return [call.image]


_MONITOR_KEYS = itertools.count(1)


class _Call:
    """One decorated call, from the caller's thread to the recording thread."""

    __slots__ = (
        "active_token",
        "batch",
        "duration_ns",
        "end_unix_ns",
        "error_type",
        "image",
        "logs_on",
        "metrics_on",
        "monitor",
        "output",
        "pctx",
        "plan",
        "prediction_ids",
        "span",
        "span_context",
        "span_end",
        "start_ns",
        "token",
        "variant",
    )

    def __init__(
        self,
        monitor: _Monitor,
        *,
        image: Any,
        batch: bool,
        pctx: PredictionContext | None,
        metrics_on: bool,
        logs_on: bool,
    ) -> None:
        self.monitor = monitor
        self.image = image
        self.batch = batch
        self.pctx = pctx
        self.variant = pctx.ab_variant if pctx is not None else None
        self.metrics_on = metrics_on
        self.logs_on = logs_on
        self.span: Span | None = None
        self.span_context: trace.SpanContext | None = None
        self.token: object | None = None
        self.active_token: Token[_Call | FastCall | None] | None = None
        self.output: Any = None
        self.error_type: str | None = None
        self.duration_ns = 0
        self.end_unix_ns = 0
        self.start_ns = 0
        self.prediction_ids: list[str] | None = None
        self.plan: PlannedSpan | None = None
        """The span planned here and built by the recorder process (:mod:`._span_plan`), instead of ``span``."""
        self.span_end: SpanEnd | None = None

    def record(self) -> _Monitor | None:
        return self.monitor.record(self)


_ACTIVE: ContextVar[_Call | FastCall | None] = ContextVar("detwatch_active_call", default=None)

_GENERAL_INPUTS = (str, list, tuple)
"""Inputs whose calls take the general path: a path (its key and URI travel in the pickled frame; an
``os.PathLike`` too), a batch."""


class _Monitor:
    """Configuration and telemetry handles of one decorated function."""

    def __init__(
        self,
        *,
        model_id: str,
        model_version: str,
        options: OutputOptions,
        batch: bool | Literal["auto"],
        image_position: int | None,
        image_name: str | None,
        image_size: tuple[float, float] | None,
        folder: ClassFolder,
        metric_attributes: Mapping[str, AttributeValue],
        metric_attribute_allowlist: frozenset[str],
        emit_events: bool,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        logger_provider: LoggerProvider | None,
        data_engine: DataEngine | None = None,
    ) -> None:
        self.model_id = model_id
        self.data_engine = data_engine
        self.model_version = model_version
        self.options = options
        self.batch = batch
        self.image_position = image_position
        self.image_name = image_name
        self.image_size = image_size
        self.folder = folder
        self.allowlist = metric_attribute_allowlist
        # The cardinality guard of allow-listed attributes, as for classes: first seen keep
        # their value, later ones fold into "other" (each value is a series per instrument).
        self._values_seen: dict[str, set[Any]] = {}
        self._extras_seen: set[tuple[tuple[str, AttributeValue], ...]] = set()
        self.emit_events = emit_events
        self.span_name = f"detect {model_id}"
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._logger_provider = logger_provider
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self.instruments = create_instruments(get_meter(_SCOPE, __version__, meter_provider))
        self.logger = get_logger(_SCOPE, __version__, logger_provider=logger_provider)
        self.static: Attrs = {
            semconv.ATTR_MODEL_ID: model_id,
            semconv.ATTR_MODEL_VERSION: model_version,
            **dict(metric_attributes),
        }
        self._span_attrs: dict[str | None, Attrs] = {}
        self._enabled_cached = (False, False, False)
        self._enabled_until = 0.0
        self._attr_cache: dict[tuple[Any, ...], Attrs] = {}
        # Counter increments summed on the recording thread until add_pending():
        # keys of _attr_cache -> count (see _recorder.COUNTER_FLUSH_S).
        self._pending_images: dict[tuple[Any, ...], int] = {}
        self._pending_detections: dict[tuple[Any, ...], int] = {}
        self._warned: dict[str, tuple[float, int]] = {}
        """Invalid-output reason -> (when it was last logged, occurrences since)."""
        self.key = next(_MONITOR_KEYS)
        """Names this monitor in the frames sent to the recorder process."""
        self._to_recorder_process = False
        self._spec: MonitorSpec | None = None
        self._planning: TracerProvider | None = None
        """The tracer provider whose spans this monitor plans for the recorder process (``None``: real spans)."""
        self.span_provider: Any = None
        """The recorder process's tracer provider, which builds planned spans (recorder process only)."""
        self.histograms = HistogramBatch(fast=True)
        """Records an image's values per series (on the recording thread, outside any span)."""
        self._last_size: tuple[Any, tuple[float, float] | None] = (None, None)
        """The last input's shape and its size (fast calls only)."""
        self._fast: FastRoute | None = None
        """How calls take the fast path (:mod:`._fast_path`); ``None``: every call takes the general one."""

    def spec(self) -> MonitorSpec:
        """What the recorder process needs to record this monitor's calls as this process would."""
        if self._spec is None:
            options = self.options
            self._spec = MonitorSpec(
                model_id=self.model_id,
                model_version=self.model_version,
                box_format=options.box_format,
                normalized_boxes=options.normalized_boxes,
                label_names=options.label_names,
                has_adapter=options.adapter is not None,
                image_size=self.image_size,
                max_classes=self.folder.max_classes,
                class_allowlist=self.folder.allowlist,
                metric_attributes={k: v for k, v in self.static.items() if not k.startswith("objdet.")},
                metric_attribute_allowlist=self.allowlist,
                emit_events=self.emit_events,
            )
        return self._spec

    @classmethod
    def from_spec(
        cls,
        spec: MonitorSpec,
        meter_provider: MeterProvider,
        logger_provider: LoggerProvider,
        tracer_provider: TracerProvider | None = None,
    ) -> _Monitor:
        """The recorder process's twin of a monitor of the inference process."""
        options = OutputOptions(
            box_format=cast(BoxFormat, spec.box_format),
            normalized_boxes=spec.normalized_boxes,
            label_names=spec.label_names,
            adapter=replay_adapter if spec.has_adapter else None,
        )
        twin = cls(
            model_id=spec.model_id,
            model_version=spec.model_version,
            options=options,
            batch=False,
            image_position=None,
            image_name=None,
            image_size=spec.image_size,
            folder=ClassFolder(spec.max_classes, spec.class_allowlist),
            metric_attributes=spec.metric_attributes,
            metric_attribute_allowlist=spec.metric_attribute_allowlist,
            emit_events=spec.emit_events,
            tracer_provider=None,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
        )
        # The recorder process never has a current span: no check per series.
        twin.histograms = HistogramBatch(fast=True, outside_spans=True)
        twin.span_provider = tracer_provider
        return twin

    # ------------------------------------------------------------ caller's thread

    def _enabled(self) -> tuple[bool, bool, bool]:
        # Reading the three global providers costs ~3 µs while none is set (each
        # getter consults os.environ), which would be the whole cost of the no-SDK
        # path: the answer is cached and re-read at most every ENABLED_TTL_S.
        now = time.monotonic()
        if now < self._enabled_until:
            return self._enabled_cached
        enabled = self._read_enabled()
        self._enabled_cached = enabled
        self._enabled_until = now + ENABLED_TTL_S
        return enabled

    def _read_enabled(self) -> tuple[bool, bool, bool]:
        tp = self._tracer_provider or trace.get_tracer_provider()
        mp = self._meter_provider or get_meter_provider()
        lp = self._logger_provider or get_logger_provider()
        # The image a data engine keeps lives in this process: such monitors record here.
        self._to_recorder_process = self.data_engine is None and PROCESS.serves(mp, lp)
        self._planning = tp if self._to_recorder_process and PROCESS.plans_spans(tp) else None
        tracing = not _api_default(tp, "opentelemetry.trace")
        self._fast = None
        if self._to_recorder_process and self.options.adapter is None and self.batch is not True:
            if not tracing:
                self._fast = FastRoute.for_provider(None)
            elif self._planning is not None and getattr(self.tracer, "_is_enabled", _enabled_always)():
                # (A tracer configurator's decision is thus re-read every ENABLED_TTL_S, not per call.)
                self._fast = FastRoute.for_provider(self._planning)
        return (
            tracing,
            not _api_default(mp, "opentelemetry.metrics"),
            self.emit_events and not _api_default(lp, "opentelemetry._logs"),
        )

    def span_attributes(self, variant: str | None) -> Attrs:
        attrs = self._span_attrs.get(variant)
        if attrs is None:
            attrs = dict(self.static)
            if variant is not None:
                attrs[semconv.ATTR_AB_VARIANT] = variant
            self._span_attrs[variant] = attrs
        return attrs

    @guarded(None)
    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | FastCall | None:
        # self._enabled(), inline: one step fewer on every call
        now = time.monotonic()
        tracing_on, metrics_on, logs_on = self._enabled_cached if now < self._enabled_until else self._enabled()
        if not (tracing_on or metrics_on or logs_on):
            return None
        pos = self.image_position
        if pos is not None and pos < len(args):
            image = args[pos]
        elif self.image_name is not None:
            image = kwargs.get(self.image_name)
        else:
            image = None
        pctx = CURRENT.get()
        fast = self._fast
        kind = type(image)
        if fast is not None and pctx is None and kind not in _GENERAL_INPUTS and not hasattr(kind, "__fspath__"):
            if not (metrics_on or logs_on):
                pass  # a span alone: the general path (nothing goes to the recorder process)
            elif tracing_on and not fast.tracing:
                pass  # the providers changed since the route was chosen; chosen again within ENABLED_TTL_S
            else:
                fcall = FastCall(self, image, metrics_on, logs_on)
                if not tracing_on or fast.begin(fcall):
                    fcall.active_token = _ACTIVE.set(fcall)
                    fcall.start_ns = time.perf_counter_ns()
                    return fcall
        batch = self.batch is True or (self.batch == "auto" and isinstance(image, (list, tuple)))
        if batch and isinstance(image, (list, tuple)):
            image = list(image)  # the caller may reuse its list after the call
        call = _Call(self, image=image, batch=batch, pctx=pctx, metrics_on=metrics_on, logs_on=logs_on)
        if tracing_on:
            attrs = self.span_attributes(call.variant)
            if call.pctx is not None and call.pctx.attributes:
                attrs = {**call.pctx.attributes, **attrs}
            planning = self._planning
            span: Span
            # A tracer its provider's configurator disabled starts no span: the SDK decides then.
            if planning is not None and getattr(self.tracer, "_is_enabled", _enabled_always)():
                plan = call.plan = plan_span(planning, self.span_name, attrs)
                span = CollectingSpan(plan.span_context(), plan.recording)
            else:
                span = self.tracer.start_span(self.span_name, kind=SpanKind.INTERNAL, attributes=attrs)
            call.span = span
            call.span_context = span.get_span_context()
            call.token = otel_context.attach(trace.set_span_in_context(span))
        call.active_token = _ACTIVE.set(call)
        call.start_ns = time.perf_counter_ns()
        return call

    def _close(self, call: _Call) -> None:
        # Time can go backwards on some clocks; a duration is never negative.
        call.duration_ns = max(0, time.perf_counter_ns() - call.start_ns)
        call.end_unix_ns = time.time_ns()
        if call.active_token is not None:
            _ACTIVE.reset(call.active_token)
            call.active_token = None
        if call.token is not None:
            otel_context.detach(call.token)  # type: ignore[arg-type]
            call.token = None

    def _submit(self, call: _Call) -> None:
        if not (call.metrics_on or call.logs_on):
            self._build_here(call)
            return
        if self._to_recorder_process and PROCESS.send_call(self, call):
            return
        self._build_here(call)
        if not RECORDER.submit(call, _held_bytes(call.image)):
            self.record_dropped(call.variant, len(call.image) if call.batch and isinstance(call.image, list) else 1)

    def _build_here(self, call: _Call) -> None:
        """A planned span whose call is recorded in this process after all: built here."""
        if call.plan is not None and call.span_end is not None:
            # The provider the plan was made with (self._planning may have been decided again since).
            provider = self._tracer_provider or trace.get_tracer_provider()
            build_span(provider, call.plan, call.span_end, _SCOPE, __version__)
            call.plan = None

    def _finish_fast(self, fast: FastCall, result: Any, *, failed: bool = False) -> _Call | None:
        """End a fast call; the call as the general path has it when it must go that way (always when ``failed``)."""
        end = time.perf_counter_ns()
        end_unix_ns = time.time_ns()
        duration_ns = max(0, end - fast.start_ns)
        if fast.active_token is not None:
            _ACTIVE.reset(fast.active_token)
        if fast.token is not None:
            otel_context.detach(fast.token)  # type: ignore[arg-type]
        if not failed:
            size = self.image_size
            if size is None:
                # Consecutive inputs mostly have one shape: its size is worked out once.
                # (One tuple, replaced whole: calls on other threads never see a shape with another's size.)
                shape = getattr(fast.image, "shape", None)
                last = self._last_size
                if isinstance(shape, tuple) and shape == last[0]:
                    size = last[1]
                else:
                    size = image_size_of(fast.image)
                    self._last_size = (shape, size)
            try:
                parts = encode(fast, self.key, result, size=size, duration_ns=duration_ns, end_unix_ns=end_unix_ns)
            except Exception:  # noqa: BLE001 - an output encode did not foresee goes the general way
                log_failure("fast_path.encode")
            else:
                if PROCESS.send_parts(parts, self):
                    return None
        call = _Call(self, image=fast.image, batch=False, pctx=None, metrics_on=fast.metrics_on, logs_on=fast.logs_on)
        call.duration_ns = duration_ns
        call.end_unix_ns = end_unix_ns
        span = fast.span
        if span is not None:
            trace_id, span_id, flags = span._ids
            call.span_context = span.get_span_context()
            call.plan = PlannedSpan(
                name=self.span_name,
                trace_id=trace_id,
                span_id=span_id,
                trace_flags=flags,
                trace_state=(),
                parent=fast.parent,
                attributes=dict(self.span_attributes(None)) if span.is_recording() else {},
                start_ns=fast.start_unix_ns,
                recording=span.is_recording(),
            )
            call.span = span
        return call

    @guarded(None)
    def finish(self, any_call: _Call | FastCall, result: Any) -> None:
        if isinstance(any_call, FastCall):
            general = self._finish_fast(any_call, result)
            if general is None:
                return
            call = general
        else:
            call = any_call
            self._close(call)
        span = call.span
        if span is not None:
            if isinstance(span, CollectingSpan):
                call.span_end = SpanEnd(call.end_unix_ns, span.attributes)
            else:
                span.end()
            call.span = None
        if not self._to_recorder_process and self.options.adapter is None:
            # Copied off the GPU now, behind this call's kernels only (see _snapshot).
            if call.batch and isinstance(result, list):
                result = [device_snapshot(item) for item in result] if result and on_device(result[0]) else result
            else:
                result = device_snapshot(result)
        call.output = result
        if call.logs_on and call.pctx is not None:
            # Made here, on the caller's thread, so that the context can show them when the call returns.
            call.prediction_ids = _prediction_ids(call)
        self._submit(call)

    @guarded(None)
    def fail(self, any_call: _Call | FastCall, exc: BaseException) -> None:
        if isinstance(any_call, FastCall):
            general = self._finish_fast(any_call, None, failed=True)
            assert general is not None
            call = general
        else:
            call = any_call
            self._close(call)
        error_type = type(exc).__qualname__
        call.error_type = error_type
        span = call.span
        if isinstance(span, CollectingSpan):
            error = error_end(exc, error_type) if span.is_recording() else None
            call.span_end = SpanEnd(call.end_unix_ns, span.attributes, error)
            call.span = None
        elif span is not None:
            if span.is_recording():
                span.set_attribute(semconv.ATTR_ERROR_TYPE, error_type)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
            span.end()
            call.span = None
        self._submit(call)

    def process_frame(self, call: _Call) -> tuple[Any, ...]:
        """The call as the recorder process reads it (caller's thread): image sizes and host copies of outputs."""
        # Plain tuples (ImageInfo's fields, the span plan's): see is_plain.
        infos = [tuple(_image_info(image, self.image_size)) for image in _images_of(call)]
        output: Any = None
        if call.error_type is None:
            adapter = self.options.adapter
            if not call.batch:
                output = snapshot(call.output, adapter)
            elif isinstance(call.output, Iterator):
                output = iter(())  # left to the caller; recorded as unreadable, as in-process
            else:
                try:
                    outputs = list(call.output)
                except TypeError:
                    outputs = []
                output = [snapshot(item, adapter) for item in outputs]
        sc = call.span_context
        span = (sc.trace_id, sc.span_id, int(sc.trace_flags)) if sc is not None and sc.is_valid else None
        return (
            "call",
            self.key,
            call.variant,
            _plain_context(call.pctx),
            call.duration_ns,
            call.end_unix_ns,
            call.error_type,
            call.batch,
            infos if call.batch else infos[0],
            span,
            output,
            call.metrics_on,
            call.logs_on,
            call.prediction_ids,
            (call.plan.fields(), call.span_end.fields()) if call.plan and call.span_end else None,
        )

    def record_frame(self, frame: tuple[Any, ...]) -> _Monitor | None:
        """Record a call sent by :meth:`process_frame` (recorder process)."""
        (
            _,
            _,
            variant,
            pctx,
            duration_ns,
            end_unix_ns,
            error_type,
            batch,
            image,
            span,
            output,
            metrics_on,
            logs_on,
            ids,
            planned,
        ) = frame
        if planned is not None:
            self._build_planned(PlannedSpan(*planned[0]), SpanEnd(*planned[1]))
        image = [ImageInfo(*i) for i in image] if batch else ImageInfo(*image)
        call = _Call(self, image=image, batch=batch, pctx=pctx, metrics_on=metrics_on, logs_on=logs_on)
        call.variant = variant
        call.duration_ns = duration_ns
        call.end_unix_ns = end_unix_ns
        call.error_type = error_type
        call.output = output
        call.prediction_ids = ids
        if span is not None:
            call.span_context = SpanContext(span[0], span[1], is_remote=False, trace_flags=TraceFlags(span[2]))
        return self.record(call)

    @guarded(None)
    def _build_planned(self, plan: PlannedSpan, end: SpanEnd) -> None:
        if self.span_provider is None:
            # use_recorder_process was given a tracer provider, but the factory returned none.
            raise RuntimeError("a planned span arrived, but the recorder process has no tracer provider")
        build_span(self.span_provider, plan, end, _SCOPE, __version__)

    def record_stage(self, variant: str | None, name: str, duration_ns: int, error: str | None) -> None:
        """Record one :func:`stage` duration."""
        attrs = dict(self.span_attributes(variant))
        attrs[semconv.ATTR_STAGE] = name
        if error is not None:
            attrs[semconv.ATTR_ERROR_TYPE] = error
        self.instruments.duration.record(duration_ns / 1e9, attrs)

    def record_dropped(self, variant: str | None, n: int) -> None:
        """Count ``n`` images whose telemetry was dropped."""
        self.instruments.dropped.add(n, self.span_attributes(variant))

    # ------------------------------------------------------------ recording thread

    def _attrs(self, variant: str | None, extra: tuple[tuple[str, AttributeValue], ...], key: str, value: str) -> Attrs:
        cache_key = (variant, extra, key, value)
        attrs = self._attr_cache.get(cache_key)
        if attrs is None:
            attrs = dict(self.static)
            if variant is not None:
                attrs[semconv.ATTR_AB_VARIANT] = variant
            attrs.update(extra)
            if key:
                attrs[key] = value
            self._attr_cache[cache_key] = attrs
        return attrs

    def _count(self, pending: dict[tuple[Any, ...], int], key: tuple[Any, ...], n: int) -> None:
        pending[key] = pending.get(key, 0) + n

    def add_pending(self) -> None:
        """Add the summed counter increments to the SDK (recording thread)."""
        images, detections = self._pending_images, self._pending_detections
        self._pending_images, self._pending_detections = {}, {}
        cache = self._attr_cache
        for key, n in images.items():
            self.instruments.images.add(n, cache[key])
        for key, n in detections.items():
            self.instruments.detections.add(n, cache[key])

    def discard_pending(self) -> None:
        """Forget the summed increments (a forked child's copy of the parent's)."""
        self._pending_images, self._pending_detections = {}, {}

    def _extra(self, pctx: PredictionContext | None) -> tuple[tuple[str, AttributeValue], ...]:
        if pctx is None or not pctx.attributes or not self.allowlist:
            return ()
        extra = tuple(sorted((k, self._fold_value(k, v)) for k, v in pctx.attributes.items() if k in self.allowlist))
        if extra in self._extras_seen:
            return extra
        if len(self._extras_seen) >= MAX_ATTRIBUTE_COMBINATIONS:
            return tuple((k, semconv.OTHER_CLASS) for k, _ in extra)
        self._extras_seen.add(extra)
        return extra

    def _fold_value(self, name: str, value: AttributeValue) -> AttributeValue:
        """An allow-listed attribute's value, or ``other`` past its first MAX_ATTRIBUTE_VALUES (recording thread)."""
        seen = self._values_seen.setdefault(name, set())
        if isinstance(value, list):  # hashable, as attribute sets are cache keys (OpenTelemetry takes any sequence)
            value = tuple(value)
        if value in seen:
            return value
        if len(seen) < MAX_ATTRIBUTE_VALUES:
            seen.add(value)
            return value
        return semconv.OTHER_CLASS

    def record(self, call: _Call) -> _Monitor | None:
        """Record one call's metrics and prediction events (recording thread).

        Returns ``self`` when counter increments wait in :meth:`add_pending`.
        """
        ins = self.instruments
        variant = call.variant
        extra = self._extra(call.pctx)
        base = self._attrs(variant, extra, "", "")
        duration_s = call.duration_ns / 1e9
        images = _images_of(call)
        n = len(images)
        if call.error_type is not None:
            if not call.metrics_on:
                return None
            err = self._attrs(variant, extra, semconv.ATTR_ERROR_TYPE, call.error_type)
            self.histograms.record(ins.duration, (duration_s,), err)
            self._count(self._pending_images, (variant, extra, semconv.ATTR_ERROR_TYPE, call.error_type), n)
            return self
        if call.metrics_on:
            self.histograms.record(ins.duration, (duration_s,), base)
            self._count(self._pending_images, (variant, extra, "", ""), n)
            if call.batch:
                ins.batch_size.record(n, base)
        outputs: list[Any]
        if call.batch:
            if isinstance(call.output, Iterator):
                # A generator or map returned to the caller: reading it here would consume
                # (or race) the caller's own iteration. Not readable: counted, left alone.
                if call.metrics_on:
                    reason = self._attrs(variant, extra, semconv.ATTR_REASON, "unrecognized_format")
                    ins.invalid_outputs.add(n, reason)
                return self if call.metrics_on else None
            try:
                outputs = list(call.output)
            except TypeError:
                outputs = []
            if len(outputs) != n:
                if call.metrics_on:
                    reason = self._attrs(variant, extra, semconv.ATTR_REASON, "batch_length_mismatch")
                    ins.invalid_outputs.add(n, reason)
                return self if call.metrics_on else None
        else:
            outputs = [call.output]
        for index, (image, output) in enumerate(zip(images, outputs, strict=False)):
            size = self.image_size or (image.size if isinstance(image, ImageInfo) else image_size_of(image))
            parsed = read_image_output(output, self.options, size)
            if parsed.invalid:
                self._warn_invalid(parsed.invalid, output)
            if call.metrics_on:
                self._record_image(parsed, variant, extra, base)
            if call.logs_on and parsed.readable:
                self._emit_event(call, index, image, parsed, duration_s)
        return self if call.metrics_on else None

    def _warn_invalid(self, reasons: Iterable[str], output: Any) -> None:
        """Log each reason once, then at most every :data:`WARN_INTERVAL_S` with the count since (recording side).

        ``objdet.invalid_outputs`` counts them, but nobody sees a counter before a
        Collector and a dashboard are set up: an adapter that is needed should be
        obvious on the first day.
        """
        now = time.monotonic()
        for reason in reasons:
            seen = self._warned.get(reason)
            if seen is not None and now - seen[0] < WARN_INTERVAL_S:
                self._warned[reason] = (seen[0], seen[1] + 1)
                continue
            since = f" ({seen[1]} more since the last warning)" if seen is not None and seen[1] else ""
            _logger.warning(
                "detwatch: model %r: output of type %s: %s%s; counted in objdet.invalid_outputs%s",
                self.model_id,
                type_name(output),
                reason.replace("_", " "),
                since,
                _INVALID_HINTS.get(reason, ""),
            )
            self._warned[reason] = (now, 0)

    def _record_image(
        self,
        parsed: ImageDetections,
        variant: str | None,
        extra: tuple[tuple[str, AttributeValue], ...],
        base: Attrs,
    ) -> None:
        ins = self.instruments
        for reason in parsed.invalid:
            ins.invalid_outputs.add(1, self._attrs(variant, extra, semconv.ATTR_REASON, reason))
        if not parsed.readable:
            return
        detections = parsed.detections
        record = self.histograms.record
        record(ins.image_detections, (len(detections),), base)
        if not detections:
            return
        image_area = 0.0
        if parsed.width is not None and parsed.height is not None:
            image_area = parsed.width * parsed.height
        relative = parsed.relative
        fold = self.folder.fold
        # Values grouped per series (label), each series in detection order: recorded a
        # series at a time, the SDK sums them in the order it would one by one.
        confidences: dict[str, list[float]] = {}
        areas: dict[str, list[float]] = {}
        aspects: list[float] = []
        for class_name, score, (x1, y1, x2, y2) in detections:
            label = fold(class_name)
            scores = confidences.get(label)
            if scores is None:
                scores = confidences[label] = []
                areas[label] = []
            scores.append(score)
            width = x2 - x1
            height = y2 - y1
            if relative:
                areas[label].append(width * height)
            elif image_area > 0.0:
                areas[label].append(width * height / image_area)
                aspects.append(width / height)
            else:
                aspects.append(width / height)
        cls_key = semconv.ATTR_DETECTION_CLASS
        counts: dict[str, int] = {}
        for label, scores in confidences.items():
            cattrs = self._attrs(variant, extra, cls_key, label)
            record(ins.confidence, scores, cattrs)
            if areas[label]:
                record(ins.box_area, areas[label], cattrs)
            counts[label] = len(scores)
        if aspects:
            record(ins.aspect_ratio, aspects, base)
        pending = self._pending_detections
        for label, count in counts.items():
            key = (variant, extra, cls_key, label)
            pending[key] = pending.get(key, 0) + count

    def _emit_event(self, call: _Call, index: int, image: Any, parsed: ImageDetections, duration_s: float) -> None:
        sc = call.span_context
        if sc is not None and sc.is_valid:
            trace_id = format(sc.trace_id, "032x")
            span_id = format(sc.span_id, "016x")
            ctx = trace.set_span_in_context(NonRecordingSpan(sc))
        else:
            trace_id = span_id = ""
            ctx = None
        ids = call.prediction_ids
        if ids is not None and index < len(ids):
            pid = ids[index]
        else:
            pid = f"{trace_id or os.urandom(16).hex()}-{span_id or os.urandom(8).hex()}-{index}"
        body: dict[str, Any] = {
            "prediction_id": pid,
            "time": _rfc3339(call.end_unix_ns),
            "model_id": self.model_id,
        }
        if self.model_version:
            body["model_version"] = self.model_version
        if call.variant is not None:
            body["ab_variant"] = call.variant
        body["latency_ms"] = round(duration_s * 1000.0, 3)
        image_info: dict[str, Any] = {}
        pctx = call.pctx
        key = _pick(pctx.image_key, index) if pctx is not None else None
        uri = _pick(pctx.image_uri, index) if pctx is not None else None
        path_key, path_uri = _path_ref(image)
        key = key or path_key
        uri = uri or path_uri
        if key is not None:
            image_info["key"] = key
        engine = self.data_engine
        if engine is not None:
            # The same policy as the companion's, on the same values the event carries: a
            # selected image is stored by the sink and the event points at that copy.
            known = parsed.width is not None and parsed.height is not None
            stored = engine.offer(
                model_id=self.model_id,
                prediction_id=pid,
                image=image,
                detections=parsed.detections,
                width=int(parsed.width) if known and parsed.width is not None else None,
                height=int(parsed.height) if known and parsed.height is not None else None,
                key=key,
            )
            uri = stored or uri
        if uri is not None:
            image_info["uri"] = uri
        if parsed.width is not None and parsed.height is not None:
            image_info["width"] = int(parsed.width)
            image_info["height"] = int(parsed.height)
        if image_info:
            body["image"] = image_info
        if trace_id:
            body["trace_id"] = trace_id
            body["span_id"] = span_id
        if pctx is not None and pctx.attributes:
            body["attributes"] = {k: _json_attribute(v) for k, v in pctx.attributes.items()}
        body["detections"] = [
            {"class": d.class_name, "confidence": d.confidence, "box": d.box} for d in parsed.detections
        ]
        self.logger.emit(
            timestamp=call.end_unix_ns,
            context=ctx,
            severity_number=SeverityNumber.INFO,
            # The body is the prediction object as a JSON string, not an OTLP map:
            # encoding a map of 20 detections for OTLP costs ~0.5 ms of GIL-held CPU
            # on the exporter's thread (~10 protobuf values per detection), which
            # stalls the inference thread when it wakes; one string costs ~1/10 of
            # that. Log stores read JSON lines natively and the companion parses it.
            body=dumps(body),
            event_name=semconv.EVENT_PREDICTION,
            attributes=self.span_attributes(call.variant),
        )


# ---------------------------------------------------------------- the public decorator


def _image_parameter(func: Callable[..., Any], image_arg: str | None) -> tuple[int | None, str | None]:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        if image_arg is not None:
            raise ValueError(f"image_arg: cannot read the signature of {func!r}") from None
        return 0, None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if image_arg is not None:
        for i, p in enumerate(params):
            if p.name == image_arg:
                if p.kind in positional:
                    return i, (p.name if p.kind is not inspect.Parameter.POSITIONAL_ONLY else None)
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    return None, p.name
                break
        raise ValueError(f"image_arg: {getattr(func, '__qualname__', func)!r} has no parameter {image_arg!r}")
    for i, p in enumerate(params):
        if i == 0 and p.name in ("self", "cls") and p.kind in positional:
            continue
        if p.kind in positional:
            return i, (p.name if p.kind is not inspect.Parameter.POSITIONAL_ONLY else None)
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return i, None
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            return None, p.name
        break
    return None, None


WARN_INTERVAL_S = 600.0
"""Least time between two warnings of one decorated function about one invalid-output reason."""
_INVALID_HINTS = {
    "unrecognized_format": "; pass adapter= to turn it into a supported format (see the package documentation)",
    "adapter_error": "; the adapter raised (enable debug logging of detwatch_instrumentation for the traceback)",
    "confidence_missing": "; the output has no confidences: pass adapter= to supply them",
}

MAX_ATTRIBUTE_VALUES = 100
"""Distinct values per allow-listed metric attribute before later ones fold into ``other``."""
MAX_ATTRIBUTE_COMBINATIONS = 1000
"""Distinct combinations of allow-listed attribute values before all of them fold into ``other``."""


def _prediction_ids(call: _Call) -> list[str]:
    """The prediction ids of the call's images (caller's thread), appended to its context's list.

    The context's own ``prediction_id`` names the first call made inside it; any other
    call gets ids derived from its span (``{trace_id}-{span_id}-{index}``), or random
    ones without a span, exactly as the recorder would derive them.
    """
    pctx = call.pctx
    assert pctx is not None
    n = len(_images_of(call))
    given = pctx.prediction_id if not pctx.prediction_ids else None
    sc = call.span_context
    if sc is not None and sc.is_valid:
        prefix = f"{sc.trace_id:032x}-{sc.span_id:016x}-"
    else:
        prefix = f"{os.urandom(16).hex()}-{os.urandom(8).hex()}-"
    ids = [_pick(given, index) or f"{prefix}{index}" for index in range(n)]
    pctx.prediction_ids.extend(ids)
    return ids


def _held_bytes(image: Any) -> int:
    """Bytes an input keeps alive while its call waits to be recorded (arrays, tensors, PIL images; else 0).

    On the caller's thread, so a few attribute look-ups only: a batch list counts as
    its length times its first image (a batch's images share a size).
    """
    if isinstance(image, list):
        return len(image) * _held_bytes(image[0]) if image else 0
    try:
        nbytes = getattr(image, "nbytes", None)  # numpy
        if isinstance(nbytes, int):
            return nbytes
        element_size, nelement = getattr(image, "element_size", None), getattr(image, "nelement", None)
        if callable(element_size) and callable(nelement):  # torch
            return int(element_size()) * int(nelement())
        size, getbands = getattr(image, "size", None), getattr(image, "getbands", None)
        if isinstance(size, tuple) and len(size) == 2 and callable(getbands):  # PIL
            return int(size[0]) * int(size[1]) * len(getbands())
    except Exception:  # noqa: BLE001 - an odd input is counted as small, never an error
        return 0
    return 0


_PLAIN = (str, bool, int, float)


def _plain_context(pctx: PredictionContext | None) -> PredictionContext | None:
    """``pctx`` as the recorder process can receive it: attribute values of other types as text.

    Attributes are typed for OpenTelemetry, but Python does not enforce it; such a value
    reaches events as text in-process too (:func:`_json_attribute`).
    """
    if pctx is None or all(type(v) in _PLAIN for v in pctx.attributes.values()):
        return pctx
    attributes = {
        k: v
        if isinstance(v, _PLAIN) or (isinstance(v, (list, tuple)) and all(isinstance(x, _PLAIN) for x in v))
        else _json_attribute(v)
        for k, v in pctx.attributes.items()
    }
    return PredictionContext(pctx.image_key, pctx.image_uri, pctx.ab_variant, attributes)


def _json_attribute(value: Any) -> Any:
    """A context attribute as the event's JSON can hold it: other values (and non-finite floats) as text.

    Attributes are typed for OpenTelemetry, but Python does not enforce it; an object the
    encoder refuses lost the whole event before.
    """
    if isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_attribute(v) for v in value]
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a value whose __str__ raises is still named
        return f"<{type(value).__qualname__}>"


MAX_IMAGE_SIDE = 2**31 - 1
"""Largest image width or height (the companion stores them as 32-bit integers)."""


def _check_size(image_size: tuple[float, float] | None) -> tuple[float, float] | None:
    if image_size is None:
        return None
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size: expected (width, height), got {image_size!r}") from None
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):  # NaN and inf fail too
        raise ValueError(f"image_size: width and height must be positive and finite, got {image_size!r}")
    return width, height


def monitor_detections(
    *,
    model_id: str,
    model_version: str = "",
    batch: bool | Literal["auto"] = "auto",
    image_arg: str | None = None,
    image_size: tuple[float, float] | None = None,
    box_format: BoxFormat = "xyxy",
    normalized_boxes: bool = False,
    label_names: LabelNames | None = None,
    adapter: Callable[[Any], Any] | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
    class_allowlist: Iterable[str] | None = None,
    metric_attributes: Mapping[str, AttributeValue] | None = None,
    metric_attribute_allowlist: Iterable[str] = (),
    emit_events: bool = True,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    data_engine: DataEngine | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Monitor an object-detection inference function (sync or async).

    Arguments (all keyword-only; mistakes raise ``ValueError``/``TypeError`` naming
    the argument, at decoration time):

    - ``model_id``, ``model_version``: on every metric, span and event.
    - ``batch``: ``True`` when the function takes a list of images and returns a list
      of outputs; ``"auto"`` (default) treats a ``list``/``tuple`` image argument as a
      batch.
    - ``image_arg``: name of the parameter holding the image (default: the first one
      after ``self``/``cls``). ``image_size``: ``(width, height)`` when the input's
      shape does not tell (paths, bytes).
    - ``box_format`` (``xyxy``, ``xywh``, ``cxcywh``) and ``normalized_boxes``: how
      boxes in list-of-dicts, dict-of-arrays and ``[N, 6]`` outputs are laid out.
      Supervision and Ultralytics outputs are always absolute xyxy.
    - ``label_names``: maps integer class ids to names (dict or list).
    - ``adapter``: a function turning your model's output into a supported format.
    - ``max_classes`` / ``class_allowlist``: the cardinality guard for class labels.
    - ``metric_attributes``: static attributes added to every metric and span.
      ``metric_attribute_allowlist``: names of :func:`prediction_context` attributes
      allowed onto metrics (others go to spans and events only).
    - ``emit_events``: emit the ``objdet.prediction`` log record per image.
    - ``tracer_provider``, ``meter_provider``, ``logger_provider``: defaults are the
      global providers.
    - ``data_engine``: a :class:`DataEngine` that evaluates the companion's flagging
      policy here and keeps the selected images (needs prediction events).
    """
    _check_arguments(
        model_id=model_id,
        model_version=model_version,
        batch=batch,
        box_format=box_format,
        max_classes=max_classes,
        adapter=adapter,
        data_engine=data_engine,
        label_names=label_names,
        image_arg=image_arg,
    )
    size = _check_size(image_size)
    static, allowlist = _metric_attribute_options(metric_attributes, metric_attribute_allowlist)
    options = OutputOptions(
        box_format=box_format, normalized_boxes=normalized_boxes, label_names=label_names, adapter=adapter
    )
    folder = _class_folder(max_classes, class_allowlist)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        _check_decorable(func)
        position, name = _image_parameter(func, image_arg)
        monitor = _Monitor(
            model_id=model_id,
            model_version=model_version,
            options=options,
            batch=batch,
            image_position=position,
            image_name=name,
            image_size=size,
            folder=folder,
            metric_attributes=static,
            metric_attribute_allowlist=allowlist,
            emit_events=emit_events,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            data_engine=data_engine,
        )
        return _wrap(func, monitor)

    return decorate


def _check_arguments(
    *,
    model_id: Any,
    model_version: Any,
    batch: Any,
    box_format: Any,
    max_classes: Any,
    adapter: Any,
    data_engine: Any,
    label_names: Any,
    image_arg: Any,
) -> None:
    """Refuse a bad decorator argument at decoration time, naming it (never at the first call)."""
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"model_id: must be a non-empty string, got {model_id!r}")
    if not isinstance(model_version, str):
        raise TypeError(f"model_version: must be a string, got {type(model_version).__name__}")
    if batch not in (True, False, "auto"):
        raise ValueError(f"batch: must be True, False or 'auto', got {batch!r}")
    if box_format not in _BOX_FORMATS:
        raise ValueError(f"box_format: must be one of {', '.join(_BOX_FORMATS)}, got {box_format!r}")
    if isinstance(max_classes, bool) or not isinstance(max_classes, int) or max_classes < 1:
        raise ValueError(f"max_classes: must be a positive integer, got {max_classes!r}")
    if adapter is not None and not callable(adapter):
        raise TypeError("adapter: must be callable")
    if data_engine is not None and not callable(getattr(data_engine, "offer", None)):
        raise TypeError("data_engine: must be a detwatch_instrumentation.DataEngine")
    if label_names is not None and not isinstance(label_names, (Mapping, list, tuple)):
        raise TypeError(f"label_names: must be a mapping or a list, got {type(label_names).__name__}")
    if image_arg is not None and not isinstance(image_arg, str):
        raise TypeError("image_arg: must be a parameter name")


def _metric_attribute_options(
    metric_attributes: Mapping[str, AttributeValue] | None, metric_attribute_allowlist: Iterable[str]
) -> tuple[dict[str, AttributeValue], frozenset[str]]:
    """The static metric attributes and the allowlist, refusing names detwatch sets itself."""
    static = dict(metric_attributes or {})
    allowlist = frozenset(metric_attribute_allowlist)
    for name in [*static, *allowlist]:
        if not isinstance(name, str) or name.startswith(_RESERVED_PREFIXES):
            which = "metric_attributes" if name in static else "metric_attribute_allowlist"
            raise ValueError(f"{which}: {name!r} is reserved (objdet.* and error.type are set by detwatch)")
    for name, value in static.items():
        if not isinstance(value, (str, bool, int, float)):
            raise TypeError(f"metric_attributes: value of {name!r} must be str, bool, int or float")
    return static, allowlist


def _class_folder(max_classes: int, class_allowlist: Iterable[str] | None) -> ClassFolder:
    """The cardinality guard for class labels, shared by every call of the decorated function."""
    if isinstance(class_allowlist, (str, bytes)):  # "car" would allow the classes "c", "a" and "r"
        raise TypeError(f"class_allowlist: expected a collection of class names, not the string {class_allowlist!r}")
    return ClassFolder(max_classes, class_allowlist)


def _check_decorable(func: Any) -> None:
    """A generator's detections come after the timed call: refuse it, as anything not callable."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"monitor_detections cannot decorate the generator function {getattr(func, '__qualname__', func)!r}:"
            " its detections would be produced after the call the decorator times; decorate the function"
            " that returns one result per call"
        )
    if not callable(func):
        raise TypeError("monitor_detections must decorate a callable")


def _wrap(func: Callable[P, R], monitor: _Monitor) -> Callable[P, R]:
    """The wrapper: the wrapped call runs once, outside any telemetry ``try``; its result and exception pass through."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):
        # A coroutine function, or an object whose __call__ is one (a model class with
        # ``async def __call__``): timed over the await, not over creating the coroutine.
        async_func = cast(Callable[P, Awaitable[Any]], func)

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            call = monitor.begin(args, kwargs)
            if call is None:
                return await async_func(*args, **kwargs)
            try:
                result = await async_func(*args, **kwargs)
            except BaseException as exc:
                monitor.fail(call, exc)
                raise
            monitor.finish(call, result)
            return result

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        call = monitor.begin(args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            monitor.fail(call, exc)
            raise
        monitor.finish(call, result)
        return result

    return wrapper


@overload
def stage(name: Literal["preprocess", "inference", "postprocess"]) -> contextlib.AbstractContextManager[None]: ...
@overload
def stage(name: str) -> contextlib.AbstractContextManager[None]: ...
def stage(name: str) -> contextlib.AbstractContextManager[None]:
    """Time a pipeline stage inside a decorated call (``objdet.stage`` on the duration)."""
    if name not in _STAGES:
        raise ValueError(f"name: must be one of {', '.join(_STAGES)}, got {name!r}")
    return _stage(name)


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    call = _ACTIVE.get()
    start = time.perf_counter_ns()
    error: str | None = None
    try:
        yield
    except BaseException as exc:
        error = type(exc).__qualname__
        raise
    finally:
        if call is not None and call.metrics_on:
            _record_stage(call, name, max(0, time.perf_counter_ns() - start), error)


@guarded(None)
def _record_stage(call: _Call | FastCall, name: str, duration_ns: int, error: str | None) -> None:
    monitor = call.monitor
    if monitor._to_recorder_process and PROCESS.send(
        ("stage", monitor.key, call.variant, name, duration_ns, error), monitor
    ):
        return
    monitor.record_stage(call.variant, name, duration_ns, error)
