"""What the call-history page's endpoints share: its path, the headers of every page,
a refusal shown as a page, and reading a posted form."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

#: Where the page lives.
PREFIX = "/history"
#: The largest form body taken (bytes): notes are at most 10,000 characters.
MAX_FORM = 64 * 1024

#: Sent with every page: no scripts, styles only from the page's own stylesheet, forms
#: only to the page itself, never framed, referrers (and so the Origin header
#: the CSRF check reads) only to itself, never cached.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request answered with an error page: its status, title and text (the host's
    own words, never a value the request sent)."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def form(request: Request, *, max_fields: int = 200) -> dict[str, list[str]]:
    """A posted web form (``application/x-www-form-urlencoded``, at most
    :data:`MAX_FORM` bytes): each field's values, in order."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "Refused", "The form must be sent as a web form.")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FORM:
            raise Refused(413, "Refused", "The form is too large.")
    fields: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True,
                          max_num_fields=max_fields)
    except ValueError:
        raise Refused(413, "Refused", "The form has too many fields.") from None
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def one(fields: Mapping[str, list[str]], name: str) -> str:
    """A field's first value ("" when it is missing)."""
    values = fields.get(name) or [""]
    return values[0]


def safe_next(value: str | None) -> str | None:
    """A page of ours to go back to after signing in; anything else is dropped."""
    if not value or len(value) > 500 or not value.startswith(PREFIX + "/"):
        return None
    if "//" in value or "\\" in value or any(ord(c) < 33 for c in value):
        return None
    return value
