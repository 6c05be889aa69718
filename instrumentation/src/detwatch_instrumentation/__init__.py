"""OpenTelemetry instrumentation for object-detection inference.

Usage
-----
Decorate the function that runs your detector::

    from detwatch_instrumentation import monitor_detections

    @monitor_detections(model_id="vehicles", model_version="v2")
    def predict(image):
        return model(image)            # any supported output format

Every call emits the ``objdet.*`` metrics (duration, images, detections per image,
detections by class, confidence, box area and aspect ratio, invalid outputs; batch
size for batch calls), one span ``detect {model_id}``, and one log record per image
with ``event.name = objdet.prediction`` carrying the detections, linked to the span.
The names are listed, with units and bucket bounds, in
:mod:`detwatch_instrumentation.semconv`.

Supported outputs (recognised by shape; no framework is imported): a list of dicts
(``class``/``label``, ``confidence``/``score``, ``box``/``bbox``), a torchvision-style
dict of arrays (``boxes``, ``scores``, ``labels``), a numpy/torch ``[N, 6]`` array
(``x1, y1, x2, y2, confidence, class``), supervision ``Detections``, Ultralytics
``Results`` (or a one-element list of them), a list of :class:`Detection`, or anything
an ``adapter=`` function turns into one of these. Boxes are xyxy pixels unless
``box_format="xywh"``/``"cxcywh"`` and/or ``normalized_boxes=True`` say otherwise.
An output that cannot be read, NaN or out-of-range confidences and degenerate boxes
are counted in ``objdet.invalid_outputs`` by reason; they never raise.

Batch functions (a list of images in, a list of outputs out) get per-image telemetry
and ``objdet.batch.size``; async functions and methods work the same way. The
wrapped function's result and exceptions pass through untouched.

Per-call details the signature does not carry (image key and URI, extra
attributes) go in :func:`prediction_context`::

    with prediction_context(image_key="cam7/000123.jpg", image_uri="s3://frames/000123.jpg"):
        predict(frame)

A/B tests route by key, deterministically, and tag everything with the arm::

    router = ABRouter(predict_v1, predict_v2, traffic_split=0.1, salt="exp-42")
    router(frame, key="cam7/000123.jpg")

or take the split from an A/B test created on the detwatch companion (polled in the
background; everything goes to A until the first answer and the last split stays
when the companion is down)::

    split = CompanionSplit("http://detwatch:8000", ab_test.id)
    router = ABRouter(predict_v1, predict_v2, traffic_split=split)

Configuration
-------------
This package depends on ``opentelemetry-api`` only: the application configures the
SDK (exporters, resource), e.g. with ``detwatch.configure_opentelemetry()``. Without
an SDK nothing is recorded and the decorator costs about a microsecond. Providers
can be passed per decorator (``tracer_provider=``, ``meter_provider=``,
``logger_provider=``); export cumulative metric temporality to Prometheus-style
stores.

Per-detection work (metrics and prediction events) runs off the caller's path. When
the SDK was set up by a function another process can run again (as
``detwatch.configure_opentelemetry`` does, through :func:`use_recorder_process`), it
runs in a recorder process: an eager forward pass holds the GIL, and a thread of the
same process would take turns with it. Otherwise it runs on one background thread.
On the caller's thread a call costs its span and a hand-off: outputs on a GPU are
copied to the host right after the call, one copy per output. With the recorder
process and the SDK's own ``TracerProvider`` given to :func:`use_recorder_process`,
the span is only planned here (ids, sampling, parent, times, attributes set on it
inside the call) and built and exported there; events, status and name changes made
on it inside the call are not kept. Call :func:`flush`
before forcing an export (it also runs at exit). With the thread, host outputs are
read after the call returns, so do not modify them in place afterwards.

Class labels beyond ``max_classes`` (or outside ``class_allowlist``) fold into
``other`` on metrics; image keys and free text never become metric attributes.

API
---
:func:`monitor_detections`, :func:`prediction_context`, :func:`stage`,
:class:`ABRouter`, :class:`CompanionSplit`, :func:`flush`, :func:`use_recorder_process`, :class:`Detection`,
:mod:`.semconv`;
:class:`DataEngine` and :class:`FolderSink` (:mod:`.sinks`) keep the images the
companion's data-engine policy (:mod:`.flagging`) selects, in the inference process.
"""

from ._ab import ABRouter as ABRouter
from ._ab import CompanionSplit as CompanionSplit
from ._context import PredictionContext as PredictionContext
from ._context import prediction_context as prediction_context
from ._monitor import monitor_detections as monitor_detections
from ._monitor import stage as stage
from ._outputs import Detection as Detection
from ._recorder import flush as flush
from ._recorder_process import use_recorder_process as use_recorder_process
from .sinks import DataEngine as DataEngine
from .sinks import FolderSink as FolderSink
from .version import __version__ as __version__

__all__ = [
    "ABRouter",
    "CompanionSplit",
    "DataEngine",
    "Detection",
    "FolderSink",
    "PredictionContext",
    "__version__",
    "flush",
    "monitor_detections",
    "prediction_context",
    "stage",
    "use_recorder_process",
]

# Public objects report the public path (as opentelemetry-api does), not _modules.
for _name in __all__:
    if _name != "__version__":
        globals()[_name].__module__ = __name__
del _name
