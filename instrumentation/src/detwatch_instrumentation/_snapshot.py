"""Host copies of model outputs, small enough to hand to the recorder process.

The recorder process cannot read a CUDA tensor, a framework's result object or
anything else that lives in the inference process, and pickling those would import
the framework (and create a CUDA context) there. :func:`snapshot` walks an output the
way :func:`._outputs._read` will, and replaces every array it will read by a NumPy
array on the host, and every framework object by a plain stand-in with the same
attributes. :func:`._outputs.read_image_output` then reads the snapshot exactly as it
would read the original, so the telemetry is the same in either process.

Device tensors are copied here, on the caller's thread, right after the call that made
them: their stream then holds only this call's kernels, so the copy never waits on the
next inference's queued work (a recording thread copying later would). Ultralytics
boxes are copied as one ``[N, 6]`` block, not one copy per field.
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ._outputs import MAX_DETECTIONS, Detection


class Unreadable:
    """Stands for an output that no reader recognises (or that could not be copied); names its type."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __reduce__(self) -> tuple[type[Unreadable], tuple[str]]:
        return (Unreadable, (self.type_name,))


def _unreadable(output: Any) -> Unreadable:
    return Unreadable(type(output).__qualname__)


class AdapterFailed:
    """Stands for an output whose user adapter raised in the inference process."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "ADAPTER_FAILED"


ADAPTER_FAILED = AdapterFailed()


def type_name(output: Any) -> str:
    """The type an output had in the inference process (for warnings)."""
    return output.type_name if isinstance(output, Unreadable) else type(output).__qualname__


def replay_adapter(output: Any) -> Any:
    """The recorder's stand-in for a user adapter already applied in the inference process."""
    if output is ADAPTER_FAILED:
        raise RuntimeError("the adapter raised in the inference process")
    return output


class UltralyticsBoxes(NamedTuple):
    cls: Any
    conf: Any
    xyxy: Any


class UltralyticsResults(NamedTuple):
    """The attributes of an Ultralytics ``Results`` that the reader uses."""

    boxes: UltralyticsBoxes
    names: Any
    orig_shape: Any


class SupervisionDetections(NamedTuple):
    """The attributes of a supervision ``Detections`` that the reader uses."""

    xyxy: Any
    confidence: Any
    class_id: Any
    data: Any


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def host(value: Any) -> Any:
    """``value`` with a tensor replaced by a NumPy array (one device-to-host copy); rows past what is read are left."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) >= 1 and shape[0] > MAX_DETECTIONS + 1:
        value = value[: MAX_DETECTIONS + 1]
    if not _is_tensor(value):
        return value
    tensor = value.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16 and other types NumPy lacks: widened exactly
        return tensor.double().numpy()


def _ultralytics(boxes: Any) -> UltralyticsBoxes:
    data: Any = getattr(boxes, "data", None)
    if _is_tensor(data) and len(data.shape) == 2 and data.shape[1] in (6, 7) and type(boxes).__name__ == "Boxes":
        # Boxes.xyxy, .conf and .cls are columns of .data: one copy of the block.
        block = host(data)
        return UltralyticsBoxes(block[:, -1], block[:, -2], block[:, :4])
    return UltralyticsBoxes(host(boxes.cls), host(boxes.conf), host(boxes.xyxy))


def _torchvision_block(output: Mapping[str, Any]) -> Any:
    """A torchvision output on a GPU as one ``[N, 6]`` float64 host array (one copy), or ``None``.

    float64 holds float32 boxes and scores and integer labels below 2**53 exactly, so
    the reader sees the same numbers as from three copies.
    """
    boxes: Any = output.get("boxes")
    scores: Any = output.get("scores")
    labels: Any = output.get("labels")
    if not (_is_tensor(boxes) and _is_tensor(scores) and _is_tensor(labels)):
        return None
    if not (getattr(boxes, "is_cuda", False) and boxes.device == scores.device == labels.device):
        return None
    n = boxes.shape[0] if len(boxes.shape) == 2 and boxes.shape[1] == 4 else -1
    if n < 0 or tuple(scores.shape) != (n,) or tuple(labels.shape) != (n,) or n > MAX_DETECTIONS + 1:
        return None
    if labels.is_floating_point() or labels.is_complex() or not scores.is_floating_point():
        return None
    torch = sys.modules["torch"]
    double = torch.float64
    block = torch.cat(
        [boxes.detach().to(double), scores.detach().to(double)[:, None], labels.detach().to(double)[:, None]], 1
    )
    return block.cpu().numpy()


def _listed(value: Any) -> Any:
    """A NumPy array of one or more dimensions as its ``tolist()`` (what the reader and the pickler make of it)."""
    if type(value).__module__ == "numpy" and len(getattr(value, "shape", ())) >= 1:
        return value.tolist()
    return value


def is_plain(output: Any) -> bool:
    """Whether a snapshot is built-in types only (``None``, or a dict of lists): plain ``pickle.dumps`` suffices."""
    return output is None or (type(output) is dict and all(type(v) is list for v in output.values()))


def _host_arrays(output: dict[Any, Any]) -> dict[str, Any] | None:
    """A torchvision-layout dict of host NumPy arrays as lists: what the branch below makes of it, in fewer steps.

    This is the hand-off's common case on a CPU (and after a GPU output's one copy);
    ``None`` for anything else, which the general branch handles.
    """
    boxes: Any = output.get("boxes")
    kind: Any = type(boxes)
    if kind.__name__ != "ndarray" or kind.__module__ != "numpy":
        return None
    snap = {}
    for key in ("boxes", "scores", "labels"):
        if key in output:
            value: Any = output[key]
            if type(value) is not kind or not value.ndim:
                return None
            if value.shape[0] > MAX_DETECTIONS + 1:
                value = value[: MAX_DETECTIONS + 1]
            snap[key] = value.tolist()
    return snap


def _snap(output: Any) -> Any:
    # The branches, in order, of _outputs._read.
    if type(output) is dict and "boxes" in output:
        snap = _host_arrays(output)
        if snap is not None:
            return snap
    if type(output) is dict or isinstance(output, Mapping):
        if "boxes" not in output:
            return _unreadable(output)
        # Plain lists, as the pickler would make them (see _FramePickler): a frame of
        # built-in types only pickles in C, without a Python call per object.
        block = _torchvision_block(output)
        if block is not None:
            return {
                "boxes": block[:, :4].tolist(),
                "scores": block[:, 4].tolist(),
                "labels": block[:, 5].astype("int64").tolist(),
            }
        snap = {"boxes": _listed(host(output["boxes"]))}
        for key in ("scores", "labels"):
            if key in output:
                snap[key] = _listed(host(output[key]))
        return snap
    if hasattr(output, "boxes") and hasattr(output, "names"):
        boxes = output.boxes
        if boxes is None:
            return _unreadable(output)
        return UltralyticsResults(_ultralytics(boxes), output.names, getattr(output, "orig_shape", None))
    if hasattr(output, "xyxy") and hasattr(output, "class_id") and hasattr(output, "confidence"):
        data = getattr(output, "data", None)
        class_names = data.get("class_name") if isinstance(data, Mapping) else None
        class_id = output.class_id
        return SupervisionDetections(
            host(output.xyxy),
            host(output.confidence),
            host(class_id) if class_id is not None else None,
            {"class_name": host(class_names)} if class_names is not None else None,
        )
    shape = getattr(output, "shape", None)
    if shape is not None and hasattr(output, "tolist"):
        if (len(shape) == 2 and shape[1] == 6) or (len(shape) >= 1 and shape[0] == 0):
            return host(output)  # pickled as a list of rows, which the reader reads as it reads the array
        return _unreadable(output)
    if isinstance(output, (list, tuple)):
        if not output:
            return []
        first = output[0]
        if isinstance(first, (Detection, Mapping, list, tuple)):
            return output  # plain values; arrays and tensors inside become lists when pickled (pickle_frame)
        if len(output) == 1:
            return [_snap(first)]
    return _unreadable(output)


class _FramePickler(pickle.Pickler):
    """Pickles arrays and tensors as the plain lists the reader makes of them, and NumPy scalars as numbers.

    ``reducer_override`` is not consulted for ``dict``, ``list``, ``str``, ``float`` and
    the other built-in types, so plain outputs pickle at C speed. An array's ``tolist()``
    is what :func:`._outputs._tolist` reads, and it pickles several times faster than the
    array; a 0-d array stays an array (its ``tolist()`` is a scalar, not a list).
    """

    def reducer_override(self, obj: Any) -> Any:
        module = type(obj).__module__
        if module == "numpy":
            shape = getattr(obj, "shape", None)
            if shape is None:
                return NotImplemented
            if len(shape) == 0:
                return (_scalar, (obj.item(), obj.dtype.str)) if type(obj).__name__ != "ndarray" else NotImplemented
            return (list, (obj.tolist(),))
        if module.startswith("torch") and hasattr(obj, "detach"):
            array = host(obj)
            return (list, (array.tolist(),)) if len(array.shape) else (_identity, (array,))
        return NotImplemented


def _identity(value: Any) -> Any:
    return value


def _scalar(value: Any, dtype: str) -> Any:
    import numpy

    return numpy.dtype(dtype).type(value)


def pickle_frame(frame: Any, plain: bool = False) -> bytes:
    """``frame`` pickled for the recorder process (see :class:`_FramePickler`); ``plain``: built-in types only."""
    if plain:
        return pickle.dumps(frame, 5)
    buffer = io.BytesIO()
    _FramePickler(buffer, 5).dump(frame)
    return buffer.getvalue()


def on_device(output: Any) -> bool:
    """Whether ``output`` is a recognised layout whose arrays are on a GPU (a few attribute reads)."""
    if isinstance(output, Mapping):
        return bool(getattr(output.get("boxes"), "is_cuda", False))
    if isinstance(output, (list, tuple)) and len(output) == 1:
        output = output[0]
    boxes = getattr(output, "boxes", None)
    if boxes is not None:
        return bool(getattr(getattr(boxes, "data", None), "is_cuda", False))
    return bool(getattr(output, "is_cuda", False))


def device_snapshot(output: Any) -> Any:
    """A host snapshot of an output held on a GPU, or ``output`` itself when it is not.

    For in-process recording: the recording thread would copy each field later, while
    the next inference's kernels are queued ahead of the copy on the same stream.
    """
    if not on_device(output):
        return output
    return snapshot(output, None)


def snapshot(output: Any, adapter: Callable[[Any], Any] | None) -> Any:
    """What the recorder process reads instead of ``output`` (after ``adapter``, applied here)."""
    if adapter is not None:
        try:
            output = adapter(output)
        except Exception:  # noqa: BLE001 - counted by the recorder as adapter_error, as in-process
            return ADAPTER_FAILED
    try:
        return _snap(output)
    except Exception:  # noqa: BLE001 - a look-alike of a known format is unreadable, not fatal
        return _unreadable(output)
