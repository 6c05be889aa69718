"""The item image route's path in the OpenAPI document (merged by :func:`detwatch.api.openapi.openapi_document`)."""

from __future__ import annotations

from typing import Any

from detwatch.api._openapi_paths import NOT_FOUND, READ_ERRORS, answer, operation, path_id
from detwatch.contract.shapes import Error
from detwatch.contract.shapes.images import ImageLocation

__all__ = ["paths"]


def paths() -> dict[str, Any]:
    """``GET /v1/datasets/{dataset_id}/items/{item_id}/image``."""
    return {
        "/v1/datasets/{dataset_id}/items/{item_id}/image": {
            "get": operation(
                "The item's image, when its URI points inside the images root (DETWATCH_IMAGES_ROOT)",
                {
                    "200": {
                        "description": "the image file",
                        "content": {
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "303": answer("the image is at an http(s) URL (Location); the companion does not fetch it",
                                  ImageLocation),
                    "400": answer("the image URI is not valid (a NUL)", Error),
                    "403": answer("the image path leaves the images root ('..', a path or symlink outside)", Error),
                    **NOT_FOUND,
                    **READ_ERRORS,
                },
                parameters=[
                    path_id("dataset_id"),
                    path_id("item_id"),
                    {"name": "sig", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                     "description": "the signature an exported Label Studio task's image URL carries "
                     "(instead of the API token)"},
                ],
                description="Files are served only from the images root, every symlink resolved; any other URI is "
                "refused with the reason (error code image_outside_root, image_not_found, image_not_served, "
                "no_image or image_uri_invalid).",
            )
        }
    }  # fmt: skip
