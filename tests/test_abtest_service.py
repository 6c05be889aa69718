"""A/B tests through the companion under gunicorn and the client, on SQLite and PostgreSQL.

The events sent are built here with known values; every number of the results is
checked against SciPy run on those raw values (the service only ever sees them
through its per-hour aggregates).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

import detwatch
from _components import free_port
from _service import Companion, companion_on
from detwatch.cli import main as cli
from detwatch.contract import bins
from detwatch.exceptions import InvalidRequestError, NotFoundError
from detwatch_instrumentation import ABRouter, CompanionSplit

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOURS = 30
CLASSES = ("car", "person", "truck")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def companion(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Companion]:
    with companion_on(request.param, request, tmp_path_factory.mktemp("abtest")) as service:
        yield service


@pytest.fixture
def client(companion: Companion) -> detwatch.Client:
    return detwatch.Client(base_url=companion.url)


def _rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Traffic:
    """Synthetic routed traffic of two arms, kept raw for the independent computation."""

    def __init__(self, prefix: str, seed: int, *, b_shift: float, n_a: int, n_b: int) -> None:
        rng = np.random.default_rng(seed)
        self.events: list[dict[str, Any]] = []
        self.raw: dict[str, dict[str, list[Any]]] = {
            arm: {"confidence": [], "latency": [], "classes": [], "hour": [], "conf_hour": [], "ids": [], "counts": []}
            for arm in "ab"
        }
        for arm, n, shift in (("a", n_a, 0.0), ("b", n_b, b_shift)):
            model = f"{prefix}-v1" if arm == "a" else f"{prefix}-v2"
            for i in range(n):
                hour = int(rng.integers(0, HOURS))
                t = START + dt.timedelta(hours=hour, seconds=int(rng.integers(0, 3600)))
                k = int(rng.integers(0, 5))
                detections = []
                for _ in range(k):
                    conf = float(np.clip(rng.normal(0.72 + shift, 0.12), 0.01, 1.0))
                    cls = str(rng.choice(CLASSES, p=[0.6, 0.3, 0.1]))
                    detections.append({"class": cls, "confidence": conf, "box": [10.0, 10.0, 60.0, 40.0]})
                    self.raw[arm]["confidence"].append(conf)
                    self.raw[arm]["classes"].append(cls)
                    self.raw[arm]["conf_hour"].append(hour)
                latency = float(rng.lognormal(math.log(40.0 if arm == "a" else 44.0), 0.3))
                pid = f"{prefix}-{arm}-{i}"
                self.raw[arm]["latency"].append(latency)
                self.raw[arm]["counts"].append(k)
                self.raw[arm]["hour"].append(hour)
                self.raw[arm]["ids"].append(pid)
                self.events.append(
                    {
                        "prediction_id": pid,
                        "time": _rfc3339(t),
                        "model_id": model,
                        "model_version": "1",
                        "ab_variant": arm,
                        "latency_ms": latency,
                        "image": {"key": pid, "width": 640, "height": 480},
                        "detections": detections,
                    }
                )

    def send(self, client: detwatch.Client) -> None:
        for start in range(0, len(self.events), 500):
            client.send_predictions(self.events[start : start + 500])


def _ratio_variance(n: np.ndarray, s: np.ndarray, values: np.ndarray) -> tuple[float, int]:
    """A per-detection mean's variance with the image as the unit (>= the independent one), and the images.

    Computed directly from the raw images: ``G / (G - 1) sum (s_i - r n_i)^2 / N^2``.
    """
    n, s = n[n > 0], s[n > 0]
    g, total = n.size, n.sum()
    r = s.sum() / total
    robust = g / (g - 1) * np.sum((s - r * n) ** 2) / total**2
    return max(float(robust), float(np.var(values, ddof=1) / values.size)), g


def _clustered_variance(raw: dict[str, list[Any]]) -> tuple[float, int]:
    counts = np.array(raw["counts"])
    conf = np.array(raw["confidence"])
    image = np.repeat(np.arange(counts.size), counts)
    return _ratio_variance(counts.astype(float), np.bincount(image, weights=conf, minlength=counts.size), conf)


def _rao_scott(ra: dict[str, list[Any]], rb: dict[str, list[Any]]) -> float:
    """Rao and Scott's first-order design effect of the 2 x K class table, from the raw images."""
    n_a, n_b = len(ra["classes"]), len(rb["classes"])
    total = 0.0
    for c in CLASSES:
        pooled = (ra["classes"].count(c) + rb["classes"].count(c)) / (n_a + n_b)
        for raw in (ra, rb):
            counts = np.array(raw["counts"])
            image = np.repeat(np.arange(counts.size), counts)
            hits = (np.array(raw["classes"]) == c).astype(float)
            variance, _ = _ratio_variance(
                counts.astype(float), np.bincount(image, weights=hits, minlength=counts.size), hits
            )
            total += variance / pooled
    return max(1.0, n_a * n_b / (n_a + n_b) * total / (len(CLASSES) - 1))


def _create(client: detwatch.Client, prefix: str, config: dict[str, Any]) -> Any:
    model_v1 = client.register_model(model_id=f"{prefix}-v1", version="1")
    model_v2 = client.register_model(model_id=f"{prefix}-v2", version="1")
    return client.create_ab_test(
        name="Detection Model Comparison",
        model_a_id=model_v1["id"],
        model_b_id=model_v2["id"],
        config=config,
        start=_rfc3339(START),
    )


def test_results_match_scipy_on_the_raw_values(client: detwatch.Client, companion: Companion) -> None:
    prefix = f"abx-{companion.url.rsplit(':', 1)[1]}"
    traffic = Traffic(prefix, seed=1, b_shift=-0.03, n_a=1800, n_b=200)
    traffic.send(client)
    # Feedback: 70 % correct on A, 50 % on B, on the first images of each arm.
    feedback = {"a": (60, 42), "b": (40, 20)}
    for arm, (total, correct) in feedback.items():
        for j, pid in enumerate(traffic.raw[arm]["ids"][:total]):
            client.send_feedback(type="correct" if j < correct else "false_positive", prediction_id=pid)

    ab_test = _create(
        client,
        prefix,
        {
            "traffic_split": 0.1,
            "metrics": ["confidence", "latency", "feedback_score", "class_mix", "empty_image_rate"],
            "duration_days": 7,
        },
    )
    assert ab_test.id
    results = client.get_ab_test_results(ab_test.id)
    ra, rb = traffic.raw["a"], traffic.raw["b"]
    conf_a, conf_b = np.array(ra["confidence"]), np.array(rb["confidence"])

    # The user guide's reads.
    assert results["model_a"]["avg_confidence"] == pytest.approx(conf_a.mean())
    assert results["model_b"]["avg_confidence"] == pytest.approx(conf_b.mean())
    assert results["p_value"] is not None and 0.0 <= results["p_value"] <= 1.0
    assert results["model_a"]["images"] == 1800
    assert results["model_b"]["images"] == 200

    # Confidence: Welch's test with each arm's variance taken with the image as the unit
    # (cluster-robust, never below the independent one) and degrees of freedom from images.
    conf = results["comparisons"]["confidence"]
    (va, ga), (vb, gb) = (_clustered_variance(ra), _clustered_variance(rb))
    diff = conf_b.mean() - conf_a.mean()
    df = (va + vb) ** 2 / (va**2 / (ga - 1) + vb**2 / (gb - 1))
    p_welch = 2 * stats.t.sf(abs(diff) / math.sqrt(va + vb), df)
    assert conf["p_value_fixed_horizon"] == pytest.approx(p_welch, rel=1e-6)
    assert conf["fixed_horizon_method"] == "welch_t"
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert conf["ci_low"] == pytest.approx(diff - half, rel=1e-6)
    assert conf["ci_high"] == pytest.approx(diff + half, rel=1e-6)
    assert conf["unit"] == "detection, clustered by image"
    assert conf["effective_sample_size"]["a"] == pytest.approx(
        conf_a.size * np.var(conf_a, ddof=1) / conf_a.size / va, rel=1e-6
    )
    assert conf["variance_assumes_independence"] is False

    latency = results["comparisons"]["latency"]
    ia = [bins.latency_bin(v) for v in ra["latency"]]
    ib = [bins.latency_bin(v) for v in rb["latency"]]
    mw = stats.mannwhitneyu(ia, ib, method="asymptotic")
    assert latency["p_value_fixed_horizon"] == pytest.approx(mw.pvalue, rel=1e-6)
    assert results["model_a"]["latency_ms"]["mean"] == pytest.approx(np.mean(ra["latency"]))
    p99 = results["model_a"]["latency_ms"]["p99"]
    assert abs(p99 / np.quantile(ra["latency"], 0.99) - 1) < 0.13  # within one latency bin

    fb = results["comparisons"]["feedback_score"]
    assert results["model_a"]["feedback_score"] == pytest.approx(42 / 60)
    assert results["model_b"]["feedback_count"] == 40
    _, p_fb, _, _ = stats.chi2_contingency([[42, 18], [20, 20]], correction=False)
    assert fb["p_value_fixed_horizon"] == pytest.approx(p_fb, rel=1e-6)

    # Class mix: Pearson's chi-square divided by Rao and Scott's mean design effect,
    # from each class share's image-clustered variance.
    table = [[ra["classes"].count(c) for c in CLASSES], [rb["classes"].count(c) for c in CLASSES]]
    chi2, _, dof, _ = stats.chi2_contingency(table, correction=False)
    deff = _rao_scott(ra, rb)
    p_mix = stats.chi2.sf(chi2 / deff, dof)
    assert results["comparisons"]["class_mix"]["p_value_fixed_horizon"] == pytest.approx(p_mix, rel=1e-6)

    # Metrics outside the configured family are compared too, without a corrected p-value.
    per_image = results["comparisons"]["detections_per_image"]
    welch_counts = stats.ttest_ind(rb["counts"], ra["counts"], equal_var=False)
    assert per_image["p_value_fixed_horizon"] == pytest.approx(welch_counts.pvalue, rel=1e-6)
    assert per_image["in_family"] is False
    assert per_image["p_value_corrected"] is None
    assert results["model_b"]["detections_per_image"] == pytest.approx(np.mean(rb["counts"]))

    _, p_srm = stats.chisquare([1800, 200], f_exp=[1800, 200])
    assert results["sample_ratio"]["p_value"] == pytest.approx(p_srm)
    assert results["sample_ratio"]["mismatch"] is False

    # The always-valid p-value: the mSPRT's 1/Lambda at each hour's cumulative data, minimised.
    tau2 = 0.02**2
    best = 1.0
    hours_a, hours_b = np.array(ra["conf_hour"]), np.array(rb["conf_hour"])
    for h in range(HOURS):
        xa, xb = conf_a[hours_a <= h], conf_b[hours_b <= h]
        if len(xa) < 2 or len(xb) < 2:
            continue
        var = xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb)
        d = xb.mean() - xa.mean()
        lam = math.sqrt(var / (var + tau2)) * math.exp(d * d * tau2 / (2 * var * (var + tau2)))
        best = min(best, 1 / lam)
    assert results["p_value"] == pytest.approx(best, rel=1e-6)
    assert set(results["p_values_corrected"]) == {
        "confidence",
        "latency",
        "feedback_score",
        "class_mix",
        "empty_image_rate",
    }
    assert results["verdict"] in ("running", "a_better", "b_better", "no_difference", "inconclusive")


def test_a_clear_difference_gives_a_verdict_and_a_broken_split_is_flagged(client: detwatch.Client) -> None:
    traffic = Traffic("abclear", seed=2, b_shift=-0.15, n_a=600, n_b=600)
    traffic.send(client)
    clear = _create(client, "abclear", {"traffic_split": 0.5, "metrics": ["confidence"], "duration_days": 3})
    results = client.get_ab_test_results(clear.id)
    assert results["status"] == "completed"  # back-dated: its three days are over
    assert results["verdict"] == "a_better"
    assert results["p_value"] is not None and results["p_value"] < 0.05
    _low, high = results["comparisons"]["confidence"]["confidence_sequence"]
    assert high < 0  # B's confidence is lower, with any-time validity

    printed = CliRunner().invoke(cli, ["ab", clear.id, "--url", client.base_url])
    assert printed.exit_code == 0, printed.output
    assert "Verdict: A IS BETTER" in printed.output
    assert f"{results['model_a']['avg_confidence']:.3f}" in printed.output
    sizes = results["comparisons"]["confidence"]["effective_sample_size"]
    assert f"{sizes['a']:.0f} / {sizes['b']:.0f}" in printed.output  # the evidence in independent units
    listed = CliRunner().invoke(cli, ["ab", "--url", client.base_url])
    assert clear.id in listed.output

    # The same traffic declared as a 10 % test: 600/600 is not a 90/10 split.
    broken = _create(client, "abclear", {"traffic_split": 0.1, "metrics": ["confidence"], "duration_days": 3})
    results = client.get_ab_test_results(broken.id)
    assert results["sample_ratio"]["mismatch"] is True
    assert results["valid"] is False
    assert results["verdict"] == "inconclusive"


def test_stopping_ends_the_test_and_routers_get_everything_to_a(client: detwatch.Client) -> None:
    client.register_model(model_id="abstop", version="1")
    test = client.create_ab_test(
        name="stop me",
        model_a_id="abstop",
        model_b_id="abstop",
        config={"traffic_split": 0.2, "metrics": ["latency"], "duration_days": 7},
    )
    assert client.get_ab_test(test["id"])["traffic_split"] == 0.2
    stopped = client.stop_ab_test(test["id"])
    assert stopped["status"] == "stopped"
    assert stopped["traffic_split"] == 0.0
    assert stopped["end_unix_nano"] <= test["end_unix_nano"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"traffic_split": 1.5}, "config.traffic_split"),
        ({"traffic_split": "ten"}, "config.traffic_split"),
        ({"metrics": ["accuracy"]}, "config.metrics[0]"),
        ({"metrics": ["class_mix", "confidence"]}, "config.metrics"),
        ({"duration_days": 0}, "config.duration_days"),
        ({"min_effect": {"confidence": -1}}, "config.min_effect.confidence"),
        ({"colour": "blue"}, "config.colour"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_field(
    client: detwatch.Client, config: dict[str, Any], field: str
) -> None:
    client.register_model(model_id="abbad", version="1")
    with pytest.raises(InvalidRequestError) as info:
        client.create_ab_test(name="bad", model_a_id="abbad", model_b_id="abbad", config=config)
    assert info.value.field == field


def test_unknown_models_and_tests_are_named(client: detwatch.Client) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client.create_ab_test(name="x", model_a_id="nobody", model_b_id="nobody", config={})
    assert info.value.field == "model_a_id"
    with pytest.raises(NotFoundError):
        client.get_ab_test_results("0" * 32)


def test_a_router_takes_its_split_and_salt_from_the_companion(client: detwatch.Client, companion: Companion) -> None:
    client.register_model(model_id="abroute", version="1")
    test = client.create_ab_test(
        name="routed", model_a_id="abroute", model_b_id="abroute", config={"traffic_split": 0.3, "metrics": ["latency"]}
    )
    split = CompanionSplit(companion.url, test["id"], refresh_s=60)
    assert split.refresh()
    assert (split.split, split.salt) == (0.3, test["id"])
    router = ABRouter(lambda image: "A", lambda image: "B", traffic_split=split)
    local = ABRouter(lambda image: "A", lambda image: "B", traffic_split=0.3, salt=test["id"])
    keys = [f"frame-{i}" for i in range(20_000)]
    arms = [router.route(k) for k in keys]
    assert arms == [local.route(k) for k in keys]  # any process with the test's salt agrees
    share_b = arms.count("b")
    low, high = stats.binom.ppf([0.0005, 0.9995], len(keys), 0.3)
    assert low <= share_b <= high
    assert router(None, key="frame-1") == ("B" if arms[1] == "b" else "A")

    client.stop_ab_test(test["id"])
    assert split.refresh()
    assert {router.route(k) for k in keys[:2000]} == {"a"}
    split.close()


def test_a_router_keeps_its_last_split_when_the_companion_is_unreachable(
    client: detwatch.Client, companion: Companion
) -> None:
    client.register_model(model_id="abdown", version="1")
    test = client.create_ab_test(
        name="down", model_a_id="abdown", model_b_id="abdown", config={"traffic_split": 0.5, "metrics": ["latency"]}
    )
    # Never reached: everything goes to A, and route() does not wait for the network.
    dead = CompanionSplit(f"http://127.0.0.1:{free_port()}", test["id"], refresh_s=60, timeout_s=0.5)
    router = ABRouter(lambda image: "A", lambda image: "B", traffic_split=dead)
    assert {router.route(f"k{i}") for i in range(500)} == {"a"}
    assert not dead.refresh()
    assert dead.failures >= 1
    dead.close()

    # Reached once, then lost: the last split stays in force.
    split = CompanionSplit(companion.url, test["id"], refresh_s=60, timeout_s=0.5)
    assert split.refresh()
    split.url = f"http://127.0.0.1:{free_port()}/v1/ab-tests/{test['id']}"
    assert not split.refresh()
    assert split.split == 0.5
    routed = ABRouter(lambda image: "A", lambda image: "B", traffic_split=split)
    assert {routed.route(f"k{i}") for i in range(500)} == {"a", "b"}
    split.close()


def test_a_router_split_source_refuses_bad_arguments_naming_them() -> None:
    with pytest.raises(ValueError, match="base_url"):
        CompanionSplit("detwatch:8000", "x")
    with pytest.raises(ValueError, match="ab_test_id"):
        CompanionSplit("http://detwatch:8000", "")
    with pytest.raises(ValueError, match="refresh_s"):
        CompanionSplit("http://detwatch:8000", "x", refresh_s=0)


def test_arms_split_outside_detwatch_are_told_apart_by_model_and_version(
    client: detwatch.Client, companion: Companion
) -> None:
    """Two deployments (or a canary at the load balancer): no ab_variant tag on any event."""
    prefix = f"abext-{companion.url.rsplit(':', 1)[1]}"
    traffic = Traffic(prefix, seed=5, b_shift=0.0, n_a=300, n_b=100)
    for event in traffic.events:
        del event["ab_variant"]
    traffic.send(client)
    config = {"traffic_split": 0.25, "metrics": ["confidence", "latency"], "duration_days": 7}
    by_model = client.get_ab_test_results(_create(client, prefix, config).id)
    assert by_model["arms_by"] == "model"
    assert (by_model["model_a"]["images"], by_model["model_b"]["images"]) == (300, 100)
    assert by_model["model_a"]["detections"] == len(traffic.raw["a"]["confidence"])
    assert "outside detwatch" in by_model["sample_ratio"]["expected_from"]
    assert not by_model["sample_ratio"]["mismatch"]  # 100 of 400 is the configured 0.25

    # One model id, two versions: the versions name the arms.
    one = f"{prefix}-one"
    client.register_model(model_id=one, version="1")
    events = []
    for i, version in enumerate(["1"] * 150 + ["2"] * 50):
        events.append(
            {
                "prediction_id": f"{one}-{i}",
                "time": _rfc3339(START + dt.timedelta(minutes=i)),
                "model_id": one,
                "model_version": version,
                "detections": [{"class": "car", "confidence": 0.8, "box": [0.0, 0.0, 10.0, 10.0]}],
            }
        )
    client.send_predictions(events)
    versions = client.create_ab_test(
        name="versions",
        model_a_id=one,
        model_b_id=one,
        config={**config, "model_a_version": "1", "model_b_version": "2"},
        start=_rfc3339(START),
    )
    by_version = client.get_ab_test_results(versions["id"])
    assert by_version["arms_by"] == "model"
    assert (by_version["model_a"]["images"], by_version["model_b"]["images"]) == (150, 50)
    # Without versions, one model id leaves the router's tag as the only mark: none here.
    tagless = client.create_ab_test(name="tags", model_a_id=one, model_b_id=one, config=config, start=_rfc3339(START))
    by_tag = client.get_ab_test_results(tagless["id"])
    assert by_tag["arms_by"] == "ab_variant"
    assert (by_tag["model_a"]["images"], by_tag["model_b"]["images"]) == (0, 0)
