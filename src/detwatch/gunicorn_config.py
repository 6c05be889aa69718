"""gunicorn settings for the companion: ``gunicorn -c python:detwatch.gunicorn_config``.

``detwatch serve`` passes it; so should anyone running ``gunicorn
'detwatch.app:create_app()'`` by hand.

Why a config at all: the garbage collector. A worker holds a large heap of long-lived
objects (Flask, numpy, SciPy, protobuf, the OpenTelemetry SDK), and ingest allocates
tens of thousands of objects per request (a prediction, its detections, their
boxes). Those survive the young generations while the request runs, so full
collections come often, and each one walked the whole heap: a fifth of a worker's
ingest CPU (about 20 µs of some 100 per event of 10 detections, measured with the
test client on a batch of 512). Freezing what exists once the application is loaded
moves it out of every later collection (the practice the ``gc.freeze`` documentation
describes for pre-fork servers); those objects live as long as the worker anyway.
"""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """After a worker has loaded the application: collect once, then freeze what is left."""
    gc.collect()
    gc.freeze()
