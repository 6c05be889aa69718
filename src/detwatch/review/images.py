"""Where a flagged item's image is, and whether the companion may serve it from disk.

The inference process keeps the images it selects (``DataEngine`` with a folder sink
writes ``file://`` URIs) and the event carries only the URI. The companion serves such
an image, to a reviewer's browser or to Label Studio, when and only when the file lies
under one configured folder, the images root (``DETWATCH_IMAGES_ROOT``): the URI comes
from whoever sent the prediction, so without that rule ``GET .../image`` would read any
file the companion can (``file:///etc/passwd``, ``../../.ssh/id_rsa``).

:func:`locate_image` decides, without touching Flask:

- ``file://`` URIs (host empty or ``localhost``, percent-decoded), absolute paths, and
  relative paths (taken under the root) are served when the file, with every symlink
  resolved, is a regular file inside the resolved root;
- ``http://`` and ``https://`` URIs are elsewhere: the answer says where, and nothing
  is fetched (the companion does not become a proxy to whatever a URI names);
- anything else is refused, with the reason: a NUL, a ``..`` segment (refused even when
  it would resolve inside, so that no rule depends on the disk's state), a path or a
  symlink leading outside the root, another scheme or host, no URI at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal

__all__ = [
    "STATUS",
    "ImageElsewhere",
    "ImageFile",
    "ImageRefused",
    "RefusalCode",
    "browser_url",
    "image_signature",
    "locate_image",
    "signature_ok",
]

RefusalCode = Literal["no_image", "image_uri_invalid", "image_outside_root", "image_not_found", "image_not_served"]


@dataclass(frozen=True)
class ImageFile:
    """The image is this regular file, inside the images root (symlinks resolved)."""

    path: Path


@dataclass(frozen=True)
class ImageElsewhere:
    """The image is at an ``http(s)`` URL a browser can open; the companion does not fetch it."""

    url: str


class ImageRefused(Exception):
    """The companion will not serve this image; ``code`` and ``reason`` say why (a 4xx of the API)."""

    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(reason)
        self.code: RefusalCode = code
        self.reason = reason


STATUS: Final[dict[RefusalCode, int]] = {
    "no_image": 404,
    "image_uri_invalid": 400,
    "image_outside_root": 403,
    "image_not_found": 404,
    "image_not_served": 404,
}
"""The HTTP status of each refusal (the route's; kept beside the codes so that they change together)."""


def _path_of(uri: str) -> str:
    """The file path a ``file://`` URI, an absolute path or a relative one names (still unresolved)."""
    if "\x00" in uri:
        raise ImageRefused("image_uri_invalid", "the image URI holds a NUL character")
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ImageRefused("image_not_served", f"the image is on another host ({parts.netloc!r})")
        if parts.query or parts.fragment:
            raise ImageRefused("image_uri_invalid", "a file URI with a query or fragment names no file")
        path = urllib.parse.unquote(parts.path, errors="strict")
    elif scheme and len(scheme) > 1:  # "c:/x" is a Windows drive, not a scheme; refused below as absolute
        raise ImageRefused("image_not_served", f"the companion serves no {scheme}: URI (the image is at {uri})")
    else:
        path = uri
    if "\x00" in path:
        raise ImageRefused("image_uri_invalid", "the image path holds a NUL character (percent-encoded)")
    if ".." in PurePosixPath(path).parts or ".." in path.split("\\"):
        raise ImageRefused("image_outside_root", "the image path holds a '..' segment")
    return path


def locate_image(uri: str | None, root: Path) -> ImageFile | ImageElsewhere:
    """Where the image of ``uri`` is, under ``root`` or at an ``http(s)`` URL; :class:`ImageRefused` otherwise."""
    if not uri:
        raise ImageRefused("no_image", "the item carries no image URI")
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "\x00" not in uri else ""
    if scheme in ("http", "https"):
        return ImageElsewhere(uri)
    path = _path_of(uri)
    base = root.resolve()
    candidate = Path(path) if os.path.isabs(path) else base / path
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        if not _inside(candidate.absolute(), base):
            raise ImageRefused("image_outside_root", "the image path lies outside the images root") from None
        raise ImageRefused("image_not_found", "no image file at that path under the images root") from None
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        raise ImageRefused("image_not_found", "the image path does not resolve to a file") from None
    if not _inside(resolved, base):
        reason = (
            "a symlink leads outside the images root"
            if _inside(candidate.absolute(), base)
            else ("the image path lies outside the images root")
        )
        raise ImageRefused("image_outside_root", reason)
    if not resolved.is_file():
        raise ImageRefused("image_not_found", "the image path is not a regular file")
    return ImageFile(resolved)


def _inside(path: Path, base: Path) -> bool:
    return path == base or path.is_relative_to(base)


def image_signature(key: str, dataset_id: str, item_id: str) -> str:
    """The ``sig`` that lets a browser without the API token load one item's image (HMAC-SHA256, hex).

    Label Studio loads ``data.image`` in the reviewer's browser, which cannot send the
    companion's bearer token; the URL carries this signature instead. Keyed by the API
    token, so it is worth nothing without it and stops working when the token changes;
    it opens that one image and nothing else. The parts are length-prefixed, so that
    ids with a ``/`` cannot be shifted from one to the other.
    """
    message = f"detwatch.image:{len(dataset_id)}:{dataset_id}:{len(item_id)}:{item_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signature_ok(key: str, dataset_id: str, item_id: str, given: str) -> bool:
    """Whether ``given`` is :func:`image_signature` of the item (compared in constant time)."""
    return hmac.compare_digest(given.encode(), image_signature(key, dataset_id, item_id).encode())


def browser_url(
    uri: str | None,
    *,
    dataset_id: str,
    item_id: str,
    root: Path,
    public_url: str | None,
    signing_key: str | None = None,
) -> str | None:
    """A URL a reviewer's browser (or Label Studio) opens the item's image at, or ``None`` when there is none.

    An ``http(s)`` URI is that URL; a file the companion serves (:func:`locate_image`) is
    its image route under the configured public URL, never under a request's Host (who
    sends the request would choose where reviewers' browsers go), signed with
    ``signing_key`` (the API token, when one is set) so that the browser needs no token.
    """
    try:
        found = locate_image(uri, root)
    except ImageRefused:
        return None
    if isinstance(found, ImageElsewhere):
        return found.url
    if public_url is None:
        return None
    quoted = urllib.parse.quote
    url = f"{public_url}/v1/datasets/{quoted(dataset_id, safe='')}/items/{quoted(item_id, safe='')}/image"
    if signing_key:
        url += f"?sig={image_signature(signing_key, dataset_id, item_id)}"
    return url
