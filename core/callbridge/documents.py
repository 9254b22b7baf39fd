"""``ctx.documents``: the host fetches an event's document for the plugin.

Plugins never fetch URLs from events themselves. ``await ctx.documents.fetch(doc)``
returns a :class:`Document`:

* inline content (``FaxDocument.content``) is returned as it is;
* a URL is fetched under the outbound address policy
  (:mod:`callbridge.outbound`): https only, the host on the tenant's list of
  document hosts (``tenants.<id>.document_hosts``), every address it resolves
  to public (never loopback, private, link-local or metadata), the connection
  made to the address checked; no credentials sent; a redirect is an error;
  the body capped in size (10 MiB by default) and its type checked against the
  event's (the ``Content-Type`` and the file's first bytes).

Failures are :class:`DocumentUnavailable` (retryable: the source is down, slow
or not ready) or :class:`DocumentRefused` (permanent: the policy, a redirect,
the size or the type). Messages never hold the URL.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import httpx2

from callbridge.errors import PermanentError, TransientError
from callbridge.events import DOCUMENT_MAX_BYTES, FaxDocument
from callbridge.outbound import (
    AddressPolicy,
    AddressRefused,
    ResolveFailed,
    check_url,
    guarded_transport,
)

__all__ = ["Document", "DocumentRefused", "DocumentUnavailable", "Documents"]

#: The first bytes of each document type the host accepts.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}


@dataclass(frozen=True)
class Document:
    """A document's bytes, its type and the file name to give it."""

    content: bytes
    content_type: str
    filename: str | None = None

    def __repr__(self) -> str:
        return f"Document({self.content_type}, {len(self.content)} bytes)"


class DocumentUnavailable(TransientError):
    """The document could not be fetched now (its source is down, slow or not ready)."""

    code = "document_unavailable"


class DocumentRefused(PermanentError):
    """The document is not fetched: the address policy, a redirect, its size or its type."""

    code = "document_refused"


class _Borrowed(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class Documents:
    """The document fetcher of one tenant (``ctx.documents``).

    ``transport``: the guarded transport, shared by every tenant (the factory
    makes one); ``allowed_hosts``: the tenant's document hosts.
    """

    def __init__(self, *, transport: httpx2.AsyncBaseTransport | None = None,
                 allowed_hosts: frozenset[str] = frozenset(), policy: AddressPolicy | None = None,
                 max_bytes: int = DOCUMENT_MAX_BYTES, timeout: float = 30.0) -> None:
        self.policy = policy or AddressPolicy(allowed_hosts=frozenset(allowed_hosts))
        self._transport = transport
        self.max_bytes = max_bytes
        self.timeout = timeout

    @functools.cached_property
    def _client(self) -> httpx2.AsyncClient:
        transport = self._transport or guarded_transport(self.policy)
        return httpx2.AsyncClient(transport=_Borrowed(transport) if self._transport else transport,
                                  timeout=httpx2.Timeout(self.timeout, connect=10.0),
                                  follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        if "_client" in self.__dict__:
            await self._client.aclose()

    async def fetch(self, doc: FaxDocument | str, *, content_type: str | None = None) -> Document:
        """The document's bytes: inline content as is, a URL fetched under the policy.

        ``doc``: a fax's document, or a URL (a recording link) with the
        ``content_type`` expected (any, when None).
        """
        expected: str | None
        if isinstance(doc, FaxDocument):
            if doc.content is not None:
                return Document(bytes(doc.content), doc.content_type, doc.filename)
            assert doc.url is not None
            url, expected, filename = str(doc.url), doc.content_type, doc.filename
        else:
            url, expected, filename = doc, content_type, None
        try:
            parsed = check_url(url, self.policy)
        except AddressRefused as exc:
            raise DocumentRefused(f"the document's URL is refused: {exc}") from None
        return await self._get(parsed, expected, filename)

    async def _get(self, url: httpx2.URL, expected: str | None,
                   filename: str | None) -> Document:
        try:
            async with self._client.stream("GET", url) as response:
                self._check_status(response.status_code)
                got = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if expected is not None and got != expected:
                    raise DocumentRefused(
                        f"the document is {got or 'of no stated type'}, not {expected}")
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise DocumentRefused(self._too_large())
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise DocumentRefused(self._too_large())
        except AddressRefused as exc:
            raise DocumentRefused(f"the document's URL is refused: {exc}") from None
        except ResolveFailed as exc:
            raise DocumentUnavailable(f"the document could not be fetched: {exc}") from None
        except httpx2.TransportError as exc:
            raise DocumentUnavailable(
                f"the document could not be fetched ({type(exc).__name__})") from None
        content = bytes(body)
        kind = expected or got
        if kind in MAGIC and not content.startswith(MAGIC[kind]):
            raise DocumentRefused(f"the document's content is not a {kind} file")
        return Document(content, kind, filename)

    def _too_large(self) -> str:
        return f"the document is larger than {self.max_bytes} bytes"

    @staticmethod
    def _check_status(status: int) -> None:
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise DocumentRefused(f"the document's URL answered a redirect ({status}); "
                                  "redirects are not followed")
        if status in (404, 408, 425, 429) or status >= 500:
            raise DocumentUnavailable(f"the document's source answered {status}")
        raise DocumentRefused(f"the document's source answered {status}")
