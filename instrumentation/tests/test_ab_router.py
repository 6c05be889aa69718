"""A/B routing: deterministic by key, stable across processes, tags all telemetry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from typing import Any

import pytest
from scipy import stats

from _telemetry import Telemetry
from detwatch_instrumentation import ABRouter, monitor_detections, semconv

KEYS = [f"cam{i % 7}/{i:06d}.jpg" for i in range(100_000)]


def reference_arm(key: str, salt: str, split: float) -> str:
    """The routing rule written out independently: BLAKE2b-64 of the key, salt as personalisation."""
    person = salt.encode()
    if len(person) > 16:
        person = hashlib.blake2b(person, digest_size=16).digest()
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, person=person).digest(), "big")
    return "b" if value / 2**64 < split else "a"


def identity(image: Any) -> Any:
    return image


def test_same_key_always_gets_the_same_arm() -> None:
    router = ABRouter(identity, identity, traffic_split=0.3, salt="exp-1")
    first = [router.route(k) for k in KEYS[:1000]]
    assert [router.route(k) for k in KEYS[:1000]] == first
    assert first == [reference_arm(k, "exp-1", 0.3) for k in KEYS[:1000]]


def test_split_matches_the_configured_share_within_binomial_noise() -> None:
    router = ABRouter(identity, identity, traffic_split=0.1, salt="exp-2")
    to_b = sum(router.route(k) == "b" for k in KEYS)
    # Two-sided exact binomial test: a fair 10 % split is not rejected at 0.1 %.
    assert stats.binomtest(to_b, len(KEYS), 0.1).pvalue > 0.001


def test_different_salts_split_independently() -> None:
    a = ABRouter(identity, identity, traffic_split=0.5, salt="exp-a")
    b = ABRouter(identity, identity, traffic_split=0.5, salt="exp-b")
    table = [[0, 0], [0, 0]]
    for key in KEYS:
        table[a.route(key) == "b"][b.route(key) == "b"] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_assignment_is_stable_across_processes_and_hash_seeds() -> None:
    code = (
        "from detwatch_instrumentation import ABRouter\n"
        "r = ABRouter(print, print, traffic_split=0.25, salt='exp-3')\n"
        "print(''.join(r.route(f'k{i}') for i in range(300)))\n"
    )
    here = "".join(ABRouter(identity, identity, traffic_split=0.25, salt="exp-3").route(f"k{i}") for i in range(300))
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here


def test_extreme_splits_send_everything_to_one_arm() -> None:
    assert {ABRouter(identity, identity, traffic_split=0.0).route(k) for k in KEYS[:500]} == {"a"}
    assert {ABRouter(identity, identity, traffic_split=1.0).route(k) for k in KEYS[:500]} == {"b"}


def test_routed_calls_tag_metrics_span_and_event_with_the_arm(telemetry: Telemetry) -> None:
    def make(version: str) -> Any:
        @monitor_detections(model_id="vehicles", model_version=version, **telemetry.providers)
        def predict(image: Any) -> list[dict[str, Any]]:
            return [{"class": "car", "confidence": 0.8, "box": [0, 0, 10, 10]}]

        return predict

    router = ABRouter(make("v1"), make("v2"), traffic_split=0.5, salt="exp-4")
    keys = KEYS[:40]
    for key in keys:
        router("image", key=key)
    expected = {key: router.route(key) for key in keys}
    bodies = telemetry.bodies()
    assert len(bodies) == len(keys)
    for body in bodies:
        key = body["image"]["key"]
        assert body["ab_variant"] == expected[key]
        assert body["model_version"] == ("v2" if expected[key] == "b" else "v1")
    images = {
        (p.attributes[semconv.ATTR_AB_VARIANT], p.attributes[semconv.ATTR_MODEL_VERSION]): p.value
        for p in telemetry.points(semconv.IMAGES.name)
    }
    n_b = sum(arm == "b" for arm in expected.values())
    assert images == {("a", "v1"): len(keys) - n_b, ("b", "v2"): n_b}
    for span in telemetry.spans():
        assert span.attributes is not None
        assert span.attributes[semconv.ATTR_AB_VARIANT] in ("a", "b")


def test_async_models_are_routed_inside_their_coroutine(telemetry: Telemetry) -> None:
    @monitor_detections(model_id="m", model_version="v1", **telemetry.providers)
    async def v1(image: Any) -> list[Any]:
        await asyncio.sleep(0)
        return []

    @monitor_detections(model_id="m", model_version="v2", **telemetry.providers)
    async def v2(image: Any) -> list[Any]:
        await asyncio.sleep(0)
        return []

    router = ABRouter(v1, v2, traffic_split=0.5)

    async def main() -> None:
        await asyncio.gather(*(router("img", key=k) for k in KEYS[:20]))

    asyncio.run(main())
    arms = {body["image"]["key"]: body["ab_variant"] for body in telemetry.bodies()}
    assert arms == {k: router.route(k) for k in KEYS[:20]}


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"traffic_split": 1.5}, "traffic_split"),
        ({"traffic_split": -0.1}, "traffic_split"),
        ({"traffic_split": "half"}, "traffic_split"),
        ({"traffic_split": 0.5, "salt": 3}, "salt"),
    ],
)
def test_bad_router_arguments_fail_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises((ValueError, TypeError), match=argument):
        ABRouter(identity, identity, **kwargs)


def test_route_refuses_non_string_keys() -> None:
    router = ABRouter(identity, identity, traffic_split=0.5)
    with pytest.raises(TypeError, match="key"):
        router.route(123)  # type: ignore[arg-type]
