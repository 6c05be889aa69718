"""Standard Webhooks signatures for the feedback webhook: verify what comes in, sign what goes out.

``POST /v1/feedback`` accepts, instead of a bearer token, a signature as Standard Webhooks
1.0 defines it (https://www.standardwebhooks.com, spec/standard-webhooks.md). This module
is that scheme and nothing else: standard library only, no Flask, so the service, the
Python client and the tests share one implementation. The spec's rules, as applied here:

- **Headers.** ``webhook-id`` (a unique id, kept across retries), ``webhook-timestamp``
  (integer Unix seconds of this attempt) and ``webhook-signature``. HTTP header names are
  case-insensitive, so the lookup is too.
- **Signed content.** ``{msg_id}.{timestamp}.{payload}``: the id, the timestamp and the raw
  body bytes exactly as received, joined by full stops (re-serialized JSON would not match).
- **Symmetric scheme.** HMAC-SHA256, base64-encoded, prefixed with the signature identifier
  ``v1`` and a comma: ``v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=``.
- **Several signatures.** The header is a space-delimited list, so a sender can sign with
  the old and the new secret during a zero-downtime rotation; the receiver accepts the
  message when any ``v1`` signature matches any configured secret. Other identifiers
  (``v1a`` is the asymmetric ed25519 scheme) are skipped, not refused.
- **Constant-time comparison** (:func:`hmac.compare_digest`), so that verification cannot
  be turned into a signing oracle by timing.
- **Replay window.** The timestamp must lie within a tolerance of the current time; the spec
  leaves the tolerance to the receiver and we use five minutes (300 s), the reference
  libraries' value, in both directions (too old and too far in the future).
- **Idempotency.** The spec recommends the ``webhook-id`` as an idempotency key;
  :func:`idempotency_key` prefers an explicit ``Idempotency-Key`` header (what the Python
  client sends), else the ``webhook-id``, so a retried post counts once.
- **Secrets.** Serialized as ``whsec_`` followed by the base64 key. Because the spec warns
  that a ``.`` in the id would let the fields shift into each other, an id containing one
  is refused, and :func:`sign` will not produce one.

Interpretations, documented because a reader of the spec may expect otherwise:

- A secret *without* the ``whsec_`` prefix is used as its UTF-8 bytes (a raw shared
  string, convenient for ``DETWATCH_WEBHOOK_SECRET=some-long-random-string``). The
  ``standardwebhooks`` reference libraries base64-decode an unprefixed secret instead,
  so a secret copied from a Standard Webhooks sender must keep its ``whsec_`` prefix.
  The base64 of a ``whsec_`` secret may omit its ``=`` padding, as the reference accepts.
- ``webhook-timestamp`` must be a plain non-negative decimal integer without leading zeros
  (the spec's "integer unix timestamp"); the reference library also parses floats and then
  signs the floored value, which would let two header values share one signature.
- When no signature matches and some entry could not be parsed (no comma, a ``v1`` value
  that is not base64 of 32 bytes), the reason is ``malformed_signature`` rather than
  ``no_matching_signature``, to point the sender at its encoding. A malformed entry next
  to a matching one does not spoil the match.

Failures raise :class:`WebhookVerificationError` with a machine-readable ``reason`` and the
``header`` at fault, so the API can answer with a JSON error naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Final, Literal

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "IDEMPOTENCY_KEY_HEADER",
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Reason",
    "WebhookVerificationError",
    "idempotency_key",
    "parse_secret",
    "sign",
    "signed_headers",
    "verify",
]

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
SECRET_PREFIX: Final = "whsec_"
DEFAULT_TOLERANCE_S: Final = 300

_VERSION: Final = "v1"
_DIGEST_SIZE: Final = hashlib.sha256().digest_size
# Unix seconds stay below 10**11 until the year 5138; a bound keeps int() cheap on hostile input.
_MAX_TIMESTAMP_DIGITS: Final = 11

Reason = Literal[
    "missing_header",
    "bad_id",
    "bad_timestamp",
    "timestamp_out_of_window",
    "no_matching_signature",
    "malformed_signature",
]

_BAD_REQUEST: Final[frozenset[str]] = frozenset({"missing_header", "bad_id", "bad_timestamp", "malformed_signature"})


class WebhookVerificationError(Exception):
    """A webhook failed verification: ``reason`` says why, ``header`` names the header at fault.

    ``str(exc)`` is a sentence for the sender; it never contains a secret or an expected
    signature. :attr:`http_status` is 400 for a request that is malformed (a missing or
    unparsable header) and 401 for one that is well formed but not authentic or not fresh.
    """

    def __init__(self, reason: Reason, header: str, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.header = header
        self.message = message

    @property
    def http_status(self) -> int:
        """400 when the request is malformed, 401 when it is not authentic or is stale."""
        return 400 if self.reason in _BAD_REQUEST else 401

    def __repr__(self) -> str:
        return f"WebhookVerificationError(reason={self.reason!r}, header={self.header!r}, message={self.message!r})"


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a configured secret.

    ``whsec_<base64>`` (the Standard Webhooks serialization) gives the decoded bytes;
    any other string is used as its UTF-8 bytes. Raises :class:`ValueError` naming the
    problem (never echoing the secret) for an empty secret or invalid base64.
    """
    if not secret.startswith(SECRET_PREFIX):
        if not secret:
            raise ValueError("webhook secret is empty")
        return secret.encode("utf-8")
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded:
        raise ValueError(f"webhook secret has nothing after the {SECRET_PREFIX!r} prefix")
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"webhook secret starts with {SECRET_PREFIX!r} but the rest is not valid base64 "
            "(a raw string secret must not carry the prefix)"
        ) from None
    if not key:
        raise ValueError(f"webhook secret decodes to an empty key after the {SECRET_PREFIX!r} prefix")
    return key


def _check_id(webhook_id: str) -> None:
    if not webhook_id:
        raise ValueError("webhook id is empty")
    if "." in webhook_id:
        raise ValueError("webhook id must not contain '.' (it delimits the signed content)")


def _signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, content, hashlib.sha256).digest()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` sent as ``webhook_id`` at ``timestamp`` (Unix s)."""
    _check_id(webhook_id)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp must be a non-negative integer of Unix seconds, got {timestamp!r}")
    digest = _signature(parse_secret(secret), webhook_id, str(timestamp), body)
    return f"{_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(
    secret: str | Sequence[str],
    body: bytes,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for posting ``body``.

    ``secret`` may be several secrets (during a rotation): the signature header then
    carries one space-delimited signature per secret. A fresh ``msg_<hex>`` id and the
    current time are used unless given; reuse the id when retrying the same post.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no webhook secret to sign with")
    webhook_id = f"msg_{uuid.uuid4().hex}" if webhook_id is None else webhook_id
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(s, webhook_id, timestamp, body) for s in secrets),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: the exact lowercase key first, else the first match in order."""
    value = headers.get(name.lower())
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _required(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if value is None or not value.strip():
        raise WebhookVerificationError("missing_header", name, f"missing the {name} header")
    return value.strip()


def _parse_timestamp(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_TIMESTAMP_DIGITS or (raw[0] == "0" and raw != "0"):
        raise WebhookVerificationError(
            "bad_timestamp", TIMESTAMP_HEADER, f"{TIMESTAMP_HEADER} must be an integer number of Unix seconds"
        )
    return int(raw)


def _candidates(header: str) -> tuple[list[bytes], int]:
    """The decoded ``v1`` signatures of the header, and how many entries were malformed."""
    found: list[bytes] = []
    malformed = 0
    for entry in header.split():
        version, comma, value = entry.partition(",")
        if not comma or not version:
            malformed += 1
            continue
        if version != _VERSION:
            continue  # another scheme (v1a: ed25519) or a future one: not ours to judge
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            malformed += 1
            continue
        if len(decoded) != _DIGEST_SIZE:
            malformed += 1
            continue
        found.append(decoded)
    return found, malformed


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Verify a Standard Webhooks signature over the raw ``body``; returns the webhook id.

    ``secrets`` are the configured secrets (several during a rotation; a single string is
    taken as one secret); any of them may match any ``v1`` signature in the header.
    ``now`` (Unix seconds) defaults to the current time; a timestamp more than
    ``tolerance_s`` seconds before or after it is refused as a possible replay.
    Raises :class:`WebhookVerificationError`, or :class:`ValueError` when no secret is
    configured or a configured secret is invalid (see :func:`parse_secret`).
    """
    keys = [parse_secret(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if not keys:
        raise ValueError("no webhook secret configured")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must not be negative, got {tolerance_s}")

    webhook_id = _required(headers, ID_HEADER)
    raw_timestamp = _required(headers, TIMESTAMP_HEADER)
    signature_header = _required(headers, SIGNATURE_HEADER)

    if "." in webhook_id:
        raise WebhookVerificationError("bad_id", ID_HEADER, f"{ID_HEADER} must not contain '.'")
    timestamp = _parse_timestamp(raw_timestamp)
    current = time.time() if now is None else now
    if current - timestamp > tolerance_s:
        raise WebhookVerificationError(
            "timestamp_out_of_window", TIMESTAMP_HEADER, f"{TIMESTAMP_HEADER} is more than {tolerance_s} s old"
        )
    if timestamp - current > tolerance_s:
        raise WebhookVerificationError(
            "timestamp_out_of_window",
            TIMESTAMP_HEADER,
            f"{TIMESTAMP_HEADER} is more than {tolerance_s} s in the future",
        )

    candidates, malformed = _candidates(signature_header)
    for key in keys:
        expected = _signature(key, webhook_id, raw_timestamp, body)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return webhook_id
    if malformed:
        raise WebhookVerificationError(
            "malformed_signature",
            SIGNATURE_HEADER,
            f"{SIGNATURE_HEADER} has {malformed} malformed entr{'y' if malformed == 1 else 'ies'} "
            f"(expected space-separated '{_VERSION},<base64 of the HMAC-SHA256>') and no matching signature",
        )
    if not candidates:
        raise WebhookVerificationError(
            "no_matching_signature", SIGNATURE_HEADER, f"{SIGNATURE_HEADER} has no '{_VERSION},' signature"
        )
    raise WebhookVerificationError(
        "no_matching_signature", SIGNATURE_HEADER, f"no signature in {SIGNATURE_HEADER} matches a configured secret"
    )


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The key that makes a retried post count once: ``Idempotency-Key``, else ``webhook-id``.

    Header names are matched case-insensitively; a blank value counts as absent.
    """
    for name in (IDEMPOTENCY_KEY_HEADER, ID_HEADER):
        value = _header(headers, name)
        if value is not None and value.strip():
            return value.strip()
    return None
