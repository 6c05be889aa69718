"""A/B routing: split traffic between two models by a key, the same way everywhere.

``route(key)`` is a pure function of the key, the traffic split and the salt
(see :mod:`._keyhash`): the same image or request key goes to the same arm in every
process, replica and restart, so a user who retries sees the same model and the
companion can recompute any assignment. Every call made through the router carries
``objdet.ab.variant`` on its metrics, span and prediction event.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._context import CURRENT, Arm, prediction_context
from ._keyhash import unit_interval

R = TypeVar("R")

_log = logging.getLogger(__name__)


class CompanionSplit:
    """A traffic split read from an A/B test on the detwatch companion, kept fresh in the background.

    ``GET {base_url}/v1/ab-tests/{ab_test_id}`` gives the test's ``traffic_split``
    (0 once the test is stopped) and ``salt``. A daemon thread polls it every
    ``refresh_s``; the router reads the last answer and never waits for the network.
    Until the first answer arrives every call goes to arm A (production), and when
    the companion is down the last split stays in force: a monitoring outage must
    neither stop inference nor change who sees which model. Call :meth:`refresh`
    at start-up to wait (at most ``timeout_s``) for the first answer.
    """

    def __init__(
        self,
        base_url: str,
        ab_test_id: str,
        *,
        token: str | None = None,
        refresh_s: float = 30.0,
        timeout_s: float = 2.0,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: must be an http(s) URL, got {base_url!r}")
        if not isinstance(ab_test_id, str) or not ab_test_id:
            raise ValueError("ab_test_id: must be a non-empty string")
        if not (isinstance(refresh_s, (int, float)) and refresh_s > 0):
            raise ValueError(f"refresh_s: must be a positive number of seconds, got {refresh_s!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s: must be a positive number of seconds, got {timeout_s!r}")
        self.url = f"{base_url.rstrip('/')}/v1/ab-tests/{urllib.parse.quote(ab_test_id, safe='')}"
        self.ab_test_id = ab_test_id
        self.refresh_s = float(refresh_s)
        self.timeout_s = float(timeout_s)
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.split = 0.0
        self.salt = ab_test_id
        self.fetched = False
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def refresh(self) -> bool:
        """Fetch the split now (blocking up to ``timeout_s``); ``False`` keeps the last one."""
        try:
            request = urllib.request.Request(self.url, headers=self._headers)
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
            split = body["traffic_split"]
            salt = body.get("salt", self.ab_test_id)
            if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0.0 <= split <= 1.0:
                raise ValueError(f"traffic_split out of range: {split!r}")
            if math.isnan(split) or not isinstance(salt, str):
                raise ValueError("bad salt or split")
        except Exception as exc:  # noqa: BLE001 - the companion being down must not reach inference
            self.failures += 1
            _log.debug("detwatch: A/B split refresh from %s failed: %s", self.url, exc)
            return False
        self.split, self.salt, self.fetched = float(split), salt, True
        return True

    def current(self) -> tuple[float, str]:
        """The split and salt in force; starts the polling thread on first use (and after a fork)."""
        if self._thread is None or self._pid != os.getpid():
            self._start()
        return self.split, self.salt

    def close(self) -> None:
        """Stop polling (the last split stays in force)."""
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            thread = threading.Thread(target=self._poll, name="detwatch-ab-split", daemon=True)
            thread.start()
            self._thread = thread

    def _poll(self) -> None:
        stop = self._stop
        while not stop.is_set():
            self.refresh()
            stop.wait(self.refresh_s)


class ABRouter(Generic[R]):
    """Route each call to model ``a`` or model ``b`` by a key.

    ``traffic_split`` is the share of keys that go to ``b`` (the challenger), e.g.
    ``0.1`` for 10 %. ``salt`` names the experiment: two experiments with different
    salts split the same keys independently. ``model_a`` and ``model_b`` are
    usually both decorated with :func:`monitor_detections` (with their own
    ``model_id``/``model_version``); sync or async, but both the same.

    ``traffic_split`` may instead be a :class:`CompanionSplit`: the split (and salt)
    of an A/B test created on the companion, polled in the background; then
    ``salt`` is ignored and the test's own is used.
    """

    def __init__(
        self,
        model_a: Callable[..., R],
        model_b: Callable[..., R],
        *,
        traffic_split: float | CompanionSplit,
        salt: str = "",
    ) -> None:
        if not callable(model_a):
            raise TypeError("model_a: must be callable")
        if not callable(model_b):
            raise TypeError("model_b: must be callable")
        self._source: CompanionSplit | None = None
        if isinstance(traffic_split, CompanionSplit):
            self._source = traffic_split
        elif isinstance(traffic_split, bool) or not isinstance(traffic_split, (int, float)):
            raise TypeError("traffic_split: must be a number between 0 and 1, or a CompanionSplit")
        elif not 0.0 <= float(traffic_split) <= 1.0:
            raise ValueError(f"traffic_split: must be between 0 and 1, got {traffic_split!r}")
        if not isinstance(salt, str):
            raise TypeError("salt: must be a string")
        a_async = inspect.iscoroutinefunction(model_a)
        if a_async != inspect.iscoroutinefunction(model_b):
            raise TypeError("model_b: must be async exactly when model_a is")
        self.model_a = model_a
        self.model_b = model_b
        self.traffic_split = 0.0 if self._source is not None else float(traffic_split)  # type: ignore[arg-type]
        self.salt = salt
        self._async = a_async

    def route(self, key: str | bytes) -> Arm:
        """The arm (``"a"`` or ``"b"``) for ``key``; deterministic."""
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"key: must be str or bytes, got {type(key).__name__}")
        split, salt = self._source.current() if self._source is not None else (self.traffic_split, self.salt)
        return "b" if unit_interval(key, salt) < split else "a"

    def __call__(self, *args: Any, key: str, **kwargs: Any) -> R:
        """Call the arm chosen for ``key`` with the remaining arguments.

        ``key`` is also the image key of the prediction event, unless an enclosing
        :func:`prediction_context` set one.
        """
        arm = self.route(key)
        model = self.model_b if arm == "b" else self.model_a
        outer = CURRENT.get()
        image_key = None if outer is not None and outer.image_key is not None else key
        if self._async:
            return self._call_async(model, arm, image_key, args, kwargs)  # type: ignore[return-value]
        with prediction_context(ab_variant=arm, image_key=image_key):
            return model(*args, **kwargs)

    async def _call_async(
        self, model: Callable[..., Any], arm: Arm, key: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # The context must be set inside the coroutine, where the model runs.
        with prediction_context(ab_variant=arm, image_key=key):
            return await model(*args, **kwargs)
