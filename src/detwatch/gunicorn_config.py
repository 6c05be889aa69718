"""gunicorn settings for the companion: ``gunicorn -c python:detwatch.gunicorn_config``.

``detwatch serve`` passes it; so should anyone running ``gunicorn
'detwatch.app:create_app()'`` by hand. Command-line options override what is set
here.

The worker: :class:`detwatch.gunicorn_worker.HeadBufferingWorker`, gunicorn's
``gthread`` with request heads read in its main loop, so that a client trickling
its headers costs no thread and cannot stall the service (a sync worker waits on
such a client until its timeout). ``threads`` per worker serve requests whose head
has arrived: as many as the storage's connection pool holds, since more would
only wait for a connection. The request-line and header limits are gunicorn's
defaults, stated so that they are seen; what gunicorn refuses itself is answered
in the companion's JSON error shape (:func:`detwatch.gunicorn_worker.write_json_error`).

The garbage collector. A worker holds a large heap of long-lived
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

from detwatch.gunicorn_worker import install_json_errors

worker_class = "detwatch.gunicorn_worker.HeadBufferingWorker"
threads = 8
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


def post_worker_init(worker: Any) -> None:
    """After a worker has loaded the application: JSON for gunicorn's own errors; collect once, then freeze."""
    install_json_errors()
    gc.collect()
    gc.freeze()
