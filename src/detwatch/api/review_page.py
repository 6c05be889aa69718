"""``/review``: the review page, where a person labels flagged items in the browser.

Server-rendered (Flask templates and one plain script, no front-end build), on the
existing review queue: the page claims the next item for the signed-in reviewer
(:meth:`~detwatch.review.DataEngineStore.next_for`), shows the kept image with the
model's boxes, why it was flagged and the feedback already joined, and submits the
label through the same store the ``/v1`` label route uses, with one feedback item per
box the reviewer acted on (``correct``, ``wrong_label``, ``wrong_box``,
``false_positive``, ``missed_object``).

Why it authenticates differently from ``/v1``: a reviewer is a person with a browser,
not a program holding the API token. Reviewers are listed in the settings, each with
a token; signing in puts their name in Flask's signed session cookie (HttpOnly,
SameSite=Strict, path ``/review``), and every form and script post carries a CSRF
token kept in that session. The session also keeps a digest of the token it was
opened with, so removing a reviewer or changing their token ends their sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Final

from flask import (
    Blueprint,
    Flask,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from detwatch.api._context import app_settings, get_storage, review_store, settings
from detwatch.api._lookups import image_or_error, item_or_404
from detwatch.api.errors import APIError
from detwatch.config import Reviewer, Settings
from detwatch.contract.feedback import FeedbackInput, parse_feedback
from detwatch.contract.predictions import PredictionError, parse_box
from detwatch.contract.textfields import name_problem
from detwatch.review import ConflictError
from detwatch.review.documents import suggested_label
from detwatch.review.images import ImageElsewhere, ImageRefused, locate_image
from detwatch.storage.records import FlaggedItemRecord

__all__ = ["bp", "init_app"]

bp = Blueprint("review_page", __name__, url_prefix="/review", template_folder="templates", static_folder="static")

LEASE_S: Final = 30 * 60.0
"""How long a reviewer holds the item on their screen before it goes back to the queue."""
MAX_SKIPPED: Final = 200
"""Items a session remembers as skipped, per dataset (the cookie stays small)."""
_CSRF_HEADER: Final = "X-CSRF-Token"


def init_app(app: Flask) -> None:
    """Register the page and set up the session cookie it signs reviewers in with."""
    resolved = app_settings(app)
    app.secret_key = _session_key(resolved)
    app.config.update(
        SESSION_COOKIE_NAME="detwatch_review",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/review",
        SESSION_COOKIE_SECURE=bool(resolved.public_url and resolved.public_url.startswith("https://")),
    )
    app.register_blueprint(bp)


def _session_key(resolved: Settings) -> bytes:
    """The configured secret, else one derived from the reviewers' tokens (the same on every replica)."""
    if resolved.session_secret:
        return resolved.session_secret.encode()
    if resolved.reviewers:
        material = "\n".join(sorted(r.token for r in resolved.reviewers))
        return hashlib.sha256(b"detwatch review session\n" + material.encode()).digest()
    return secrets.token_bytes(32)  # nobody can sign in: nothing to share between replicas


def _digest(token: str) -> str:
    return hashlib.sha256(b"detwatch reviewer\n" + token.encode()).hexdigest()[:32]


def _reviewer() -> Reviewer | None:
    """The signed-in reviewer, if their session is still valid under today's settings."""
    name, digest = session.get("reviewer"), session.get("token_digest")
    for reviewer in settings().reviewers:
        if reviewer.name == name and isinstance(digest, str) and hmac.compare_digest(digest, _digest(reviewer.token)):
            return reviewer
    return None


def _csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _check_csrf() -> None:
    sent = request.headers.get(_CSRF_HEADER) or request.form.get("csrf_token") or ""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise APIError(
            403, "csrf_failed", "the form is stale or was not sent by the review page: reload it", "csrf_token"
        )


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    return response


# ------------------------------------------------------------------ signing in


def _sign_in_page(error: str | None) -> str:
    configured = bool(settings().reviewers)
    return render_template("review/sign_in.html", csrf_token=_csrf_token(), configured=configured, error=error)


@bp.get("/sign-in")
def sign_in_form() -> str:
    return _sign_in_page(None)


@bp.post("/sign-in")
def sign_in() -> BaseResponse | tuple[str, int]:
    _check_csrf()
    given = request.form.get("token", "")
    found = next(
        (r for r in settings().reviewers if hmac.compare_digest(given.encode(), r.token.encode())),
        None,
    )
    if found is None:
        page = render_template(
            "review/sign_in.html",
            csrf_token=_csrf_token(),
            configured=bool(settings().reviewers),
            error="unknown token",
        )
        return page, 401
    session.clear()
    session["reviewer"] = found.name
    session["token_digest"] = _digest(found.token)
    session["csrf"] = secrets.token_urlsafe(32)  # a new session, a new token
    target = request.form.get("next", "")
    return redirect(target if target.startswith("/review/") and "//" not in target else url_for(".datasets"))


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    _check_csrf()
    session.clear()
    return redirect(url_for(".sign_in_form"))


def _signed_in() -> Reviewer:
    reviewer = _reviewer()
    if reviewer is None:
        raise _SignIn()
    return reviewer


class _SignIn(Exception):
    """The request needs a signed-in reviewer: pages redirect to the sign-in form, scripts get a 401."""


@bp.errorhandler(_SignIn)
def _to_sign_in(_exc: _SignIn) -> BaseResponse | tuple[Response, int]:
    if request.method == "GET" and not request.path.endswith("/image"):
        return redirect(url_for(".sign_in_form", next=request.path))
    return jsonify({"error": {"code": "unauthorized", "message": "sign in again", "field": "session"}}), 401


# ------------------------------------------------------------------ pages


@bp.get("")
@bp.get("/")
def datasets() -> str:
    reviewer = _signed_in()
    storage = get_storage()
    targets: dict[str, list[str]] = {}
    for model in storage.list_models():
        policy = storage.get_flag_policy(model.id)
        if policy is not None:
            targets.setdefault(policy.target_dataset_id, []).append(model.id)
    rows = []
    for dataset_id, models in sorted(targets.items()):
        dataset = storage.get_dataset(dataset_id)
        if dataset is not None:
            rows.append({"dataset": dataset, "models": models, "progress": storage.review_progress(dataset_id)})
    return render_template("review/datasets.html", reviewer=reviewer, rows=rows, csrf_token=_csrf_token())


@bp.get("/<dataset_id>")
def next_item(dataset_id: str) -> str | tuple[str, int]:
    reviewer = _signed_in()
    engine = review_store()
    if not engine.dataset_exists(dataset_id):
        return render_template(
            "review/missing.html", reviewer=reviewer, dataset_id=dataset_id, csrf_token=_csrf_token()
        ), 404
    skipped = _skipped(dataset_id)
    item = engine.next_for(dataset_id, reviewer=reviewer.name, lease_s=LEASE_S, skip=skipped)
    progress = engine.progress(dataset_id)
    if item is None:
        return render_template(
            "review/empty.html",
            reviewer=reviewer,
            dataset_id=dataset_id,
            progress=progress,
            skipped=len(skipped),
            csrf_token=_csrf_token(),
        )
    return render_template(
        "review/item.html",
        reviewer=reviewer,
        item=item,
        progress=progress,
        page=_page_data(item),
        image=_image_view(item),
        csrf_token=_csrf_token(),
    )


def _skipped(dataset_id: str) -> list[str]:
    skipped = session.get("skipped")
    if not isinstance(skipped, dict):
        return []
    found = skipped.get(dataset_id)
    return [s for s in found if isinstance(s, str)] if isinstance(found, list) else []


def _page_data(item: FlaggedItemRecord) -> dict[str, Any]:
    """What the script reads (a JSON island): the boxes, the classes to choose from, the image size."""
    classes = {str(d.get("class")) for d in item.detections}
    classes.update(f.corrected_class for f in item.feedback if f.corrected_class)
    dataset = get_storage().get_dataset(item.dataset_id)
    if dataset is not None:
        snapshot = get_storage().get_dataset_snapshot(item.dataset_id, dataset.version.id)
        if snapshot is not None:
            classes.update(snapshot.class_counts)
    return {
        "item_id": item.id,
        "dataset_id": item.dataset_id,
        "detections": [
            {"class": d.get("class"), "confidence": d.get("confidence"), "box": list(d.get("box", []))}
            for d in item.detections
        ],
        "suggested": suggested_label(item.detections, item.feedback),
        "classes": sorted(classes),
        "width": item.image.width,
        "height": item.image.height,
        "submit_url": url_for(".submit", dataset_id=item.dataset_id, item_id=item.id),
        "next_url": url_for(".next_item", dataset_id=item.dataset_id),
    }


def _image_view(item: FlaggedItemRecord) -> dict[str, Any]:
    """Whether the page shows the image (served from the images root) or says where it is, and why."""
    try:
        found = locate_image(item.image.uri, settings().effective_images_root)
    except ImageRefused as exc:
        return {"served": False, "reason": exc.reason, "uri": item.image.uri}
    if isinstance(found, ImageElsewhere):
        # Not loaded into the reviewer's browser from whatever host an event named.
        return {"served": False, "reason": "the image is on another server", "uri": found.url}
    return {"served": True, "reason": None, "uri": item.image.uri}


@bp.get("/<dataset_id>/items/<item_id>/image")
def image(dataset_id: str, item_id: str) -> Response:
    _signed_in()
    found = image_or_error(item_or_404(dataset_id, item_id))
    if isinstance(found, ImageElsewhere):
        raise APIError(404, "image_not_served", f"the image is at {found.url}", "image.uri")
    response = send_file(found.path, max_age=0, conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# ------------------------------------------------------------------ submitting


@bp.post("/<dataset_id>/items/<item_id>")
def submit(dataset_id: str, item_id: str) -> Response:
    """``{"action": "label" | "reject" | "skip", "annotations": [...], "feedback": [...]}`` from the page's script."""
    reviewer = _signed_in()
    _check_csrf()
    data = request.get_json(silent=True)
    if not isinstance(data, Mapping):
        raise APIError(400, "invalid_json", "expected a JSON object", "body")
    action = data.get("action")
    engine = review_store()
    item = engine.get_item(dataset_id, item_id)
    if item is None:
        raise APIError(404, "item_not_found", f"no item {item_id!r} in dataset {dataset_id!r}", "item_id")
    if item.status == "in_review" and item.assignee != reviewer.name:
        raise APIError(409, "conflict", f"the item is in review by {item.assignee!r}", "reviewer")
    next_url = url_for(".next_item", dataset_id=dataset_id)
    if action == "skip":
        engine.skip_item(dataset_id, item_id, reviewer=reviewer.name)
        _remember_skip(dataset_id, item_id)
        return jsonify({"next": next_url})
    if action not in ("label", "reject"):
        raise APIError(400, "invalid_field", "must be label, reject or skip", "action")
    annotations = _annotations(data.get("annotations")) if action == "label" else None
    feedback = _feedback(data.get("feedback"), item, reviewer.name) if action == "label" else []
    try:
        engine.review_item(
            dataset_id,
            item_id,
            outcome="labeled" if action == "label" else "rejected",
            annotations=annotations,
            reviewer=reviewer.name,
        )
    except ConflictError as exc:
        raise APIError(409, "conflict", str(exc), exc.field) from None
    if feedback:
        get_storage().add_feedback(feedback)
    return jsonify({"next": next_url, "feedback": len(feedback)})


def _remember_skip(dataset_id: str, item_id: str) -> None:
    skipped = session.get("skipped")
    if not isinstance(skipped, dict):
        skipped = {}
    mine = [s for s in skipped.get(dataset_id, []) if isinstance(s, str) and s != item_id]
    skipped[dataset_id] = [*mine, item_id][-MAX_SKIPPED:]
    session["skipped"] = skipped


def _annotations(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > 1000:
        raise APIError(400, "invalid_field", "expected a list of at most 1000 {class, box}", "annotations")
    out = []
    for i, annotation in enumerate(raw):
        where = f"annotations[{i}]"
        if not isinstance(annotation, Mapping):
            raise APIError(400, "invalid_field", "expected {class, box}", where)
        name = annotation.get("class")
        if not isinstance(name, str) or not name or len(name) > 256 or name_problem(name):
            raise APIError(400, "invalid_field", "must be a name of at most 256 characters", f"{where}.class")
        try:
            box = parse_box(annotation.get("box"), f"{where}.box")
        except PredictionError as exc:
            raise APIError(400, "invalid_field", exc.message, exc.field) from None
        out.append({"class": name, "box": list(box)})
    return out


def _feedback(raw: Any, item: FlaggedItemRecord, reviewer: str) -> list[FeedbackInput]:
    """The page's per-box actions as feedback on the item's prediction, validated as ``POST /v1/feedback`` does."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 1000:
        raise APIError(400, "invalid_field", "expected a list of at most 1000 feedback items", "feedback")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise APIError(400, "invalid_field", "expected a feedback object", f"feedback[{i}]")
        index = entry.get("detection_index")
        if index is not None and not (isinstance(index, int) and 0 <= index < len(item.detections)):
            raise APIError(400, "invalid_field", "names no detection of the item", f"feedback[{i}].detection_index")
        body = {**entry, "prediction_id": item.prediction_id, "reviewer": reviewer}
        try:
            # A key per item and box: a submit the browser retries records each item once.
            key = f"review:{item.id}:{entry.get('type')}:{index if index is not None else 'new'}:{i}"
            out.append(parse_feedback(body, idempotency_key=key))
        except PredictionError as exc:
            raise APIError(400, "invalid_field", exc.message, f"feedback[{i}].{exc.field}") from None
    return out
