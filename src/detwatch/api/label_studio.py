"""Label Studio both ways: the routes (a blueprint registered by :func:`detwatch.api.init_app`).

- ``GET /v1/datasets/{id}/label-studio/tasks?status=needs_review&limit=100&cursor=...``:
  the items as Label Studio tasks (:mod:`detwatch.review.label_studio`), with the
  labeling config they are made for and ``next_cursor``; the API token.
- ``POST /v1/datasets/{id}/label-studio/annotations`` ``{"tasks": [...], "reviewer"}``:
  Label Studio's JSON export; labels the matching items, one outcome per task; the API token.
- ``POST /v1/datasets/{id}/label-studio/webhook``: Label Studio's ``ANNOTATION_CREATED`` /
  ``ANNOTATION_UPDATED`` posts label the task's item (other actions are acknowledged and
  ignored). Label Studio cannot send the API token, so with ``DETWATCH_LABEL_STUDIO_SECRET``
  set the webhook takes that secret instead, in the ``X-Detwatch-Secret`` header (Label
  Studio's webhook headers) or in the URL (``?secret=``); without it, the API token rule.
"""

from __future__ import annotations

import hmac
from typing import Any, Final, cast

from flask import Blueprint, Flask, Response, jsonify, request

from detwatch.api._context import bearer_ok, settings, trust_own_authentication
from detwatch.api._lookups import dataset_or_404
from detwatch.api._request import check_shape, object_body
from detwatch.api.errors import APIError
from detwatch.contract.shapes.label_studio import (
    MAX_TASK_PAGE,
    SECRET_HEADER,
    LabelStudioImport,
    LabelStudioImportResult,
    LabelStudioTaskOutcome,
    LabelStudioTaskPage,
    LabelStudioWebhook,
    LabelStudioWebhookResult,
)
from detwatch.contract.textfields import name_problem
from detwatch.review import ITEM_STATUSES, decode_cursor
from detwatch.review.label_studio_sync import (
    DEFAULT_REVIEWER,
    WEBHOOK_ACTIONS,
    TaskOutcome,
    export_tasks,
    import_annotation,
    import_tasks,
)

__all__ = ["bp", "init_app"]

bp = Blueprint("label_studio", __name__, url_prefix="/v1")

_WEBHOOK: Final = "label_studio.label_studio_webhook"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    trust_own_authentication(app, _WEBHOOK)


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == _WEBHOOK and _secret_ok():
        return
    if not bearer_ok():
        raise APIError(401, "unauthorized", "missing or wrong bearer token (or webhook secret)", "Authorization")


def _secret_ok() -> bool:
    secret = settings().label_studio_secret
    if not secret:
        return False
    given = request.headers.get(SECRET_HEADER) or request.args.get("secret") or ""
    return hmac.compare_digest(given.encode(), secret.encode())


@bp.get("/datasets/<dataset_id>/label-studio/tasks")
def label_studio_tasks(dataset_id: str) -> Response:
    status: str | None = request.args.get("status", "needs_review")
    if status == "all":
        status = None
    elif status not in ITEM_STATUSES:
        raise APIError(400, "invalid_field", f"must be one of: {', '.join(ITEM_STATUSES)}, all", "status")
    raw_limit = request.args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_TASK_PAGE:
        raise APIError(400, "invalid_field", f"must be an integer from 1 to {MAX_TASK_PAGE}", "limit")
    cursor = None
    if request.args.get("cursor"):
        try:
            cursor = decode_cursor(request.args["cursor"])
        except ValueError as exc:
            raise APIError(400, "invalid_field", str(exc), "cursor") from None
    engine = dataset_or_404(dataset_id)
    config = settings()
    page = export_tasks(
        engine,
        dataset_id,
        status=status,
        limit=int(raw_limit),
        cursor=cursor,
        images_root=config.effective_images_root,
        public_url=config.public_url,
        signing_key=config.api_token,
    )
    return jsonify(
        cast(
            LabelStudioTaskPage,
            {"tasks": page.tasks, "label_config": page.label_config, "next_cursor": page.next_cursor},
        )
    )


def _outcome_json(outcome: TaskOutcome) -> LabelStudioTaskOutcome:
    out: LabelStudioTaskOutcome = {"index": outcome.index, "item_id": outcome.item_id, "status": outcome.status}
    if outcome.code is not None:
        out["error"] = {"code": outcome.code, "message": outcome.message or outcome.code}
        if outcome.field is not None:
            out["error"]["field"] = outcome.field
    return out


@bp.post("/datasets/<dataset_id>/label-studio/annotations")
def import_label_studio_annotations(dataset_id: str) -> Response:
    data = object_body()
    check_shape(data, LabelStudioImport)  # tasks: a list of objects, at most MAX_IMPORT_TASKS; reviewer: a name
    reviewer = data.get("reviewer", DEFAULT_REVIEWER)
    problem = name_problem(reviewer)
    if problem is not None:
        raise APIError(400, "invalid_field", problem, "reviewer")
    engine = dataset_or_404(dataset_id)
    outcomes = import_tasks(engine, dataset_id, data["tasks"], reviewer=reviewer)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("labeled", "unchanged", "failed")}
    result: LabelStudioImportResult = {
        "results": [_outcome_json(o) for o in outcomes],
        "labeled": counts["labeled"],
        "unchanged": counts["unchanged"],
        "failed": counts["failed"],
    }
    return jsonify(result)


@bp.post("/datasets/<dataset_id>/label-studio/webhook")
def label_studio_webhook(dataset_id: str) -> Response:
    data = object_body()
    check_shape(data, LabelStudioWebhook)
    engine = dataset_or_404(dataset_id)  # the dataset first: what to fix in the body comes after
    action = str(data["action"])
    if action not in WEBHOOK_ACTIONS:
        return jsonify(LabelStudioWebhookResult(action=action, status="ignored", item_id=None))
    task, annotation = data.get("task"), data.get("annotation")
    if task is None:
        raise APIError(400, "invalid_field", "is required", "task")
    if annotation is None:
        raise APIError(400, "invalid_field", "is required", "annotation")
    if annotation.get("was_cancelled"):  # a skipped task: nothing to label
        return jsonify(LabelStudioWebhookResult(action=action, status="ignored", item_id=None))
    outcome = import_annotation(engine, dataset_id, task, annotation, reviewer=DEFAULT_REVIEWER)
    if outcome.status == "failed":
        # A task that names no detwatch item is not one of ours: its item is not found.
        code = "item_not_found" if outcome.code == "invalid_task" else str(outcome.code)
        status = {"item_not_found": 404, "conflict": 409}.get(code, 400)
        raise APIError(status, code, outcome.message or "", _webhook_field(outcome.field))
    answer: Any = LabelStudioWebhookResult(action=action, status=outcome.status, item_id=outcome.item_id)
    return jsonify(answer)


def _webhook_field(field: str | None) -> str | None:
    """A field of the task as the webhook body holds it (``task.meta...``; an annotation's are named already)."""
    if field is None or field.startswith(("annotation", "status", "reviewer")):
        return field
    return f"task.{field}"
