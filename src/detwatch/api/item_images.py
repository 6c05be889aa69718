"""``GET /v1/datasets/{id}/items/{item_id}/image``: a flagged item's image, from the images root only.

A reviewer's browser and Label Studio load the image of an item from here. The
companion reads the file only when the item's URI points inside the images root
(``DETWATCH_IMAGES_ROOT``, default the folder sink's ``<data dir>/flagged``); the rules
are :func:`detwatch.review.images.locate_image`'s. An ``http(s)`` URI answers 303 with
the URL in ``Location`` (and in the body), never fetched; a refusal is the API's JSON
error naming the reason.

Authenticated like the other review routes (the companion's bearer token), or by the
URL's own ``sig`` (:func:`detwatch.review.images.image_signature`): the image URLs of
Label Studio tasks carry it, since the reviewer's browser cannot send the token. The file is
sent with ``nosniff`` and a sandboxing Content-Security-Policy: an SVG or HTML file under
the root is shown as an inert document, never run with the companion's origin.
"""

from __future__ import annotations

import mimetypes
from typing import Final

from flask import Blueprint, Flask, Response, jsonify, request, send_file

from detwatch.api._context import settings, trust_own_authentication
from detwatch.api._lookups import image_or_error, item_or_404
from detwatch.api._request import require_token
from detwatch.contract.shapes.images import ImageLocation
from detwatch.review.images import ImageElsewhere, signature_ok

__all__ = ["bp", "init_app"]

bp = Blueprint("item_images", __name__, url_prefix="/v1")
_IMAGE: Final = "item_images.get_item_image"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    trust_own_authentication(app, _IMAGE)


@bp.before_request
def _authenticate() -> None:
    """The API token, or the image URL's own signature (what a task exported for Label Studio carries)."""
    token, given, args = settings().api_token, request.args.get("sig"), request.view_args or {}
    signed = bool(token and given and request.endpoint == _IMAGE)
    if signed and signature_ok(str(token), str(args.get("dataset_id", "")), str(args.get("item_id", "")), str(given)):
        return
    require_token()


@bp.get("/datasets/<dataset_id>/items/<item_id>/image")
def get_item_image(dataset_id: str, item_id: str) -> Response:
    found = image_or_error(item_or_404(dataset_id, item_id))
    if isinstance(found, ImageElsewhere):
        response = jsonify(ImageLocation(uri=found.url, served=False))
        response.status_code = 303
        response.headers["Location"] = found.url
        return response
    kind, _ = mimetypes.guess_type(found.path.name)
    response = send_file(found.path, mimetype=kind or "application/octet-stream", conditional=True, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response
