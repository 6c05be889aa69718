"""The Python client of the companion: the calls of the user guide, on ``requests``.

Usage::

    import detwatch

    client = detwatch.Client(base_url="http://127.0.0.1:8000", token="...")
    model = client.register_model(model_id="vehicles", version="v2")
    dataset = client.create_dataset(name="vehicles")
    client.send_feedback(type="wrong_label", prediction_id="...", corrected_class="truck")

Each call returns the ``/v1`` shape of its answer (:mod:`detwatch.contract.shapes`, the
declaration the server and the OpenAPI document share), typed for checkers as that
``TypedDict``. At runtime the value is a :class:`Record`: a dictionary that also allows
attribute access, so both ``model.id`` and ``report["class_drift"]`` work as the user
guide writes them (type-checked code reads ``model["id"]``). Errors raise the
exceptions of :mod:`detwatch.exceptions`.

The client retries 429 and 503 answers (the service says it stored nothing and
when to come back, in ``Retry-After``) with exponential backoff; it retries a failed
connection only for calls that are safe to repeat (reads, and ingest calls that
the service de-duplicates). The default timeout is finite.

Calls whose server side comes with later versions of the companion
(``create_alert``, ``configure_data_engine``, ``get_flagged_items``,
``create_training_job``, ``create_ab_test``, ``get_ab_test_results``) raise
:class:`~detwatch.exceptions.NotAvailableError` against a server without them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote

import requests

from detwatch.contract.label_studio import config_classes, labeling_config
from detwatch.contract.shapes import (
    ABTest,
    ABTestResults,
    AlertCreated,
    DataEngine,
    Dataset,
    DatasetVersion,
    DriftReport,
    FeedbackRecord,
    FlaggedItem,
    Model,
    PredictionResult,
    QualityReport,
    Status,
    TrainingGate,
    TrainingJob,
    VersionComparisonReport,
)
from detwatch.contract.shapes.label_studio import (
    MAX_IMPORT_TASKS,
    LabelStudioImportResult,
    LabelStudioTask,
    LabelStudioTaskOutcome,
)
from detwatch.exceptions import (
    AuthenticationError,
    InvalidRequestError,
    NotAvailableError,
    NotFoundError,
    ResponseError,
    TransportError,
    UnavailableError,
)

__all__ = ["Client", "LabelStudioTasks", "Page", "Record"]

_logger = logging.getLogger("detwatch.client")

DEFAULT_TIMEOUT_S = 10.0
MAX_RETRY_AFTER_S = 30.0


class Page(list[FlaggedItem]):
    """A list of flagged items (:class:`Record` values), with the cursor of the next page (``None`` at the end)."""

    def __init__(self, items: Any = (), *, next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


class LabelStudioTasks(list[LabelStudioTask]):
    """Label Studio tasks, with ``label_config``: the labeling config (XML) they are made for."""

    def __init__(self, tasks: Any = (), *, label_config: str = "") -> None:
        super().__init__(tasks)
        self.label_config = label_config


class Record(dict[str, Any]):
    """A JSON object from the service, readable as ``record["id"]`` or ``record.id``."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return Record(value) if isinstance(value, dict) and not isinstance(value, Record) else value


def _segment(identifier: str) -> str:
    """An id as one URL path segment: ``/``, ``?``, ``#`` and spaces escaped, so an odd id reaches its route."""
    return quote(str(identifier), safe="")


_NAN = float("nan")


def _numbers(record: Record, keys: Sequence[str]) -> Record:
    """The user guide formats these values as numbers (``f"{report['class_drift']:.3f}"``): one the
    data cannot give (the server's ``null``, with a ``status`` or ``verdict`` that says why) is
    NaN here, the numeric "not available", rather than None, which no format accepts."""
    for key in keys:
        if key in record and record[key] is None:
            record[key] = _NAN
    return record


def _record(data: Any) -> Record:
    if not isinstance(data, dict):
        raise ResponseError(200, "unexpected_response", f"expected a JSON object, got {type(data).__name__}")
    return Record(data)


class Client:
    """A client of one companion service.

    ``base_url`` is the service's root (``http://host:port``); ``token`` the bearer
    token when the service requires one. ``session`` may be any ``requests.Session``
    (for proxies, TLS settings, or a test transport).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        backoff: float = 0.25,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected http(s)://host:port, got {base_url!r}")
        if timeout <= 0:
            raise ValueError("timeout: must be positive")
        if retries < 0:
            raise ValueError("retries: must not be negative")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()

    # ------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        safe_to_repeat: bool = False,
        call: str = "",
    ) -> Any:
        url = f"{self.base_url}{path}"
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=all_headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                if safe_to_repeat and attempt < self.retries:
                    time.sleep(self.backoff * 2.0**attempt)
                    attempt += 1
                    continue
                raise TransportError(f"{method} {url}: {exc}") from exc
            if response.status_code in (429, 503) and attempt < self.retries:
                time.sleep(self._retry_delay(response, attempt))
                attempt += 1
                continue
            return self._answer(response, call)

    def _retry_delay(self, response: requests.Response, attempt: int) -> float:
        header = str(response.headers.get("Retry-After", ""))
        try:
            return min(float(header), MAX_RETRY_AFTER_S)
        except ValueError:
            return self.backoff * 2.0**attempt

    def _answer(self, response: requests.Response, call: str) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.ok:
            return data
        error = data.get("error", {}) if isinstance(data, dict) else {}
        code = str(error.get("code", "http_error"))
        message = str(error.get("message", response.reason or "error"))
        field = error.get("field")
        status = response.status_code
        if status in (404, 405) and code in ("not_found", "method_not_allowed") and call:
            raise NotAvailableError(status, "not_available", f"{call} is not available on this server", None)
        exc_type: type[ResponseError] = ResponseError
        if status in (400, 413, 415, 422):
            exc_type = InvalidRequestError
        elif status in (401, 403):
            exc_type = AuthenticationError
        elif status == 404:
            exc_type = NotFoundError
        elif status in (429, 503):
            exc_type = UnavailableError
        raise exc_type(status, code, message, str(field) if field is not None else None)

    # ------------------------------------------------------------ registry

    def register_model(
        self, *, model_id: str, version: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Model:
        """Register a model (and version); returns it, with ``.id``."""
        body: dict[str, Any] = {"model_id": model_id, "metadata": dict(metadata or {})}
        if version is not None:
            body["version"] = version
        return cast(Model, _record(self._request("POST", "/v1/models", json=body, safe_to_repeat=True)))

    def get_model(self, model_id: str) -> Model:
        """A model registered or seen in telemetry; :class:`NotFoundError` if unknown."""
        return cast(Model, _record(self._request("GET", f"/v1/models/{_segment(model_id)}", safe_to_repeat=True)))

    def create_dataset(self, *, name: str, description: str = "") -> Dataset:
        """A new dataset with its first, empty version (``dataset.version.id``)."""
        return cast(
            Dataset, _record(self._request("POST", "/v1/datasets", json={"name": name, "description": description}))
        )

    def get_dataset(self, dataset_id: str) -> Dataset:
        return cast(Dataset, _record(self._request("GET", f"/v1/datasets/{_segment(dataset_id)}", safe_to_repeat=True)))

    def create_dataset_version(
        self, *, dataset_id: str, parent_version_id: str | None = None, name: str
    ) -> DatasetVersion:
        """A new version of ``dataset_id``, derived from ``parent_version_id``."""
        body: dict[str, Any] = {"name": name}
        if parent_version_id is not None:
            body["parent_version_id"] = parent_version_id
        return cast(
            DatasetVersion,
            _record(
                self._request(
                    "POST", f"/v1/datasets/{_segment(dataset_id)}/versions", json=body, call="create_dataset_version"
                )
            ),
        )

    # ------------------------------------------------------------ ingest and feedback

    def send_predictions(self, predictions: Sequence[Mapping[str, Any]]) -> PredictionResult:
        """Store prediction events (the decorator's JSON shape); duplicates are recognised."""
        return cast(
            PredictionResult,
            _record(
                self._request("POST", "/v1/predictions", json={"predictions": list(predictions)}, safe_to_repeat=True)
            ),
        )

    def send_feedback(self, *, type: str, idempotency_key: str | None = None, **fields: Any) -> FeedbackRecord:
        """Post one feedback item (``prediction_id`` or ``trace_id``/``span_id``, plus what was wrong).

        An idempotency key is generated when none is given, so the client's own
        retries count once.
        """
        key = idempotency_key or uuid.uuid4().hex
        body = {"type": type, **{k: v for k, v in fields.items() if v is not None}}
        return cast(
            FeedbackRecord,
            _record(
                self._request("POST", "/v1/feedback", json=body, headers={"Idempotency-Key": key}, safe_to_repeat=True)
            ),
        )

    def status(self) -> Status:
        return cast(Status, _record(self._request("GET", "/v1/status", safe_to_repeat=True)))

    # ------------------------------------------------------------ calls of later companion versions

    def create_alert(
        self, *, model_id: str, name: str, condition: Mapping[str, Any], notify: Sequence[str] = ()
    ) -> AlertCreated:
        """An alert on a model metric (``avg_confidence``, ``p99_latency_ms``, ...)."""
        body = {"name": name, "condition": dict(condition), "notify": list(notify)}
        return cast(
            AlertCreated,
            _record(self._request("POST", f"/v1/models/{_segment(model_id)}/alerts", json=body, call="create_alert")),
        )

    def configure_data_engine(
        self, *, model_id: str, config: Mapping[str, Any], target_dataset_id: str, since: str | None = None
    ) -> DataEngine:
        """Set the model's flagging policy; flagged predictions go to ``target_dataset_id`` (required, as the server
        requires it: leaving it out is a TypeError naming it here, not a 400 from the server).

        The policy also applies to the predictions already stored (and feedback already
        given) since ``since``: ``"24h"`` by default, a duration (``"7d"``), an RFC 3339
        time, or ``"none"``; the answer's ``backfill`` says how many were flagged."""
        body: dict[str, Any] = {"config": dict(config), "target_dataset_id": target_dataset_id}
        if since is not None:
            body["since"] = since
        return cast(
            DataEngine,
            _record(
                self._request(
                    "PUT",
                    f"/v1/models/{_segment(model_id)}/data-engine",
                    json=body,
                    call="configure_data_engine",
                    safe_to_repeat=True,
                )
            ),
        )

    def check_drift(self, model_id: str, reference_period: str, current_period: str, **options: Any) -> DriftReport:
        """A drift report of ``current_period`` against ``reference_period`` (see :mod:`detwatch.drift`).

        Periods: ``"2024-01-01:2024-01-31"``, an ISO interval ``start/end``, ``"last 24h"``
        or ``"previous 7d"``. ``options``: ``model_version``, ``ab_variant`` and the
        verdict's settings (``alpha``, ``min_ks``, ...). The report has the user guide's
        ``class_drift``, ``confidence_drift``, ``count_drift``, ``significant_drift`` and
        ``affected_classes``, and every test behind them under ``tests``. A drift the data
        cannot measure (too few detections in a period: see ``status``) is NaN, not None, so
        that the guide's ``f"{report['class_drift']:.3f}"`` prints ``nan``.
        """
        body = {"reference_period": reference_period, "current_period": current_period, **options}
        report = _record(
            self._request(
                "POST", f"/v1/models/{_segment(model_id)}/drift", json=body, call="check_drift", safe_to_repeat=True
            )
        )
        return cast(DriftReport, _numbers(report, ("class_drift", "confidence_drift", "count_drift")))

    def get_model_quality(
        self, *, model_id: str, period: str = "7d", model_version: str | None = None, ab_variant: str | None = None
    ) -> QualityReport:
        """Precision, recall, AP50 and AP of the model in production, estimated from reviewed labels.

        ``period``: a window ending now (``"7d"``, ``"24h"``, ``"last 2w"``). Per class
        (``classes``) and ``overall``, each figure is ``{"estimate", "ci", "n_images"}``:
        labelled images weighted by the inverse of the chance the review policy picked
        them, a 95 % bootstrap interval over images, and how many images it rests on.
        ``status`` is ``insufficient_data`` below 30 labelled images; items that only
        feedback flagged are scored apart (``feedback_flagged``). A figure that cannot be
        computed (no detections, no reviewer boxes) is None. ``ab_variant`` (``"a"`` or
        ``"b"``) scores only the items whose prediction was routed to that arm.

        Without labels: ``estimated_precision`` is the expected precision of all the
        period's detections (the calibration applied to their confidences; ``trusted``
        false with a ``reason`` where it cannot be relied on). ``label_free_recall`` has
        ``estimate`` None (a detector's output says nothing of what it missed) and its
        ``reason``, and ``missed_object_feedback``: ``{"count", "predictions", "rate"}``,
        the period's ``missed_object`` feedback posts, the images predicted, and posts
        per image (None without predictions).
        """
        params: dict[str, Any] = {"period": period}
        if model_version is not None:
            params["model_version"] = model_version
        if ab_variant is not None:
            params["ab_variant"] = ab_variant
        return cast(
            QualityReport,
            _record(
                self._request(
                    "GET",
                    f"/v1/models/{_segment(model_id)}/quality",
                    params=params,
                    call="get_model_quality",
                    safe_to_repeat=True,
                )
            ),
        )

    def compare_model_versions(
        self, *, model_id: str, version_a: str, version_b: str, dataset_id: str
    ) -> VersionComparisonReport:
        """Version B against version A on the same labelled images of ``dataset_id``.

        The reviewers' labels are the truth; each version's detections on an image are
        its stored predictions with the image's key. Per class (``classes``) and
        ``overall``, each figure is ``{"a", "b", "difference", "ci"}``: both versions'
        values, ``b - a``, and a 95 % paired bootstrap interval over the images both
        versions predicted (``n_images``; ``status`` is ``insufficient_data`` below 30).
        """
        params = {"version_a": version_a, "version_b": version_b, "dataset_id": dataset_id}
        return cast(
            VersionComparisonReport,
            _record(
                self._request(
                    "GET",
                    f"/v1/models/{_segment(model_id)}/quality/compare",
                    params=params,
                    call="compare_model_versions",
                    safe_to_repeat=True,
                )
            ),
        )

    def get_data_engine(self, model_id: str) -> DataEngine:
        """The model's data-engine policy (``config``) and the effective one with learned ranges (``policy``)."""
        return cast(
            DataEngine,
            _record(self._request("GET", f"/v1/models/{_segment(model_id)}/data-engine", safe_to_repeat=True)),
        )

    def get_flagged_items(
        self, *, dataset_id: str, status: str = "needs_review", limit: int = 100, cursor: str | None = None
    ) -> Page:
        """One page of the review queue, oldest first; ``.next_cursor`` fetches the next (``None`` at the end)."""
        params: dict[str, Any] = {"status": status, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        data = self._request(
            "GET",
            f"/v1/datasets/{_segment(dataset_id)}/items",
            params=params,
            call="get_flagged_items",
            safe_to_repeat=True,
        )
        items = data.get("items", []) if isinstance(data, dict) else data
        next_cursor = data.get("next_cursor") if isinstance(data, dict) else None
        return Page((Record(item) for item in items), next_cursor=next_cursor)

    def claim_items(self, *, dataset_id: str, reviewer: str, limit: int = 10, lease_s: float | None = None) -> Page:
        """Take up to ``limit`` items to review (``in_review``, assigned to ``reviewer``); never given to another."""
        body: dict[str, Any] = {"reviewer": reviewer, "limit": limit}
        if lease_s is not None:
            body["lease_s"] = lease_s
        data = self._request("POST", f"/v1/datasets/{_segment(dataset_id)}/claims", json=body)
        return Page(Record(item) for item in data.get("items", []))

    def label_item(
        self,
        *,
        dataset_id: str,
        item_id: str,
        annotations: Sequence[Mapping[str, Any]],
        reviewer: str | None = None,
    ) -> FlaggedItem:
        """Label an item with its corrected boxes (``[{"class", "box"}]``, xyxy pixels)."""
        body: dict[str, Any] = {"annotations": [dict(a) for a in annotations]}
        if reviewer is not None:
            body["reviewer"] = reviewer
        return cast(
            FlaggedItem,
            _record(
                self._request("POST", f"/v1/datasets/{_segment(dataset_id)}/items/{_segment(item_id)}/label", json=body)
            ),
        )

    def reject_item(self, *, dataset_id: str, item_id: str, reviewer: str | None = None) -> FlaggedItem:
        """Reject an item (it goes into no dataset version)."""
        body = {"reviewer": reviewer} if reviewer is not None else {}
        return cast(
            FlaggedItem,
            _record(
                self._request(
                    "POST", f"/v1/datasets/{_segment(dataset_id)}/items/{_segment(item_id)}/reject", json=body
                )
            ),
        )

    def export_label_studio_tasks(
        self, *, dataset_id: str, status: str = "needs_review", page_size: int = 500
    ) -> LabelStudioTasks:
        """The dataset's items (``status``, or ``"all"``) as Label Studio tasks, ready for its import.

        Every page is fetched; ``.label_config`` is the labeling config the tasks are made for.
        """
        path = f"/v1/datasets/{_segment(dataset_id)}/label-studio/tasks"
        tasks = LabelStudioTasks()
        classes: set[str] = set()
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"status": status, "limit": page_size}
            if cursor is not None:
                params["cursor"] = cursor
            page = _record(
                self._request("GET", path, params=params, call="export_label_studio_tasks", safe_to_repeat=True)
            )
            tasks.extend(cast(list[LabelStudioTask], page.get("tasks", [])))
            classes.update(config_classes(str(page.get("label_config") or labeling_config(()))))
            cursor = page.get("next_cursor")
            if not cursor:
                tasks.label_config = labeling_config(classes)  # every page's classes, in one config
                return tasks

    def import_label_studio_annotations(
        self, *, dataset_id: str, tasks: Sequence[Mapping[str, Any]], reviewer: str | None = None
    ) -> LabelStudioImportResult:
        """Label the items of Label Studio's JSON export (tasks with ``annotations``).

        Each task gets an outcome (``labeled``, ``unchanged``, or ``failed`` with its
        error); a task that fails costs the others nothing. Idempotent, so a failed call
        may be repeated; sent in parts of at most ``MAX_IMPORT_TASKS`` tasks.
        """
        path = f"/v1/datasets/{_segment(dataset_id)}/label-studio/annotations"
        merged: LabelStudioImportResult = {"results": [], "labeled": 0, "unchanged": 0, "failed": 0}
        for start in range(0, len(tasks), MAX_IMPORT_TASKS):
            body: dict[str, Any] = {"tasks": [dict(t) for t in tasks[start : start + MAX_IMPORT_TASKS]]}
            if reviewer is not None:
                body["reviewer"] = reviewer
            part = _record(
                self._request("POST", path, json=body, call="import_label_studio_annotations", safe_to_repeat=True)
            )
            for outcome in part.get("results", []):
                merged["results"].append(
                    cast(LabelStudioTaskOutcome, {**outcome, "index": int(outcome["index"]) + start})
                )
            merged["labeled"] += int(part.get("labeled", 0))
            merged["unchanged"] += int(part.get("unchanged", 0))
            merged["failed"] += int(part.get("failed", 0))
        return merged

    def get_dataset_version(self, *, dataset_id: str, version_id: str) -> DatasetVersion:
        return cast(
            DatasetVersion,
            _record(
                self._request(
                    "GET", f"/v1/datasets/{_segment(dataset_id)}/versions/{_segment(version_id)}", safe_to_repeat=True
                )
            ),
        )

    def export_dataset_version(self, *, dataset_id: str, version_id: str, format: str = "coco") -> Any:
        """COCO: the JSON document (a dict); YOLO: the zip archive's bytes."""
        path = f"/v1/datasets/{_segment(dataset_id)}/versions/{_segment(version_id)}/export"
        url = f"{self.base_url}{path}"
        if format == "coco":
            return self._request("GET", path, params={"format": format}, safe_to_repeat=True)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self.session.get(url, params={"format": format}, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransportError(f"GET {url}: {exc}") from exc
        if not response.ok:
            self._answer(response, "")
        return response.content

    def get_training_job(self, job_id: str) -> TrainingJob:
        return cast(
            TrainingJob, _record(self._request("GET", f"/v1/training-jobs/{_segment(job_id)}", safe_to_repeat=True))
        )

    def create_training_job(
        self,
        *,
        name: str,
        dataset_id: str,
        version_id: str,
        base_model_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        gate: TrainingGate | None = None,
        **settings: Any,
    ) -> TrainingJob:
        """Queue a training job; the trainer's own settings (``epochs=50``, ``model_version=...``, or an
        ``options`` mapping) reach it as the job document's ``options``.

        ``gate={"metric": "ap50", "max_drop": 0.02}`` (metric ``precision``, ``recall``,
        ``ap50`` or ``ap``; ``max_drop`` in [0, 1]) registers the new version only if its
        metric on the base model's labelled images is not worse than the base's by more
        than ``max_drop``; otherwise the job ends ``gated`` with the comparison in
        ``gate_result``. Needs ``base_model_id``.
        """
        body: dict[str, Any] = {
            "name": name,
            "dataset_id": dataset_id,
            "version_id": version_id,
            "base_model_id": base_model_id,
        }
        if gate is not None:
            body["gate"] = dict(gate)
        merged = {**(options or {}), **settings}
        if merged:
            body["options"] = merged
        job = _record(self._request("POST", "/v1/training-jobs", json=body, call="create_training_job"))
        if job.get("warning"):  # e.g. no trainer configured: the job would wait in queued, silently
            _logger.warning("training job %s: %s", job.get("id"), job["warning"])
        return cast(TrainingJob, job)

    def create_ab_test(
        self,
        *,
        name: str,
        model_a_id: str,
        model_b_id: str,
        config: Mapping[str, Any] | None = None,
        start: str | None = None,
    ) -> ABTest:
        """Start an A/B test of ``model_b_id`` (the challenger) against ``model_a_id``; returns it with ``.id``.

        ``config``: ``traffic_split`` (share to B), ``metrics`` (the first decides the
        verdict), ``duration_days``, and optionally ``alpha``, ``min_effect``,
        ``min_samples``, ``model_a_version``/``model_b_version``. ``start`` (RFC 3339)
        back-dates the test to analyse traffic already sent.
        """
        body: dict[str, Any] = {
            "name": name,
            "model_a_id": model_a_id,
            "model_b_id": model_b_id,
            "config": dict(config or {}),
        }
        if start is not None:
            body["start"] = start
        return cast(ABTest, _record(self._request("POST", "/v1/ab-tests", json=body, call="create_ab_test")))

    def get_ab_test(self, ab_test_id: str) -> ABTest:
        """The test with its current ``traffic_split`` and ``salt`` (what a router polls)."""
        return cast(ABTest, _record(self._request("GET", f"/v1/ab-tests/{_segment(ab_test_id)}", safe_to_repeat=True)))

    def list_ab_tests(self) -> list[ABTest]:
        """Every A/B test, newest first."""
        data = self._request("GET", "/v1/ab-tests", safe_to_repeat=True)
        return [cast(ABTest, Record(t)) for t in data.get("ab_tests", [])] if isinstance(data, dict) else []

    def stop_ab_test(self, ab_test_id: str) -> ABTest:
        """End the test now: its results stop at this moment and routers send everything to A."""
        return cast(
            ABTest, _record(self._request("POST", f"/v1/ab-tests/{_segment(ab_test_id)}/stop", safe_to_repeat=True))
        )

    def get_ab_test_results(self, ab_test_id: str) -> ABTestResults:
        """Per-arm results, comparisons, ``p_value`` (always-valid, primary metric) and ``verdict``.

        ``p_value`` and each arm's ``avg_confidence`` are NaN while the data cannot give them
        (no traffic yet: see ``verdict``), so that the guide's formatting prints ``nan``.
        """
        results = _record(
            self._request(
                "GET",
                f"/v1/ab-tests/{_segment(ab_test_id)}/results",
                call="get_ab_test_results",
                safe_to_repeat=True,
            )
        )
        for arm in ("model_a", "model_b"):
            if isinstance(results.get(arm), dict):
                results[arm] = _numbers(Record(results[arm]), ("avg_confidence",))
        return cast(ABTestResults, _numbers(results, ("p_value",)))
