"""A/B tests as the companion serves them: request validation, records as JSON, results.

Kept apart from the Flask blueprint so that the CLI, the scheduler and the tests call
the same functions the HTTP routes call.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any, Final

from detwatch.abtest.config import ConfigError, parse_config
from detwatch.abtest.outcomes import ABResults
from detwatch.abtest.results import HOURLY_KINDS, KEYED_KINDS, ArmData, FeedbackCount, compute_results
from detwatch.contract.textfields import name_problem
from detwatch.stats.clustered import ImageSums
from detwatch.storage.protocols import Storage
from detwatch.storage.records import ABTestRecord

__all__ = ["ABTestInputError", "create_for_request", "results_for", "test_json"]

NS_PER_DAY: Final = 86_400 * 1_000_000_000
MAX_NAME: Final = 256


class ABTestInputError(ValueError):
    """Bad input for an A/B test; ``field`` names it, ``status`` is the HTTP status to answer."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > MAX_NAME or name_problem(value) is not None:
        raise ABTestInputError(key, f"must be a non-blank string of at most {MAX_NAME} characters, without NUL")
    return value


def _start(body: Mapping[str, Any], now_ns: int) -> int:
    value = body.get("start")
    if value is None:
        return now_ns
    message = "must be an RFC 3339 date-time from 1970 to 2199, e.g. 2026-11-24T09:00:00Z"
    if not isinstance(value, str) or len(value) > 64:
        raise ABTestInputError("start", message)
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # RFC 3339 allows a lower-case separator and a leap second (read as the second before).
    text = text[:10] + "T" + text[11:] if len(text) > 10 and text[10] in "tT " else text
    text = text.replace(":60", ":59", 1) if len(text) > 19 and text[16:19] == ":60" else text
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ABTestInputError("start", message) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    parsed = parsed.astimezone(dt.UTC)
    if not 1970 <= parsed.year <= 2199:
        raise ABTestInputError("start", message)
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


ARMS_BY_TAG = "ab_variant"
ARMS_BY_MODEL = "model"


def arms_by_of(model_a: str, model_b: str, version_a: str | None, version_b: str | None) -> str:
    """How the arms' traffic is told apart: by model id (and version) when they differ, else by the router's tag.

    Two model ids, or one id with two versions, name their traffic without any tag, so
    a split made outside detwatch counts; one model id with no versions leaves the
    ``ab_variant`` tag of :class:`~detwatch_instrumentation.ABRouter` as the only mark.
    """
    if model_a != model_b or (version_a is not None and version_b is not None and version_a != version_b):
        return ARMS_BY_MODEL
    return ARMS_BY_TAG


def test_json(record: ABTestRecord) -> dict[str, Any]:
    """The test as the API returns it; ``traffic_split`` and ``salt`` are what a router needs."""
    running = record.status == "running"
    return {
        "id": record.id,
        "name": record.name,
        "model_a_id": record.model_a_id,
        "model_b_id": record.model_b_id,
        "config": record.config,
        "status": record.status,
        "start_unix_nano": record.start_unix_nano,
        "end_unix_nano": record.end_unix_nano,
        # A stopped test sends everything to A (production) until a router is changed.
        "traffic_split": record.config["traffic_split"] if running else 0.0,
        "salt": record.id,
    }


def create_for_request(storage: Storage, body: Mapping[str, Any], now_ns: int | None = None) -> ABTestRecord:
    """Validate ``body`` (the seed's ``create_ab_test`` arguments) and store the test."""
    now = time.time_ns() if now_ns is None else now_ns
    name = _string(body, "name")
    model_a = _string(body, "model_a_id")
    model_b = _string(body, "model_b_id")
    try:
        config = parse_config(body.get("config"))
    except ConfigError as exc:
        raise ABTestInputError(exc.field, exc.message) from None
    for field, model_id in (("model_a_id", model_a), ("model_b_id", model_b)):
        if storage.get_model(model_id) is None:
            raise ABTestInputError(field, f"unknown model {model_id!r}: register it (POST /v1/models) first")
    same_arm = model_a == model_b and config.model_a_version == config.model_b_version
    if same_arm and config.model_a_version is not None:
        raise ABTestInputError("config.model_b_version", "must differ from model_a_version for the same model")
    start = _start(body, now)
    end = start + round(config.duration_days * NS_PER_DAY)
    return storage.create_ab_test(
        name=name,
        model_a_id=model_a,
        model_b_id=model_b,
        config=config.as_json(),
        start_unix_nano=start,
        end_unix_nano=end,
    )


def results_for(storage: Storage, record: ABTestRecord, now_ns: int | None = None) -> ABResults:
    """The results: both arms' cells in the test's window, merged and compared (the API serialises them)."""
    now = time.time_ns() if now_ns is None else now_ns
    config = parse_config(record.config)
    start, end = record.start_unix_nano, record.end_unix_nano
    # Cells are hourly: an hour is in the window when it starts in it (the start is
    # rounded down to its hour so that the first partial hour counts).
    hour_ns = 3600 * 1_000_000_000
    first_hour = start // hour_ns * hour_ns

    end_hour = -(-end // 1_000_000_000)

    arms_by = arms_by_of(record.model_a_id, record.model_b_id, config.model_a_version, config.model_b_version)
    # Arms told apart by model (and version) take that traffic whatever its tag: the split
    # may have been made outside detwatch (two deployments, a canary at the load balancer).
    tagged = arms_by == ARMS_BY_TAG

    def arm_data(model_id: str, version: str | None, variant: str) -> ArmData:
        data = ArmData()
        start_hour = first_hour // 1_000_000_000
        for by_hour in (True, False):
            sums = storage.ab_arm_sums(
                model_id=model_id,
                version=version,
                variant=variant if tagged else None,
                start_hour=start_hour,
                end_hour=end_hour,
                kinds=HOURLY_KINDS if by_hour else KEYED_KINDS,
                by_hour=by_hour,
            )
            for hour, kind, key, *columns in sums:
                cell = ImageSums.from_columns(*columns)
                if by_hour:
                    data.add_hour_sum(hour, kind, cell)
                else:
                    data.add_key_sum(kind, key, cell)
        return data

    arm_a = arm_data(record.model_a_id, config.model_a_version, "a")
    arm_b = arm_data(record.model_b_id, config.model_b_version, "b")
    feedback: list[FeedbackCount] = []
    feedback_images: list[tuple[str, int, ImageSums]] = []
    for arm, model_id, version in (
        ("a", record.model_a_id, config.model_a_version),
        ("b", record.model_b_id, config.model_b_version),
    ):
        variant = arm if tagged else None
        for hour, ftype, count in storage.ab_feedback_counts(model_id, version, variant, first_hour, end):
            feedback.append(FeedbackCount(arm, hour, ftype, count))
        for hour, images, posts, correct, posts_sq, correct_sq, both in storage.ab_feedback_image_sums(
            model_id, version, variant, first_hour, end
        ):
            # A post's value is 1 when it says "correct": the ratio estimator of the score.
            sums = ImageSums(posts, correct, correct, images, posts_sq, correct_sq, both, posts_sq)
            feedback_images.append((arm, hour, sums))
    return compute_results(
        test={
            "id": record.id,
            "name": record.name,
            "model_a_id": record.model_a_id,
            "model_b_id": record.model_b_id,
            "start_unix_nano": start,
            "end_unix_nano": end,
        },
        config=config,
        arm_a=arm_a,
        arm_b=arm_b,
        feedback=feedback,
        now_unix_nano=now,
        feedback_images=feedback_images,
        arms_by=arms_by,
    )
