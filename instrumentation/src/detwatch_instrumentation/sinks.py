"""Keeping the images the data engine selects, where the inference process holds them.

The companion only ever sees prediction *events*; the image stays in the inference
process. So that a flagged item can be reviewed, the decorator evaluates the same
flagging policy as the companion (:mod:`detwatch_instrumentation.flagging`) on each
prediction and hands the selected images to a sink; the event then carries the URI
the sink returned, and the companion's flagged item points at a file that opens::

    from detwatch_instrumentation import DataEngine, monitor_detections

    engine = DataEngine(companion_url="http://127.0.0.1:8000", sink="/data/flagged")

    @monitor_detections(model_id="vehicles", model_version="v2", data_engine=engine)
    def predict(image):
        return model(image)

Policy: a static ``policy=`` document (the user guide's ``config``), or the one the
companion serves (``GET /v1/models/{id}/data-engine``, polled with the standard
library every ``refresh_s`` on the recording thread, never on the caller's). When
the companion cannot be reached the last copy keeps working; before the first copy
the safe default is to keep nothing.

Sinks: a folder (the default, :class:`FolderSink`) or any callable
``sink(image, name, info) -> uri | None`` (upload to object storage and return its
URL). ``name`` is a file name without extension derived from the model and the
prediction id; ``info`` holds ``model_id``, ``prediction_id``, ``reasons`` and the
image ``key``. The folder sink writes numpy ``uint8`` arrays (H x W, H x W x 1/3/4)
as PNG with the standard library only, copies files given by path, and writes raw
bytes as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from ._guard import guarded, log_failure
from .flagging import DetectionLike, FlaggingPolicy, PolicyError

__all__ = ["DataEngine", "FolderSink", "ImageSink", "encode_png"]

ImageSink = Callable[[Any, str, Mapping[str, Any]], "str | None"]
"""``sink(image, name, info) -> uri``: stores one selected image and says where."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: Any, channel_order: Literal["rgb", "bgr"] = "rgb") -> bytes | None:
    """PNG bytes of a ``uint8`` array (duck-typed: ``shape``, ``dtype``, ``tobytes``); ``None`` for anything else."""
    shape = getattr(image, "shape", None)
    if shape is None or str(getattr(image, "dtype", "")) != "uint8" or len(shape) not in (2, 3):
        return None
    height, width = int(shape[0]), int(shape[1])
    channels = 1 if len(shape) == 2 else int(shape[2])
    color_type = {1: 0, 3: 2, 4: 6}.get(channels)
    if color_type is None or not width or not height:
        return None
    raw = bytearray(image.tobytes())  # C order whatever the array's strides
    if channel_order == "bgr" and channels in (3, 4):
        raw[0::channels], raw[2::channels] = raw[2::channels], raw[0::channels]
    stride = width * channels
    rows = b"".join(b"\x00" + bytes(raw[y * stride : (y + 1) * stride]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 6)) + _chunk(b"IEND", b"")
    )


def _suffix(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    return ".bin"


class FolderSink:
    """Writes selected images into ``directory`` (created on first use); returns ``file://`` URIs."""

    def __init__(self, directory: str | os.PathLike[str], *, channel_order: Literal["rgb", "bgr"] = "rgb") -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order: must be 'rgb' or 'bgr', got {channel_order!r}")
        self.directory = Path(directory).absolute()
        self.channel_order = channel_order

    def __call__(self, image: Any, name: str, info: Mapping[str, Any]) -> str | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if isinstance(image, (str, os.PathLike)):
            source = Path(os.fspath(image))
            target = self.directory / (name + source.suffix)
            shutil.copyfile(source, target)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
            target = self.directory / (name + _suffix(data))
            target.write_bytes(data)
        else:
            png = encode_png(image, self.channel_order)
            if png is None:
                return None
            target = self.directory / (name + ".png")
            target.write_bytes(png)
        return target.as_uri()


class DataEngine:
    """The data-engine policy evaluated in the inference process, and where selected images go.

    ``policy``: a static policy document; ``companion_url`` (with ``token`` when the
    companion requires one): poll the companion's policy instead (a static policy is
    then the copy used until the first answer). ``sink``: a folder path or a callable
    (see the module docstring); default ``./.detwatch/flagged``.
    """

    def __init__(
        self,
        *,
        policy: Mapping[str, Any] | FlaggingPolicy | None = None,
        companion_url: str | None = None,
        token: str | None = None,
        sink: ImageSink | str | os.PathLike[str] | None = None,
        refresh_s: float = 60.0,
        timeout_s: float = 2.0,
    ) -> None:
        if policy is not None and not isinstance(policy, FlaggingPolicy):
            try:
                policy = FlaggingPolicy.from_config(policy, "policy")
            except PolicyError as exc:
                raise ValueError(str(exc)) from None
        if companion_url is not None and not companion_url.startswith(("http://", "https://")):
            raise ValueError(f"companion_url: expected http(s)://host:port, got {companion_url!r}")
        if policy is None and companion_url is None:
            raise ValueError("policy or companion_url: give the policy, or the companion that serves it")
        if sink is None:
            sink = FolderSink(Path(".detwatch") / "flagged")
        elif isinstance(sink, (str, os.PathLike)):
            sink = FolderSink(sink)
        elif not callable(sink):
            raise TypeError("sink: must be a folder path or a callable (image, name, info) -> uri")
        if refresh_s <= 0 or timeout_s <= 0:
            raise ValueError("refresh_s and timeout_s: must be positive")
        self.sink: ImageSink = sink
        self.companion_url = companion_url.rstrip("/") if companion_url else None
        self.token = token
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self._static = policy
        self._policies: dict[str, tuple[FlaggingPolicy | None, float]] = {}
        self._lock = threading.Lock()

    def policy_for(self, model_id: str) -> FlaggingPolicy | None:
        """The policy in force for ``model_id`` (polled from the companion when configured)."""
        if self.companion_url is None:
            return self._static
        now = time.monotonic()
        with self._lock:
            cached = self._policies.get(model_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        policy = cached[0] if cached is not None else self._static
        try:
            policy = self._fetch(model_id)
        except (OSError, ValueError, AttributeError):  # unreachable, or not a policy document
            log_failure("DataEngine.policy_for")  # keep the last copy; try again after refresh_s
        with self._lock:
            self._policies[model_id] = (policy, now + self.refresh_s)
        return policy

    def _fetch(self, model_id: str) -> FlaggingPolicy | None:
        url = f"{self.companion_url}/v1/models/{quote(model_id, safe='')}/data-engine"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                document = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None  # no data engine for this model: keep nothing
            raise
        return FlaggingPolicy.from_config(document.get("policy", document.get("config")))

    @guarded(None)
    def offer(
        self,
        *,
        model_id: str,
        prediction_id: str,
        image: Any,
        detections: Sequence[DetectionLike],
        width: float | None,
        height: float | None,
        key: str | None = None,
    ) -> str | None:
        """Evaluate the policy; when the prediction is selected, store the image and return its URI."""
        policy = self.policy_for(model_id)
        if policy is None or image is None:
            return None
        reasons = policy.evaluate(prediction_id, detections, width, height)
        if not reasons:
            return None
        name = _UNSAFE.sub("_", f"{model_id}-{prediction_id}")[:200]
        info = {"model_id": model_id, "prediction_id": prediction_id, "reasons": list(reasons), "key": key}
        return self.sink(image, name, info)
