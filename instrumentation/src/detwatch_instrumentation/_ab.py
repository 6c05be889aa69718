"""A/B routing: split traffic between two models by a key, the same way everywhere.

``route(key)`` is a pure function of the key, the traffic split and the salt
(see :mod:`._keyhash`): the same image or request key goes to the same arm in every
process, replica and restart, so a user who retries sees the same model and the
companion can recompute any assignment. Every call made through the router carries
``objdet.ab.variant`` on its metrics, span and prediction event.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._context import CURRENT, Arm, prediction_context
from ._keyhash import unit_interval

R = TypeVar("R")


class ABRouter(Generic[R]):
    """Route each call to model ``a`` or model ``b`` by a key.

    ``traffic_split`` is the share of keys that go to ``b`` (the challenger), e.g.
    ``0.1`` for 10 %. ``salt`` names the experiment: two experiments with different
    salts split the same keys independently. ``model_a`` and ``model_b`` are
    usually both decorated with :func:`monitor_detections` (with their own
    ``model_id``/``model_version``); sync or async, but both the same.
    """

    def __init__(
        self,
        model_a: Callable[..., R],
        model_b: Callable[..., R],
        *,
        traffic_split: float,
        salt: str = "",
    ) -> None:
        if not callable(model_a):
            raise TypeError("model_a: must be callable")
        if not callable(model_b):
            raise TypeError("model_b: must be callable")
        if isinstance(traffic_split, bool) or not isinstance(traffic_split, (int, float)):
            raise TypeError("traffic_split: must be a number between 0 and 1")
        if not 0.0 <= float(traffic_split) <= 1.0:
            raise ValueError(f"traffic_split: must be between 0 and 1, got {traffic_split!r}")
        if not isinstance(salt, str):
            raise TypeError("salt: must be a string")
        a_async = inspect.iscoroutinefunction(model_a)
        if a_async != inspect.iscoroutinefunction(model_b):
            raise TypeError("model_b: must be async exactly when model_a is")
        self.model_a = model_a
        self.model_b = model_b
        self.traffic_split = float(traffic_split)
        self.salt = salt
        self._async = a_async

    def route(self, key: str | bytes) -> Arm:
        """The arm (``"a"`` or ``"b"``) for ``key``; deterministic."""
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"key: must be str or bytes, got {type(key).__name__}")
        return "b" if unit_interval(key, self.salt) < self.traffic_split else "a"

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
