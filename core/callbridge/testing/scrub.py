"""Scrubbing on record: the kit's ``before_record_request`` / ``before_record_response``.

Header filters alone leave response headers and bodies untouched, so the kit
rewrites every interaction before it is stored (and every live request before
it is matched, which vcrpy also passes through ``before_record_request``):

* ``Authorization``, ``Proxy-Authorization``, ``Cookie``, API-key headers and
  ``Set-Cookie`` become ``SCRUBBED`` (``Bearer SCRUBBED`` keeps the scheme);
* the values of ``access_token``, ``refresh_token``, ``id_token``,
  ``client_secret``, ``code``, ``api_key``, ``password``, ``token`` in query
  strings and form bodies, and of the same keys (but ``code`` and ``token``,
  which JSON apps use for ordinary data) in JSON bodies, become ``SCRUBBED``, as
  do webhook signing keys in JSON bodies (``key``, ``secret``, ``shared_secret``,
  ``signing_secret``, ``webhook_secret``);
* phone numbers, in any E.164 or national form and URL-encoded, become a
  fictional number of the same country (:mod:`callbridge.testing.fictional`);
* e-mail addresses become ``<hash>@example.com``.

Replacements are deterministic, so a live request scrubbed for matching equals
the stored one. Compressed bodies are decoded first (``decode_compressed_response``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import phonenumbers

from callbridge.testing.fictional import fictional_email, fictional_number

__all__ = [
    "SCRUBBED",
    "Scrubber",
    "scrub_text",
]

SCRUBBED = "SCRUBBED"

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "apikey",
    "x-auth-token", "x-access-token",
    # webhook handshakes and signatures (Clio's X-Hook-Secret): a shared secret, or made from one
    "x-hook-secret", "x-hook-signature",
})
RESPONSE_SECRET_HEADERS = frozenset({"set-cookie", "x-auth-token", "x-access-token"})
#: Query keys of pre-signed storage URLs (S3 and the like): valid for minutes, still secrets.
SIGNED_URL_KEYS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "sig",
})
FORM_SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "id_token", "client_secret", "code", "api_key", "apikey",
    "password", "token", *SIGNED_URL_KEYS,
})
JSON_SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "id_token", "client_secret", "api_key", "apikey",
    "password", "secret",
    # Webhook subscriptions' signing keys (Smokeball's ``key``, others' shared secrets).
    "key", "shared_secret", "signing_secret", "webhook_secret",
})
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_TEXT_SECRET = re.compile(
    r"((?<![\w-])(?:access_token|refresh_token|id_token|client_secret|api_key|password"
    r"|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)"
    r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+", re.IGNORECASE)


def _same_shape(raw: str, number: phonenumbers.PhoneNumber) -> str:
    """Format ``number`` the way ``raw`` was written: E.164, digits only, or spaced."""
    plain = raw.lstrip("+").isdigit()
    if raw.startswith("+"):
        fmt = phonenumbers.PhoneNumberFormat.E164 if plain else \
            phonenumbers.PhoneNumberFormat.INTERNATIONAL
        return phonenumbers.format_number(number, fmt)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if plain:
        digits = "".join(ch for ch in national if ch.isdigit())
        # "12125550142" had its country code written in front.
        if raw.startswith(str(number.country_code)) and not raw.startswith("0"):
            return f"{number.country_code}{digits}"
        return digits
    return national


def scrub_text(text: str, region: str = "US") -> str:
    """``text`` with phone numbers made fictional and e-mail addresses at example.com.

    National forms are read in ``region``; forms with ``+`` in their own country.
    """
    if not text:
        return text
    out: list[str] = []
    last = 0
    for match in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
        fake = fictional_number(match.number)
        if fake == match.number:
            continue
        out.append(text[last:match.start])
        out.append(_same_shape(match.raw_string, fake))
        last = match.end
    out.append(text[last:])
    result = "".join(out)
    return _EMAIL.sub(lambda m: fictional_email(m.group(0)), result)


class Scrubber:
    """The record hooks for one plugin's cassettes.

    ``region`` reads national-form numbers; ``secret_headers`` adds header names
    (e.g. the plugin's API-key header) to the ones always scrubbed.
    """

    def __init__(self, *, region: str = "US", secret_headers: Iterable[str] = ()) -> None:
        self.region = region
        self.secret_headers = SECRET_HEADERS | {h.lower() for h in secret_headers}

    # --- pieces -----------------------------------------------------------------

    def text(self, text: str) -> str:
        return _TEXT_SECRET.sub(lambda m: m.group(1) + SCRUBBED, scrub_text(text, self.region))

    def pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(key, SCRUBBED if key.lower() in FORM_SECRET_KEYS and value else
                 scrub_text(value, self.region)) for key, value in pairs]

    def query(self, query: str) -> str:
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        scrubbed = self.pairs(pairs)
        return query if scrubbed == pairs else urlencode(scrubbed, quote_via=quote)

    def uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        path = unquote(parts.path)
        new_path = scrub_text(path, self.region)
        path_out = parts.path if new_path == path else quote(new_path, safe="/:@!$&'()*+,;=-._~")
        return urlunsplit((parts.scheme, parts.netloc, path_out, self.query(parts.query),
                           parts.fragment))

    def json_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: (SCRUBBED if isinstance(key, str) and key.lower() in JSON_SECRET_KEYS
                          and isinstance(item, str) and item else self.json_value(item))
                    for key, item in value.items()}
        if isinstance(value, list):
            return [self.json_value(item) for item in value]
        if isinstance(value, str):
            if value.startswith(("https://", "http://")) and "?" in value:
                return self.uri(value)  # e.g. a pre-signed upload URL handed back in JSON
            return scrub_text(value, self.region)
        return value

    def body(self, body: bytes | str | None, content_type: str) -> bytes | str | None:
        if body is None or body == b"" or body == "":
            return body
        as_bytes = isinstance(body, bytes)
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:  # a document: not text, left as it is
            return body
        kind = content_type.lower()
        new = text
        if "json" in kind:
            try:
                data = json.loads(text)
            except ValueError:
                new = self.text(text)
            else:
                scrubbed = self.json_value(data)
                if scrubbed != data:
                    new = json.dumps(scrubbed, separators=(",", ":"), ensure_ascii=False)
        elif "x-www-form-urlencoded" in kind:
            new = self.query(text)
        else:
            new = self.text(text)
        if new == text:
            return body
        return new.encode("utf-8") if as_bytes else new

    def _header(self, name: str, value: str, secret: frozenset[str] | set[str]) -> str:
        if name.lower() in secret:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            return f"{scheme} {SCRUBBED}" if scheme.lower() in {"bearer", "basic", "token"} \
                else SCRUBBED
        return self.text(value)

    # --- vcrpy hooks ------------------------------------------------------------

    def before_record_request(self, request: Any) -> Any:
        """Scrub a vcrpy request (a copy is returned; the live request is untouched)."""
        import copy

        request = copy.copy(request)
        request.uri = self.uri(request.uri)
        headers = {name: self._header(name, str(value), self.secret_headers)
                   for name, value in request.headers.items()}
        request.headers = headers
        content_type = str(headers.get("content-type") or headers.get("Content-Type") or "")
        request.body = self.body(request.body, content_type)
        return request

    def before_record_response(self, response: dict[str, Any]) -> dict[str, Any]:
        """Scrub a vcrpy response dict: decoded first, then headers and body."""
        from vcr.filters import decode_response  # type: ignore[import-untyped]

        response = decode_response(response)
        headers: dict[str, list[str]] = {}
        content_type = ""
        for name, values in response["headers"].items():
            values = values if isinstance(values, list) else [values]
            headers[name] = [self._header(name, str(v), set(RESPONSE_SECRET_HEADERS))
                             for v in values]
            if name.lower() == "content-type" and values:
                content_type = str(values[0])
        body = response["body"]["string"]
        new_body = self.body(body, content_type)
        if new_body is not body:
            response["body"]["string"] = new_body
            length = len(new_body.encode() if isinstance(new_body, str) else new_body or b"")
            for name in list(headers):
                if name.lower() == "content-length":
                    headers[name] = [str(length)]
        response["headers"] = headers
        return response

    def hooks(self) -> tuple[Callable[[Any], Any], Callable[[dict[str, Any]], dict[str, Any]]]:
        return self.before_record_request, self.before_record_response
