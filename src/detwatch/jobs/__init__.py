"""Background jobs of a companion process: retention, training dispatch and the drift and quality schedules.

Each is a daemon thread started by ``create_app`` (in each gunicorn worker, after the
fork), never at import and never from a request, and each takes a file lock in the data
dir so that one worker of a machine does a round while the others skip it.
"""
