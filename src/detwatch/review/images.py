"""Where a flagged item's image is, and whether the companion may serve it.

The companion serves an image only from under one configured folder (the images root,
``DETWATCH_IMAGES_ROOT``: where the decorator's folder sink keeps flagged images), never
any other path: an item's URI comes from the inference process's events, which anyone
holding the ingest token can write, so ``file:///etc/passwd`` or ``../../secrets`` must
not be read. The check resolves symbolic links before comparing, so a link inside the
root that points outside it is refused too.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageLocation", "locate_image"]


@dataclass(frozen=True)
class ImageLocation:
    """Either a file the companion may serve (``path``), or why not and where the image is (``reason``)."""

    path: Path | None
    reason: str | None
    uri: str | None


def locate_image(uri: str | None, root: Path | None) -> ImageLocation:
    """The file behind ``uri`` when it is under ``root``; otherwise ``path`` is ``None`` and ``reason`` says why."""
    if not uri:
        return ImageLocation(None, "the prediction named no image URI", uri)
    if "\x00" in uri:
        return ImageLocation(None, "the image URI holds a NUL character", uri)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return ImageLocation(None, "the image is on another server", uri)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        return ImageLocation(None, f"the companion does not read {parts.scheme or 'such'} URIs", uri)
    if root is None:
        return ImageLocation(None, "no images root is configured (DETWATCH_IMAGES_ROOT)", uri)
    raw = urllib.parse.unquote(parts.path) if parts.scheme == "file" else uri
    if "\x00" in raw:
        return ImageLocation(None, "the image URI holds a NUL character", uri)
    base = root.resolve()
    candidate = Path(raw) if Path(raw).is_absolute() else base / raw
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return ImageLocation(None, "no such file under the images root", uri)
    if not resolved.is_relative_to(base) or not resolved.is_file():
        return ImageLocation(None, "the image is outside the images root", uri)
    return ImageLocation(resolved, None, uri)
