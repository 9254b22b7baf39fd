"""Redaction: no token, signed URL or full phone number in logs or messages."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote, quote_plus, unquote_plus

import pytest
from callbridge.capabilities import RateBucket
from callbridge.errors import AppError
from callbridge.http import Credentials, RetryPolicy
from callbridge.ratelimit import LimiterRegistry
from callbridge.redact import (
    MAX_SECRETS,
    RedactingFilter,
    forget_secret,
    install_log_redaction,
    mask_number,
    redact,
    register_secret,
    secret_count,
)

from tests import test_http
from tests.test_http import Server, make_client

_server = test_http._server
server = test_http.server


@pytest.mark.parametrize(("text", "expected"), [
    ("from +12125550142", "from +*******0142"),
    ("from +1 212-555-0142", "from +* ***-***-0142"),
    ("from (212) 555-0142", "from (***) ***-0142"),
    ("from 2125550142", "from ******0142"),
    ("from 020 7946 0123", "from *** **** 0123"),
    ("?query=%2B12125550142&fields=id", "?query=%2B*******0142&fields=id"),
    ("?query=%2B1%20212%20555%200142", "?query=%2B*%20***%20***%200142"),
    ("?q=+1+212+555+0142", "?q=+*+***+***+0142"),
])
def test_phone_numbers_keep_only_their_last_four_digits(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "at 2026-11-22 11:42:48", "GET /api/v4/contacts.json", "host 192.168.100.200",
    "took 0.25s, 3 attempts", "extension 1234",
    "event 3f2a1b4c-1234-5678-9abc-def012345678", "marker 8237461923abcdef"])
def test_dates_addresses_ids_and_small_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("Authorization: Bearer abc.DEF-123", "Authorization: [redacted]"),
    ("sent Bearer abc.DEF-123 to", "sent Bearer [redacted] to"),
    ("{'authorization': 'Basic dXNlcjpwYXNz'}", "{'authorization': '[redacted]'}"),
    ("X-Api-Key: k-123456", "X-Api-Key: [redacted]"),
    ("grant_type=refresh_token&refresh_token=rt-1&client_secret=cs-1",
     "grant_type=refresh_token&refresh_token=[redacted]&client_secret=[redacted]"),
    ('{"access_token": "at-1", "expires_in": 3600}',
     '{"access_token": "[redacted]", "expires_in": 3600}'),
    ("callback?code=abc123&state=xyz", "callback?code=[redacted]&state=xyz"),
    ("PUT https://bucket.s3.amazonaws.com/fax.pdf?X-Amz-Credential=AKIA&X-Amz-Signature=ff01 ok",
     "PUT https://bucket.s3.amazonaws.com/fax.pdf?[redacted] ok"),
    ("https://files.example.com/u/1?sig=abc&exp=1", "https://files.example.com/u/1?[redacted]"),
])
def test_credentials_and_signed_queries_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_registered_secret_is_masked_raw_and_url_encoded() -> None:
    secret = "opaque/Secret+value=="
    register_secret(secret)
    text = f"a {secret} b {quote(secret, safe='')} c {quote_plus(secret)}"
    assert redact(text) == "a [redacted] b [redacted] c [redacted]"


def test_refreshed_tokens_of_a_connection_do_not_pile_up() -> None:
    before = secret_count()
    for n in range(500):  # a year of hourly refreshes, compressed
        register_secret(f"access-token-{n:06d}-xyz", slot="test:pile-up:access")
    assert secret_count() - before <= 2
    assert redact("Bearer-less access-token-000499-xyz") == "Bearer-less [redacted]"
    assert redact("old access-token-000001-xyz") == "old access-token-000001-xyz"
    forget_secret("test:pile-up:access")
    assert secret_count() == before


def test_unslotted_secrets_are_bounded() -> None:
    def key(n: int) -> str:  # letters only: digits would read as a phone number
        return "apikey-" + "".join(chr(ord("a") + int(d)) for d in f"{n:06d}")

    for n in range(MAX_SECRETS + 50):
        register_secret(key(n))
    assert secret_count() <= MAX_SECRETS + 2 * 50  # plus whatever slots other tests left
    assert redact(key(0)) == key(0)  # the oldest is forgotten
    assert redact(key(MAX_SECRETS + 49)) == "[redacted]"


def test_mask_number_is_the_phones_one() -> None:
    assert mask_number("+12125550142") == "+*******0142"


def test_the_filter_redacts_the_message_with_its_arguments() -> None:
    record = logging.LogRecord("callbridge.x", logging.INFO, __file__, 1,
                               "calling %s with %s", ("+12125550142", "Bearer tok-123"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "calling +*******0142 with Bearer [redacted]"


def test_the_filter_redacts_a_logged_traceback() -> None:
    try:
        raise ValueError("number +12125550142")
    except ValueError:
        import sys

        record = logging.LogRecord("callbridge.x", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    RedactingFilter().filter(record)
    assert record.exc_text is not None
    assert "2125550142" not in record.exc_text
    assert "+*******0142" in record.exc_text


def test_installing_twice_adds_one_filter() -> None:
    install_log_redaction()
    install_log_redaction()
    filters = logging.getLogger("httpx2").filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


# --- the canary -----------------------------------------------------------------------

TOKEN = "SENTINEL/tok+7f3a9c0d=="
NUMBER = "+12125550142"


def leaked_forms() -> list[str]:
    return [TOKEN, quote(TOKEN, safe=""), quote_plus(TOKEN), quote(TOKEN), "tok+7f3a9c0d",
            "tok%2B7f3a9c0d", "7f3a9c0d", "2125550142"]


async def test_no_sentinel_token_or_number_reaches_a_log_or_an_error(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "callbridge", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    limiters = LimiterRegistry()
    bucket = RateBucket(name="api", requests=100, per_seconds=1)
    # The token also as the value of an ordinary parameter name.
    params = {"query": NUMBER, "api_key": TOKEN, "cursor": TOKEN, "note": f"call {NUMBER}"}
    messages: list[str] = []
    server.faults.fail_next = [503, 429]
    async with make_client(server.url, credentials=Credentials(token=TOKEN), buckets=(bucket,),
                           limiters=limiters,
                           retry=RetryPolicy(attempts=3, base_delay=0.01)) as c:
        await c.get("/records", params=params)  # retried after the 503 and the 429: logged
        for path in ("/status/422", "/status/404", "/status/500", "/records"):
            if path == "/records":
                server.faults.fail_next = ["drop_after"]
            try:
                await c.post(path, params=params, json={"phone": NUMBER})
            except AppError as exc:
                messages.append(str(exc))
                messages.append(repr(exc))
    assert len(messages) == 8  # four failures, each seen as str and repr
    dump = json.dumps(limiters.snapshot())
    seen = "\n".join([caplog.text, *messages, dump])
    assert "HTTP Request: GET" in caplog.text  # httpx2's own INFO line was captured
    assert "[redacted]" in caplog.text
    for form in leaked_forms():
        assert form not in seen, form


@pytest.mark.parametrize("region", ["US", "CA", "GB", "AU", "DE", "FR", "IE", "NZ", "IN", "BR"])
@pytest.mark.parametrize("style", ["E164", "INTERNATIONAL", "NATIONAL"])
def test_every_written_form_of_a_number_is_masked(region: str, style: str) -> None:
    import phonenumbers

    number = phonenumbers.example_number_for_type(region,
                                                  phonenumbers.PhoneNumberType.MOBILE)
    written = phonenumbers.format_number(number, getattr(phonenumbers.PhoneNumberFormat, style))
    digits = str(number.national_number)
    for text in (f"from {written} today", f"?q={quote(written, safe='')}&x=1",
                 f"?q={quote_plus(written)}"):
        shown = "".join(ch for ch in unquote_plus(redact(text)) if ch.isdigit() or ch == "*")
        assert digits not in shown
        assert digits[-4:] in shown  # the last 4 stay, so a person can tell calls apart


def _letters(n: int, width: int = 6) -> str:  # letters only: digits would read as a phone number
    return "".join(chr(ord("a") + int(d)) for d in f"{n:0{width}d}")


def test_tokens_registered_one_by_one_cost_a_logarithmic_number_of_compiles() -> None:
    """A thousand connections each registering a token, then redacting a message with it."""
    from callbridge import redact as module

    before = module.compiled_forms_total
    count = 1000
    for n in range(count):
        token = f"conn-token-{_letters(n)}"
        register_secret(token, slot=f"test:many:{n}")
        assert redact(f"GET /contacts failed for {token}") == "GET /contacts failed for [redacted]"
    compiled = module.compiled_forms_total - before
    # Each token has up to three forms. Compiling one pattern of every form after each
    # registration would compile about 3 * count * count / 2 = 1,500,000 forms.
    assert compiled < 3 * count * 14 + 3 * len(module._live) * 2
    for n in range(count):
        forget_secret(f"test:many:{n}")


def test_a_secret_containing_one_registered_earlier_is_masked_whole() -> None:
    inner = "inner-" + _letters(424242)
    register_secret(inner)
    assert redact(inner) == "[redacted]"  # compiled in a generation of its own
    outer = f"outer-{inner}-tail-" + _letters(515151)
    register_secret(outer)
    assert redact(f"x {outer} y") == "x [redacted] y"


def test_a_forgotten_secret_does_not_hide_a_kept_one_inside_it() -> None:
    kept = "kept-" + _letters(363636)
    old = f"prefix-{kept}-suffix"
    register_secret(old, slot="test:nested")
    assert redact(old) == "[redacted]"
    register_secret(kept)
    forget_secret("test:nested")
    assert redact(old) == "prefix-[redacted]-suffix"
