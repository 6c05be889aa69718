"""Shapes of the item image route: where an image is that the companion does not serve itself."""

from __future__ import annotations

from typing import Annotated, TypedDict

import msgspec

__all__ = ["ImageLocation"]


class ImageLocation(TypedDict):
    """The image is at this http(s) URL (also the Location header); the companion does not fetch it."""

    uri: Annotated[str, msgspec.Meta(description="where the image is, as the prediction named it")]
    served: Annotated[bool, msgspec.Meta(description="always false: the companion serves only the images root")]
