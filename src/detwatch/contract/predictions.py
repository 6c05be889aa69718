"""Prediction events: the companion's input, parsed and validated in one place.

The decorator's ``objdet.prediction`` log record body (a JSON string) and the plain
JSON ingest (``POST /v1/predictions``) carry the same object (DESIGN.md,
"Prediction events"); its field names are a public API like the metric names::

    {"prediction_id": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
     "time": "2024-02-01T12:00:00.123Z",
     "model_id": "vehicles", "model_version": "v2", "ab_variant": "b",
     "latency_ms": 12.4,
     "image": {"key": "cam7/000123.jpg", "uri": "file:///data/cam7/000123.jpg",
               "width": 640, "height": 480},
     "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
     "detections": [{"class": "car", "confidence": 0.91, "box": [12.0, 40.5, 220.0, 180.0]}]}

Only ``model_id``, ``time`` (RFC 3339 with a time zone, or ``time_unix_nano``) and
``detections`` are required. Boxes are absolute pixels, xyxy. When
``prediction_id`` is absent it is derived from the trace and span ids and the
image's index in a batch; without those, from a hash of the event's content, so that
a re-sent event is recognised as the same prediction.

Every validation error names the offending field (``detections[3].confidence``), so
the API can answer with a JSON body that says what to fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from detwatch.contract.textfields import LINE_PATTERN, NUL, NUL_MESSAGE, line_problem, python_pattern

__all__ = [
    "DetectionRecord",
    "ImageRef",
    "Prediction",
    "PredictionError",
    "json_integer",
    "load_json",
    "parse_box",
    "parse_prediction",
    "parse_prediction_json",
]

# fullmatch, not match with "$": "$" also matches before a trailing newline.
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
MAX_ID_LENGTH = 256
MAX_DETECTIONS = 10_000
AB_ARMS = ("a", "b")
"""The arms a prediction may be routed to (``ab_variant``): a closed set."""
MAX_INT64 = 2**63 - 1
"""Nanosecond times are stored as BIGINT."""
MAX_INT32 = 2**31 - 1
"""Image dimensions are stored as INTEGER (32 bits in PostgreSQL)."""
MIN_YEAR, MAX_YEAR = 1970, 2261
"""Years a ``time`` may name: nanoseconds since the epoch fit a BIGINT until April 2262."""
MAX_COORDINATE = 1e7
"""Largest box coordinate magnitude (pixels): beyond any image, and keeps areas and their squares finite."""
MAX_LATENCY_MS = 1e9
"""Largest latency (about 11.6 days): the per-hour sums of squares stay finite."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a JSON body may have."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PredictionError(ValueError):
    """A prediction event that cannot be accepted; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_MAX = MAX_COORDINATE
_Coordinate = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]


class DetectionRecord(msgspec.Struct, frozen=True, array_like=False, gc=False):
    """One detection of a stored prediction.

    A ``msgspec.Struct`` (not a dataclass) so that a prediction body decodes straight
    into these objects and they encode straight back to the stored JSON
    (``{"class", "confidence", "box"}``): ingest creates ten per event, and each
    intermediate dict or list was measurable. The field constraints are checked in C
    while decoding (the fast path below); ``gc=False`` because a detection holds no
    containers that could form a cycle, and ten tracked objects per event made the
    garbage collector run more often.
    """

    class_name: Annotated[str, msgspec.Meta(min_length=1)] = msgspec.field(name="class")
    confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    box: tuple[_Coordinate, _Coordinate, _Coordinate, _Coordinate]


class ImageRef(msgspec.Struct, frozen=True, gc=False):
    """What is known of the image a prediction was made on."""

    key: str | None = None
    uri: str | None = None
    width: int | None = None
    height: int | None = None


class Prediction(msgspec.Struct, frozen=True):
    """A validated prediction event.

    A frozen ``msgspec.Struct`` like :class:`DetectionRecord` (keyword or positional
    construction, attribute access and equality as a frozen dataclass's): ingest makes
    one per event, and a frozen dataclass's ``__init__`` cost ten times more.
    """

    prediction_id: str
    time_unix_nano: int
    model_id: str
    model_version: str
    detections: tuple[DetectionRecord, ...]
    ab_variant: str | None = None
    latency_ms: float | None = None
    image: ImageRef = msgspec.field(default_factory=ImageRef)
    trace_id: str | None = None
    span_id: str | None = None
    attributes: Mapping[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The public JSON form (the same shape the decorator emits)."""
        out: dict[str, Any] = {
            "prediction_id": self.prediction_id,
            "time": format_time(self.time_unix_nano),
            "model_id": self.model_id,
            "model_version": self.model_version,
        }
        if self.ab_variant is not None:
            out["ab_variant"] = self.ab_variant
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        image = {
            k: v
            for k, v in (
                ("key", self.image.key),
                ("uri", self.image.uri),
                ("width", self.image.width),
                ("height", self.image.height),
            )
            if v is not None
        }
        if image:
            out["image"] = image
        if self.trace_id is not None:
            out["trace_id"] = self.trace_id
        if self.span_id is not None:
            out["span_id"] = self.span_id
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        out["detections"] = [
            {"class": d.class_name, "confidence": d.confidence, "box": list(d.box)} for d in self.detections
        ]
        return out


def format_time(unix_nano: int) -> str:
    """RFC 3339 in UTC with milliseconds, as the decorator writes it."""
    secs, rem = divmod(unix_nano, 1_000_000_000)
    dt = datetime.fromtimestamp(secs, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1_000_000:03d}Z"


def load_json(data: bytes | str) -> Any:
    """Parse I-JSON (RFC 7493), nested at most ``MAX_JSON_DEPTH`` deep; raises :class:`ValueError`.

    No ``NaN`` or ``Infinity`` (not JSON, and not writable back as JSON), no name twice
    in one object, and no lone surrogates such as ``"\\udc00"`` (not Unicode: no database can store them). Deep
    nesting is refused before recursive code (``json.dumps`` when storing, protobuf's
    parser) can exhaust the stack. The message is for the sender.
    """

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(data, parse_constant=no_constants, object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at position {exc.pos}") from None
    _check_tree(value, 1)
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, or :class:`ValueError` for a name given twice (I-JSON, RFC 7493 section 2.3).

    Parsers disagree on which of two values wins (Python's and msgspec's keep the last,
    others the first), so a body with both means different things to different readers.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"not I-JSON: the name {duplicate!r} appears twice in one object")
    return obj


def _check_tree(value: Any, depth: int) -> None:
    """Raise :class:`ValueError` for lone surrogates or nesting beyond ``MAX_JSON_DEPTH`` (``value`` at ``depth``)."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise ValueError("a string holds a lone surrogate (not Unicode)")
        elif isinstance(node, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep")
            if isinstance(node, dict):
                stack.extend((key, depth) for key in node)
                stack.extend((child, depth + 1) for child in node.values())
            else:
                stack.extend((child, depth + 1) for child in node)


def json_integer(value: Any) -> int | None:
    """``value`` as an int when it is a JSON integer (``3`` or ``3.0``), else None (never for booleans)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_time(value: Any, field_name: str = "time") -> int:
    """Nanoseconds since the epoch from an RFC 3339 string with a time zone (years 1970 to 2261)."""
    if not isinstance(value, str):
        raise PredictionError(field_name, "must be an RFC 3339 date-time string")
    try:
        # RFC 3339 allows a lowercase "t" and "z"; fromisoformat does not.
        dt = datetime.fromisoformat(value.upper() if value.isascii() else value)
    except ValueError:
        raise PredictionError(field_name, f"not an RFC 3339 date-time: {value!r}") from None
    if dt.tzinfo is None:
        raise PredictionError(field_name, "needs a time zone (e.g. a trailing Z)")
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise PredictionError(field_name, f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
    delta = dt - _EPOCH  # exact, unlike the float of dt.timestamp()
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _string(obj: Mapping[str, Any], key: str, *, required: bool = False, where: str = "") -> str | None:
    value = obj.get(key)
    name = f"{where}{key}"
    if value is None:
        if required:
            raise PredictionError(name, "is required")
        return None
    if not isinstance(value, str) or not value:
        raise PredictionError(name, "must be a non-empty string")
    if key in ("uri", "key"):
        # They name files and lines in exports (COCO file_name, YOLO images.txt): one line, no control character.
        problem = line_problem(value)
        if problem is not None:
            raise PredictionError(name, problem)
    elif len(value) > MAX_ID_LENGTH:
        raise PredictionError(name, f"longer than {MAX_ID_LENGTH} characters")
    elif NUL in value:
        raise PredictionError(name, NUL_MESSAGE)
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PredictionError(name, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the largest double
        raise PredictionError(name, "must be finite") from None
    if not math.isfinite(number):
        raise PredictionError(name, "must be finite")
    return number


def _detection(obj: Any, index: int) -> DetectionRecord:
    # Fast path for the common, valid shape (what the decorator emits): exact
    # types, and chained comparisons that also refuse NaN and infinities. Anything
    # else takes the checked path, which names the offending field.
    if type(obj) is dict:
        name = obj.get("class")
        confidence = obj.get("confidence")
        box = obj.get("box")
        if (
            type(name) is str
            and name
            and NUL not in name
            and type(confidence) is float
            and 0.0 <= confidence <= 1.0
            and (type(box) is list and len(box) == 4)
        ):
            x1, y1, x2, y2 = box
            if (
                type(x1) is float
                and type(y1) is float
                and type(x2) is float
                and type(y2) is float
                and -_MAX <= x1 < x2 <= _MAX
                and -_MAX <= y1 < y2 <= _MAX
            ):
                return DetectionRecord(name, confidence, (x1, y1, x2, y2))
    return _checked_detection(obj, f"detections[{index}]")


def _checked_detection(obj: Any, where: str) -> DetectionRecord:
    if not isinstance(obj, Mapping):
        raise PredictionError(where, "must be an object with class, confidence and box")
    name = obj.get("class", obj.get("label"))
    if not isinstance(name, str) or not name:
        raise PredictionError(f"{where}.class", "must be a non-empty string")
    if NUL in name:
        raise PredictionError(f"{where}.class", NUL_MESSAGE)
    confidence = _number(obj.get("confidence", obj.get("score")), f"{where}.confidence")
    if not 0.0 <= confidence <= 1.0:
        raise PredictionError(f"{where}.confidence", "must be between 0 and 1")
    return DetectionRecord(name, confidence, parse_box(obj.get("box", obj.get("bbox")), f"{where}.box"))


def parse_box(raw: Any, field: str) -> tuple[float, float, float, float]:
    """A box of pixels, xyxy, x2 > x1, y2 > y1, within ±``MAX_COORDINATE``: the one rule of every box.

    Detections, labels and feedback's ``corrected_box`` all go through it, so that a
    box one route accepts is never refused by another (a suggested label is built
    from a feedback box). Raises :class:`PredictionError` naming ``field``.
    """
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise PredictionError(field, "must be [x1, y1, x2, y2] in pixels")
    x1, y1, x2, y2 = (_number(v, field) for v in raw)
    if x2 <= x1 or y2 <= y1:
        raise PredictionError(field, "needs x2 > x1 and y2 > y1 (xyxy)")
    if max(-x1, -y1, x2, y2) > MAX_COORDINATE:
        raise PredictionError(field, f"coordinates must lie within ±{MAX_COORDINATE:g}")
    return (x1, y1, x2, y2)


def _dimension(value: Any, name: str) -> int | None:
    if value is None:
        return None
    number = json_integer(value)
    if number is None or not 0 < number <= MAX_INT32:
        raise PredictionError(name, f"must be a positive integer of at most {MAX_INT32}")
    return number


def parse_prediction(obj: Any, *, index: int = 0) -> Prediction:
    """Validate one prediction object; ``index`` is its position in a batch (for ids).

    Raises :class:`PredictionError` naming the first offending field.
    """
    if not isinstance(obj, Mapping):
        raise PredictionError("prediction", "must be a JSON object")
    model_id = _string(obj, "model_id", required=True)
    assert model_id is not None
    model_version = _string(obj, "model_version") or ""
    given_nano: int | None = None
    if obj.get("time_unix_nano") is not None:
        raw_time = obj["time_unix_nano"]
        if isinstance(raw_time, str) and raw_time.isascii() and raw_time.isdigit():
            raw_time = int(raw_time)  # OTLP/JSON writes 64-bit integers as strings
        given_nano = json_integer(raw_time)
        if given_nano is None or not 0 < given_nano <= MAX_INT64:
            raise PredictionError("time_unix_nano", f"must be a positive integer of at most {MAX_INT64}")
    if obj.get("time") is not None:
        time_unix_nano = parse_time(obj["time"])
    elif given_nano is not None:
        time_unix_nano = given_nano
    else:
        raise PredictionError("time", "is required (RFC 3339, or time_unix_nano)")
    raw_detections = obj.get("detections")
    if not isinstance(raw_detections, list):
        raise PredictionError("detections", "is required: a list (empty when nothing was detected)")
    if len(raw_detections) > MAX_DETECTIONS:
        raise PredictionError("detections", f"more than {MAX_DETECTIONS} detections")
    detections = tuple(_detection(d, i) for i, d in enumerate(raw_detections))
    variant = _string(obj, "ab_variant")
    if variant is not None and variant not in AB_ARMS:
        raise PredictionError("ab_variant", "must be 'a' or 'b'")
    latency = obj.get("latency_ms")
    latency_ms = None if latency is None else _number(latency, "latency_ms")
    if latency_ms is not None and not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise PredictionError("latency_ms", f"must be between 0 and {MAX_LATENCY_MS:g}")
    image_obj = obj.get("image")
    if image_obj is None:
        image_obj = {}
    if not isinstance(image_obj, Mapping):
        raise PredictionError("image", "must be an object")
    image = ImageRef(
        key=_string(image_obj, "key", where="image."),
        uri=_string(image_obj, "uri", where="image."),
        width=_dimension(image_obj.get("width"), "image.width"),
        height=_dimension(image_obj.get("height"), "image.height"),
    )
    trace_id = _string(obj, "trace_id")
    if trace_id is not None and not _HEX32.fullmatch(trace_id):
        raise PredictionError("trace_id", "must be 32 lowercase hex digits")
    span_id = _string(obj, "span_id")
    if span_id is not None and not _HEX16.fullmatch(span_id):
        raise PredictionError("span_id", "must be 16 lowercase hex digits")
    attributes = obj.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        raise PredictionError("attributes", "must be an object")
    return _assemble(
        _string(obj, "prediction_id"),
        time_unix_nano,
        model_id,
        model_version,
        detections,
        variant,
        latency_ms,
        image,
        trace_id,
        span_id,
        dict(attributes),
        index,
    )


def _assemble(  # noqa: PLR0917 - one positional call per path, in field order
    prediction_id: str | None,
    time_unix_nano: int,
    model_id: str,
    model_version: str,
    detections: tuple[DetectionRecord, ...],
    variant: str | None,
    latency_ms: float | None,
    image: ImageRef,
    trace_id: str | None,
    span_id: str | None,
    attributes: dict[str, Any],
    index: int,
) -> Prediction:
    """The Prediction of validated fields, deriving ``prediction_id`` when absent (both paths)."""
    if prediction_id is None:
        if trace_id is not None and span_id is not None:
            prediction_id = f"{trace_id}-{span_id}-{index}"
        else:
            # Content-addressed: the same event sent twice gets the same id.
            canonical = json.dumps(
                [
                    model_id,
                    model_version,
                    time_unix_nano,
                    image.key,
                    image.uri,
                    index,
                    [[d.class_name, d.confidence, list(d.box)] for d in detections],
                ],
                separators=(",", ":"),
            )
            prediction_id = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return Prediction(
        prediction_id=prediction_id,
        time_unix_nano=time_unix_nano,
        model_id=model_id,
        model_version=model_version,
        detections=detections,
        ab_variant=variant,
        latency_ms=latency_ms,
        image=image,
        trace_id=trace_id,
        span_id=span_id,
        attributes=attributes,
    )


# ------------------------------------------------------------------ the fast path
#
# The decorator's event is one JSON string per record; ingest parses hundreds per
# request. The checked path above (``json.loads``, a walk over the tree, a check per
# field) cost about 100 µs per event of 10 detections, more than inserting it. The
# fast path decodes the string with msgspec straight into typed objects (types and
# their constraints, ranges, lengths and id patterns, are checked in C while parsing;
# detections become DetectionRecord at once), then checks what types cannot say (box
# order, surrogates in attributes, the time) in a few lines. Anything it does not
# accept as is (a wrong type, an alias such as ``label``, a string time_unix_nano,
# a value out of range) goes to the checked path, which either accepts it the same
# way or names the offending field: one set of rules, and the error messages of one
# place. tests/test_predictions.py checks that both paths agree.


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# \A and \Z: "$" would also match before a trailing newline (msgspec searches with re).
_TraceId = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{32}\Z")]
_SpanId = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{16}\Z")]
_Dimension = Annotated[int, msgspec.Meta(gt=0, le=MAX_INT32)]
_Nanos = Annotated[int, msgspec.Meta(gt=0, le=MAX_INT64)]


_Line = Annotated[str, msgspec.Meta(min_length=1, pattern=python_pattern(LINE_PATTERN))]


class _Image(msgspec.Struct, gc=False):
    key: _Line | None = None
    uri: _Line | None = None
    width: _Dimension | None = None
    height: _Dimension | None = None


_UNSET: Any = msgspec.UNSET


class _Body(msgspec.Struct):
    """The prediction object with every rule that a type can state (checked while decoding)."""

    model_id: _Id
    detections: Annotated[tuple[DetectionRecord, ...], msgspec.Meta(max_length=MAX_DETECTIONS)]
    prediction_id: _Id | None = None
    # UNSET (absent) differs from null for the fields that a log record may fill.
    time: str | msgspec.UnsetType | None = _UNSET
    time_unix_nano: _Nanos | msgspec.UnsetType | None = _UNSET
    model_version: _Id | None = None
    ab_variant: Literal["a", "b"] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_LATENCY_MS)] | None = None
    image: _Image | None = None
    trace_id: _TraceId | msgspec.UnsetType | None = _UNSET
    span_id: _SpanId | msgspec.UnsetType | None = _UNSET
    attributes: dict[str, Any] | None = None


_decode_body = msgspec.json.Decoder(_Body).decode


def _strings(body: _Body) -> int:
    """How many JSON strings (names and values) ``body`` was decoded from, when nothing was given twice."""
    count = 3 + 4 * len(body.detections)  # model_id and its value, detections; class, confidence, box, a class
    for value in (body.prediction_id, body.time, body.time_unix_nano, body.model_version, body.ab_variant,
                  body.latency_ms, body.trace_id, body.span_id):  # fmt: skip
        if value is not None and value is not _UNSET:
            count += 2 if type(value) is str else 1
    image = body.image
    if image is not None:
        count += 1
        for value in (image.key, image.uri, image.width, image.height):
            if value is not None:
                count += 2 if type(value) is str else 1
    if body.attributes is not None:
        count += 1 + _tree_strings(body.attributes)
    return count


def _tree_strings(node: Any) -> int:
    if isinstance(node, str):
        return 1
    if isinstance(node, dict):
        return len(node) + sum(_tree_strings(child) for child in node.values())
    if isinstance(node, list):
        return sum(_tree_strings(child) for child in node)
    return 0


_NUL_ESCAPE = "\\u0000"
"""How a NUL appears in JSON text (a raw one is not JSON): such text takes the checked path, which names the field."""
_NUL_ESCAPE_BYTES = _NUL_ESCAPE.encode()


def _fast(text: str | bytes, index: int, trace_id: str | None, span_id: str | None, stamp: int) -> Prediction | None:
    if (_NUL_ESCAPE_BYTES if isinstance(text, bytes) else _NUL_ESCAPE) in text:  # type: ignore[operator]
        return None
    try:
        body = _decode_body(text)
    except (msgspec.DecodeError, UnicodeError):  # ValidationError included: the checked path names the field
        return None
    # msgspec keeps the last of a name given twice; I-JSON refuses it. Every string of the
    # text (a name or a value) has two unescaped quotes, so a text with as many quotes as
    # the strings decoded here has no name twice (nor an unknown one, nor an escaped quote);
    # any other goes to the checked path, which refuses duplicates and accepts the rest.
    if (text.count(b'"') if isinstance(text, bytes) else text.count('"')) != 2 * _strings(body):
        return None
    # What types cannot say: box corners in order, strings free of lone surrogates.
    for d in body.detections:
        x1, y1, x2, y2 = d.box
        if not (x1 < x2 and y1 < y2):
            return None
    if body.attributes:
        try:
            _check_tree(body.attributes, 2)
        except ValueError:
            return None
    tid, sid = body.trace_id, body.span_id
    if tid is _UNSET:
        # A record's ids (already checked hex) fill the body's only as a pair.
        tid, sid = (trace_id, span_id) if trace_id and span_id else (None, sid)
    if sid is _UNSET:
        sid = None
    assert not isinstance(tid, msgspec.UnsetType) and not isinstance(sid, msgspec.UnsetType)
    given_time, given_nano = body.time, body.time_unix_nano
    if given_time is _UNSET and given_nano is _UNSET and stamp:
        given_nano = stamp
    if isinstance(given_time, str):
        try:
            time_unix_nano = parse_time(given_time)
        except PredictionError:
            return None
    elif isinstance(given_nano, int) and 0 < given_nano <= MAX_INT64:  # a record's stamp is unsigned 64-bit
        time_unix_nano = given_nano
    else:
        return None
    image = body.image
    return _assemble(
        body.prediction_id,
        time_unix_nano,
        body.model_id,
        body.model_version or "",
        body.detections,
        body.ab_variant,
        body.latency_ms,
        ImageRef(image.key, image.uri, image.width, image.height) if image is not None else _NO_IMAGE,
        tid,
        sid,
        body.attributes or {},
        index,
    )


_NO_IMAGE = ImageRef()


def parse_prediction_json(
    text: str | bytes,
    *,
    index: int = 0,
    trace_id: str | None = None,
    span_id: str | None = None,
    time_unix_nano: int = 0,
) -> Prediction:
    """Parse and validate one prediction object from its JSON text.

    ``trace_id``/``span_id`` (hex) fill the body's when it has no ``trace_id`` key,
    and ``time_unix_nano`` its time when it has neither ``time`` nor
    ``time_unix_nano``: what an OTLP log record carries besides its body. Raises
    :class:`PredictionError`; a body that is not JSON at all is reported as field
    ``body``.
    """
    fast = _fast(text, index, trace_id, span_id, time_unix_nano)
    if fast is not None:
        return fast
    try:
        obj = load_json(text)
    except ValueError as exc:
        raise PredictionError("body", str(exc)) from None
    if not isinstance(obj, dict):
        raise PredictionError("body", "must be a prediction object")
    if "trace_id" not in obj and trace_id and span_id:
        obj["trace_id"], obj["span_id"] = trace_id, span_id
    if "time" not in obj and "time_unix_nano" not in obj and time_unix_nano:
        obj["time_unix_nano"] = time_unix_nano
    return parse_prediction(obj, index=index)
