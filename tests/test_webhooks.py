"""Standard Webhooks signatures: the published example, the reference library both ways, refusals.

The reference is the ``standardwebhooks`` package (the spec's own Python library), which
computes signatures independently of ``detwatch.contract.webhooks``; the example vector is the one
its test suite publishes, and is also recomputed here with plain :mod:`hmac`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as ReferenceVerificationError

from detwatch.contract import webhooks
from detwatch.contract.webhooks import (
    WebhookVerificationError,
    idempotency_key,
    parse_secret,
    sign,
    signed_headers,
    verify,
)

# The Standard Webhooks example ("sign function works" in the reference test suite).
EXAMPLE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EXAMPLE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
EXAMPLE_TIMESTAMP = 1614265330
EXAMPLE_BODY = b'{"test": 2432232314}'
EXAMPLE_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
BODY = b'{"type": "false_positive", "prediction_id": "p-1", "reviewer": "ana"}'
NOW = 1_700_000_000


def _hmac_v1(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The spec's signature computed by hand: HMAC-SHA256 over ``id.timestamp.body``, base64."""
    digest = hmac.new(key, webhook_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _headers(
    secret: str = SECRET, body: bytes = BODY, webhook_id: str = "msg_1", timestamp: int = NOW
) -> dict[str, str]:
    return signed_headers(secret, body, webhook_id=webhook_id, timestamp=timestamp)


def _refusal(headers: dict[str, str], body: bytes = BODY, secrets: list[str] | None = None) -> WebhookVerificationError:
    with pytest.raises(WebhookVerificationError) as info:
        verify(headers, body, secrets or [SECRET], now=NOW)
    return info.value


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


# --- the published example -------------------------------------------------------------


def test_the_published_example_is_plain_hmac_sha256_over_id_timestamp_and_body() -> None:
    key = base64.b64decode(EXAMPLE_SECRET.removeprefix("whsec_"))
    assert _hmac_v1(key, EXAMPLE_ID, str(EXAMPLE_TIMESTAMP), EXAMPLE_BODY) == EXAMPLE_SIGNATURE


def test_sign_reproduces_the_published_example() -> None:
    assert sign(EXAMPLE_SECRET, EXAMPLE_ID, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == EXAMPLE_SIGNATURE


def test_the_published_example_verifies_at_its_own_time() -> None:
    headers = {
        "webhook-id": EXAMPLE_ID,
        "webhook-timestamp": str(EXAMPLE_TIMESTAMP),
        "webhook-signature": EXAMPLE_SIGNATURE,
    }
    assert verify(headers, EXAMPLE_BODY, [EXAMPLE_SECRET], now=EXAMPLE_TIMESTAMP) == EXAMPLE_ID


def test_the_reference_library_reproduces_the_published_example() -> None:
    reference = Webhook(EXAMPLE_SECRET).sign(EXAMPLE_ID, _utc(EXAMPLE_TIMESTAMP), EXAMPLE_BODY.decode())
    assert reference == EXAMPLE_SIGNATURE


# --- the reference library, both directions --------------------------------------------

BODIES = [b"", BODY, '{"comment": "caméra 3 — faux positif"}'.encode(), b"line one\nline two\r\n"]


@pytest.mark.parametrize("body", BODIES, ids=["empty", "json", "non-ascii", "newlines"])
@pytest.mark.parametrize("secret", [SECRET, EXAMPLE_SECRET], ids=["32-byte", "24-byte"])
def test_our_signatures_verify_with_the_reference_library(secret: str, body: bytes) -> None:
    headers = signed_headers(secret, body)  # the current time: the reference checks against its own clock
    Webhook(secret).verify(body, headers, json_parse=False)


@pytest.mark.parametrize("body", BODIES, ids=["empty", "json", "non-ascii", "newlines"])
@pytest.mark.parametrize("secret", [SECRET, EXAMPLE_SECRET], ids=["32-byte", "24-byte"])
def test_reference_library_signatures_verify_with_ours(secret: str, body: bytes) -> None:
    signature = Webhook(secret).sign("msg_2Lw4wR0bVf", _utc(NOW), body.decode())
    headers = {"webhook-id": "msg_2Lw4wR0bVf", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert verify(headers, body, [secret], now=NOW) == "msg_2Lw4wR0bVf"
    assert signature == sign(secret, "msg_2Lw4wR0bVf", NOW, body)


def test_a_raw_string_secret_is_its_utf8_bytes_as_the_reference_takes_a_bytes_key() -> None:
    raw = "a-long-shared-string-without-the-prefix"
    assert parse_secret(raw) == raw.encode()
    headers = signed_headers(raw, BODY)
    Webhook(raw.encode()).verify(BODY, headers, json_parse=False)


def test_an_unpadded_whsec_secret_decodes_as_the_reference_decodes_it() -> None:
    unpadded = "whsec_" + base64.b64encode(bytes(range(31))).decode().rstrip("=")
    assert parse_secret(unpadded) == bytes(range(31))
    Webhook(unpadded).verify(BODY, signed_headers(unpadded, BODY), json_parse=False)


@pytest.mark.parametrize(
    "tamper",
    [
        {"webhook-id": "msg_other"},
        {"webhook-signature": "v1," + base64.b64encode(bytes(32)).decode()},
        {"webhook-signature": "v1a," + base64.b64encode(bytes(64)).decode()},
    ],
    ids=["other-id", "wrong-signature", "only-asymmetric"],
)
def test_what_the_reference_library_refuses_we_refuse(tamper: dict[str, str]) -> None:
    now = int(time.time())
    headers = {**signed_headers(SECRET, BODY, webhook_id="msg_1", timestamp=now), **tamper}
    with pytest.raises(ReferenceVerificationError):
        Webhook(SECRET).verify(BODY, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError) as info:
        verify(headers, BODY, [SECRET], now=now)
    assert info.value.reason == "no_matching_signature"


# --- rotation and several signatures ---------------------------------------------------


@pytest.mark.parametrize("signer", [OLD_SECRET, SECRET], ids=["old", "new"])
def test_during_rotation_either_configured_secret_verifies(signer: str) -> None:
    assert verify(_headers(secret=signer), BODY, [OLD_SECRET, SECRET], now=NOW) == "msg_1"


def test_a_sender_signing_with_old_and_new_secrets_verifies_with_either_alone() -> None:
    headers = signed_headers([OLD_SECRET, SECRET], BODY, webhook_id="msg_1", timestamp=NOW)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(headers, BODY, [SECRET], now=NOW) == "msg_1"
    assert verify(headers, BODY, [OLD_SECRET], now=NOW) == "msg_1"
    Webhook(SECRET).verify(BODY, signed_headers([OLD_SECRET, SECRET], BODY), json_parse=False)


def test_a_secret_no_longer_configured_is_refused() -> None:
    assert _refusal(_headers(secret=OLD_SECRET)).reason == "no_matching_signature"


def test_a_single_string_is_taken_as_one_secret_not_as_characters() -> None:
    assert verify(_headers(), BODY, SECRET, now=NOW) == "msg_1"


def test_the_matching_signature_may_stand_anywhere_among_unknown_versions_and_wrong_ones() -> None:
    good = sign(SECRET, "msg_1", NOW, BODY)
    wrong = "v1," + base64.b64encode(bytes(32)).decode()
    entries = [wrong, "v1a," + base64.b64encode(bytes(64)).decode(), "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy", good, wrong]
    headers = {**_headers(), "webhook-signature": " ".join(entries)}
    assert verify(headers, BODY, [SECRET], now=NOW) == "msg_1"


def test_a_malformed_entry_next_to_a_matching_one_does_not_spoil_it() -> None:
    headers = {**_headers(), "webhook-signature": "garbage v1,!!! " + sign(SECRET, "msg_1", NOW, BODY)}
    assert verify(headers, BODY, [SECRET], now=NOW) == "msg_1"


# --- tampering -------------------------------------------------------------------------


def test_a_tampered_body_is_refused() -> None:
    error = _refusal(_headers(), body=BODY.replace(b"ana", b"eve"))
    assert (error.reason, error.header, error.http_status) == ("no_matching_signature", "webhook-signature", 401)


def test_a_tampered_id_is_refused() -> None:
    assert _refusal({**_headers(), "webhook-id": "msg_2"}).reason == "no_matching_signature"


def test_a_tampered_timestamp_within_the_window_is_refused() -> None:
    assert _refusal({**_headers(), "webhook-timestamp": str(NOW + 1)}).reason == "no_matching_signature"


def test_an_id_containing_a_full_stop_is_refused_because_fields_could_shift() -> None:
    # id "msg.X" at T signs the same bytes as id "msg" at X with the body prefixed by "T.".
    error = _refusal({**_headers(), "webhook-id": "msg.1"})
    assert (error.reason, error.header, error.http_status) == ("bad_id", "webhook-id", 400)
    with pytest.raises(ValueError, match=r"'\.'"):
        sign(SECRET, "msg.1", NOW, BODY)


# --- the replay window -----------------------------------------------------------------


@pytest.mark.parametrize("age", [0, 1, 299, 300, -299, -300])
def test_a_timestamp_within_five_minutes_either_way_is_accepted(age: int) -> None:
    assert verify(_headers(timestamp=NOW - age), BODY, [SECRET], now=NOW) == "msg_1"


def test_a_replay_older_than_five_minutes_is_refused() -> None:
    error = _refusal(_headers(timestamp=NOW - 301))
    assert (error.reason, error.header, error.http_status) == ("timestamp_out_of_window", "webhook-timestamp", 401)
    assert "old" in str(error)


def test_a_timestamp_more_than_five_minutes_in_the_future_is_refused() -> None:
    error = _refusal(_headers(timestamp=NOW + 301))
    assert (error.reason, error.header) == ("timestamp_out_of_window", "webhook-timestamp")
    assert "future" in str(error)


def test_the_window_is_checked_against_the_clock_by_default() -> None:
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(_headers(timestamp=int(time.time()) - 3600), BODY, [SECRET])
    assert verify(signed_headers(SECRET, BODY, webhook_id="msg_1"), BODY, [SECRET]) == "msg_1"


def test_the_tolerance_can_be_narrowed() -> None:
    headers = _headers(timestamp=NOW - 61)
    with pytest.raises(WebhookVerificationError) as info:
        verify(headers, BODY, [SECRET], now=NOW, tolerance_s=60)
    assert info.value.reason == "timestamp_out_of_window"
    with pytest.raises(ValueError, match="tolerance_s"):
        verify(headers, BODY, [SECRET], now=NOW, tolerance_s=-1)


# --- malformed requests ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing: str) -> None:
    headers = _headers()
    del headers[missing]
    error = _refusal(headers)
    assert (error.reason, error.header, error.http_status) == ("missing_header", missing, 400)
    assert missing in str(error)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_blank_header_counts_as_missing(missing: str) -> None:
    error = _refusal({**_headers(), missing: "  "})
    assert (error.reason, error.header) == ("missing_header", missing)


def test_header_names_are_case_insensitive() -> None:
    headers = {
        "Webhook-Id": "msg_1",
        "WEBHOOK-TIMESTAMP": str(NOW),
        "Webhook-Signature": sign(SECRET, "msg_1", NOW, BODY),
    }
    assert verify(headers, BODY, [SECRET], now=NOW) == "msg_1"


@pytest.mark.parametrize(
    "value",
    ["hello", f"{NOW}.0", f"-{NOW}", f"0{NOW}", "1e9", "\u0661\u0667\u0660\u0660", "9" * 40],
    ids=["word", "float", "negative", "leading-zero", "exponent", "arabic-digits", "huge"],
)
def test_a_timestamp_that_is_not_integer_seconds_is_refused(value: str) -> None:
    error = _refusal({**_headers(), "webhook-timestamp": value})
    assert (error.reason, error.header, error.http_status) == ("bad_timestamp", "webhook-timestamp", 400)


@pytest.mark.parametrize(
    "value",
    [
        "v1",
        ",abc",
        "v1,",
        "v1,not*base64",
        "v1," + base64.b64encode(bytes(16)).decode(),
        "v1," + base64.b64encode(bytes(32)).decode().rstrip("="),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=é",
    ],
    ids=["no-comma", "no-version", "empty", "not-base64", "short-digest", "unpadded", "non-ascii"],
)
def test_a_malformed_signature_is_refused_as_such(value: str) -> None:
    error = _refusal({**_headers(), "webhook-signature": value})
    assert (error.reason, error.header, error.http_status) == ("malformed_signature", "webhook-signature", 400)


def test_a_header_with_only_other_schemes_has_no_matching_signature() -> None:
    error = _refusal({**_headers(), "webhook-signature": "v1a," + base64.b64encode(bytes(64)).decode()})
    assert error.reason == "no_matching_signature"
    assert "v1," in str(error)


def test_an_error_message_never_reveals_the_expected_signature_or_the_secret() -> None:
    expected = sign(SECRET, "msg_1", NOW, BODY)
    for error in (_refusal(_headers(), body=b"other"), _refusal({**_headers(), "webhook-signature": "v1,xx"})):
        assert expected.removeprefix("v1,") not in str(error)
        assert SECRET.removeprefix("whsec_") not in str(error)
        assert error.reason in repr(error)


# --- constant-time comparison ----------------------------------------------------------


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    wrong = "v1," + base64.b64encode(bytes(32)).decode()
    headers = {**_headers(), "webhook-signature": f"{wrong} {wrong} {wrong}"}
    with pytest.raises(WebhookVerificationError):
        verify(headers, BODY, [OLD_SECRET, SECRET], now=NOW)
    assert len(calls) == 2 * 3  # every configured secret against every v1 signature
    assert all(len(a) == len(b) == 32 for a, b in calls)

    calls.clear()
    assert verify(_headers(), BODY, [SECRET], now=NOW) == "msg_1"
    assert len(calls) == 1


# --- secrets ---------------------------------------------------------------------------


def test_a_whsec_secret_is_its_base64_decoded_key() -> None:
    assert parse_secret(SECRET) == bytes(range(32))


@pytest.mark.parametrize(
    "secret", ["whsec_not*base64", "whsec_abc=def", "whsec_A"], ids=["symbol", "inner-pad", "length"]
)
def test_a_whsec_secret_that_is_not_base64_names_the_problem_without_echoing_it(secret: str) -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        parse_secret(secret)
    assert secret.removeprefix("whsec_") not in str(info.value)


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_===="], ids=["empty", "prefix-only", "padding-only"])
def test_an_empty_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=r"empty|nothing|base64"):
        parse_secret(secret)


def test_an_invalid_configured_secret_or_none_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="base64"):
        verify(_headers(), BODY, [SECRET, "whsec_%%%"], now=NOW)
    with pytest.raises(ValueError, match="no webhook secret"):
        verify(_headers(), BODY, [], now=NOW)


# --- signing ---------------------------------------------------------------------------


def test_signed_headers_default_to_a_fresh_id_and_the_current_time() -> None:
    before = int(time.time())
    first, second = signed_headers(SECRET, BODY), signed_headers(SECRET, BODY)
    assert first["webhook-id"] != second["webhook-id"]
    assert first["webhook-id"].startswith("msg_")
    assert "." not in first["webhook-id"]
    assert before <= int(first["webhook-timestamp"]) <= int(time.time())
    assert verify(first, BODY, [SECRET]) == first["webhook-id"]


def test_a_signature_of_arbitrary_bytes_matches_a_hand_computed_hmac() -> None:
    body = bytes(range(256))
    assert sign(SECRET, "msg_1", NOW, body) == _hmac_v1(bytes(range(32)), "msg_1", str(NOW), body)
    assert verify(_headers(body=body), body, [SECRET], now=NOW) == "msg_1"


@pytest.mark.parametrize("timestamp", [-1, True], ids=["negative", "bool"])
def test_sign_refuses_a_timestamp_that_is_not_unix_seconds(timestamp: int) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        sign(SECRET, "msg_1", timestamp, BODY)


def test_signing_needs_a_secret_and_an_id() -> None:
    with pytest.raises(ValueError, match="no webhook secret"):
        signed_headers([], BODY)
    with pytest.raises(ValueError, match="empty"):
        sign(SECRET, "", NOW, BODY)


# --- idempotency -----------------------------------------------------------------------


def test_the_idempotency_key_header_wins_over_the_webhook_id() -> None:
    assert idempotency_key({"Idempotency-Key": "k-1", "webhook-id": "msg_1"}) == "k-1"


def test_the_webhook_id_is_the_idempotency_key_when_none_is_given() -> None:
    assert idempotency_key({"Webhook-ID": "msg_1"}) == "msg_1"
    assert idempotency_key({"idempotency-key": "  ", "webhook-id": "msg_1"}) == "msg_1"


def test_without_either_header_there_is_no_idempotency_key() -> None:
    assert idempotency_key({"Content-Type": "application/json"}) is None


def test_a_retried_delivery_keeps_its_key_and_still_verifies() -> None:
    first = _headers(timestamp=NOW)
    retry = _headers(timestamp=NOW + 250)  # a later attempt: new timestamp and signature, same id
    assert first["webhook-signature"] != retry["webhook-signature"]
    assert verify(retry, BODY, [SECRET], now=NOW + 250) == verify(first, BODY, [SECRET], now=NOW)
    assert idempotency_key(first) == idempotency_key(retry) == "msg_1"


def test_the_module_exports_what_it_documents() -> None:
    assert set(webhooks.__all__) >= {"WebhookVerificationError", "verify", "sign", "signed_headers", "parse_secret"}
    assert webhooks.DEFAULT_TOLERANCE_S == 300
