"""Deterministic key hashing: the same key gives the same number everywhere.

A/B routing and data-engine sampling are decided from a key (an image key or a
prediction id) instead of a random draw, so that the inference process, every
companion replica and a re-run agree without talking to each other. Python's
``hash()`` is salted per process, so a cryptographic hash is used instead: BLAKE2b
is in the standard library, fast, and its output is uniform.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def unit_interval(key: str | bytes, salt: str = "") -> float:
    """Map ``key`` (with ``salt``) to a float in ``[0, 1)``, uniformly and stably."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    digest = hashlib.blake2b(data, digest_size=8, person=_person(salt)).digest()
    return int.from_bytes(digest, "big") / _SCALE


def _person(salt: str) -> bytes:
    # BLAKE2b's personalisation takes at most 16 bytes; longer salts are hashed down.
    raw = salt.encode("utf-8")
    if len(raw) <= 16:
        return raw
    return hashlib.blake2b(raw, digest_size=16).digest()
