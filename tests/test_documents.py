"""The host's document fetch and the outbound address policy, against real loopback servers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
from callbridge.documents import Document, DocumentRefused, Documents, DocumentUnavailable
from callbridge.events import FaxDocument
from callbridge.faults import serve_in_thread
from callbridge.outbound import (
    AddressPolicy,
    AddressRefused,
    check_address,
    check_outbound,
    check_url,
)
from callbridge.testing.addresses import allow_sandbox, serve_sandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.test_http import free_port

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
CAP = 4096


def document_server() -> Starlette:
    seen: list[dict[str, str]] = []

    async def fax(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(PDF, media_type="application/pdf")

    async def html(request: Request) -> Response:
        return Response(b"<html>admin console</html>", media_type="text/html")

    async def disguised(request: Request) -> Response:
        return Response(b"<html>admin console</html>", media_type="application/pdf")

    async def big(request: Request) -> Response:
        return Response(b"%PDF-" + b"0" * (CAP * 2), media_type="application/pdf")

    async def big_chunked(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"%PDF-"
            for _ in range(10):
                yield b"0" * 1024
        return StreamingResponse(chunks(), media_type="application/pdf")

    async def moved(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    async def status(request: Request) -> Response:
        return Response(b"", status_code=int(request.path_params["code"]))

    app = Starlette(routes=[
        Route("/fax.pdf", fax), Route("/page.html", html), Route("/disguised.pdf", disguised),
        Route("/big.pdf", big), Route("/chunked.pdf", big_chunked), Route("/moved", moved),
        Route("/status/{code:int}", status),
    ])
    app.state.seen = seen
    return app


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, Starlette]]:
    """A document source on loopback, registered as a test sandbox."""
    app = document_server()
    with serve_sandbox(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def internal() -> Iterator[str]:
    """A loopback service nobody registered: what an attacker's URL points at."""
    with serve_in_thread(document_server()) as url:
        yield url


@pytest.fixture
async def documents() -> AsyncIterator[Documents]:
    fetcher = Documents(allowed_hosts=frozenset({"files.example.com"}), max_bytes=CAP)
    yield fetcher
    await fetcher.aclose()


def pdf_at(url: str) -> FaxDocument:
    return FaxDocument(url=url, content_type="application/pdf")


# --- what the policy refuses --------------------------------------------------------------


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::",
    "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
])
def test_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(AddressRefused):
        check_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert str(check_address(address)) == address


@pytest.mark.parametrize(("url", "why"), [
    ("http://files.example.com/fax.pdf", "only https"),
    ("ftp://files.example.com/fax.pdf", "only https"),
    ("https://user:pw@files.example.com/fax.pdf", "user name"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("https://evil.example.net/fax.pdf", "list of document hosts"),
])
def test_urls_are_refused_by_scheme_and_host(url: str, why: str) -> None:
    with pytest.raises(AddressRefused, match=why):
        check_url(url, AddressPolicy(allowed_hosts=frozenset({"files.example.com"})))


def test_an_empty_list_of_document_hosts_allows_none_and_a_suffix_allows_subdomains() -> None:
    with pytest.raises(AddressRefused):
        check_url("https://files.example.com/a.pdf", AddressPolicy(allowed_hosts=frozenset()))
    suffix = AddressPolicy(allowed_hosts=frozenset({"*.example.com"}))
    assert check_url("https://eu.files.example.com/a.pdf", suffix).host == "eu.files.example.com"
    with pytest.raises(AddressRefused):
        check_url("https://example.com.evil.net/a.pdf", suffix)


async def test_a_name_that_resolves_to_loopback_is_refused_after_resolving(
        internal: str) -> None:
    async def resolves_inside(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = AddressPolicy(allowed_hosts=frozenset({"files.example.com"}),
                           resolver=resolves_inside, sandboxes=())
    fetcher = Documents(policy=policy)
    try:
        with pytest.raises(DocumentRefused, match="loopback, private"):
            await fetcher.fetch(pdf_at("https://files.example.com/fax.pdf"))
    finally:
        await fetcher.aclose()
    with pytest.raises(AddressRefused):
        await check_outbound("https://files.example.com/hook", policy)


async def test_an_unregistered_loopback_service_is_never_fetched(internal: str) -> None:
    # Even with plain http allowed and the address itself on the list, loopback is refused.
    policy = AddressPolicy(https_only=False, allowed_hosts=frozenset({"127.0.0.1"}), sandboxes=())
    fetcher = Documents(policy=policy)
    try:
        with pytest.raises(DocumentRefused):
            await fetcher.fetch(pdf_at(f"{internal}/fax.pdf"))
    finally:
        await fetcher.aclose()


async def test_the_connection_goes_to_the_address_checked(sandbox: tuple[str, Starlette]) -> None:
    # "docs.test" resolves nowhere but in this resolver: first to the sandbox's loopback
    # address (allowed for it), afterwards to a private one. Only one lookup is made, and
    # the socket goes to the address that lookup returned and the policy checked.
    url, _ = sandbox
    port = httpx2.URL(url).port
    answers = [["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]]
    calls: list[str] = []

    async def swapping(host: str, p: int) -> list[str]:
        calls.append(host)
        return answers[len(calls) - 1]

    policy = AddressPolicy(allowed_hosts=frozenset(), resolver=swapping,
                           sandboxes=(lambda u: u.host == "docs.test",))
    fetcher = Documents(policy=policy)
    try:
        doc = await fetcher.fetch(pdf_at(f"http://docs.test:{port}/fax.pdf"))
    finally:
        await fetcher.aclose()
    assert doc.content == PDF
    assert calls == ["docs.test"]


# --- what a fetch returns, and what it raises ----------------------------------------------


async def test_inline_content_is_returned_as_is(documents: Documents) -> None:
    doc = FaxDocument(content=base64.b64encode(PDF), content_type="application/pdf",
                      filename="fax.pdf")
    assert await documents.fetch(doc) == Document(PDF, "application/pdf", "fax.pdf")


async def test_a_registered_sandbox_is_fetched_without_credentials(
        sandbox: tuple[str, Starlette], documents: Documents) -> None:
    url, app = sandbox
    doc = await documents.fetch(pdf_at(f"{url}/fax.pdf"))
    assert (doc.content, doc.content_type) == (PDF, "application/pdf")
    assert "authorization" not in app.state.seen[-1]


@pytest.mark.parametrize(("path", "error", "why"), [
    ("/page.html", DocumentRefused, "text/html, not application/pdf"),
    ("/disguised.pdf", DocumentRefused, "not a application/pdf file"),
    ("/big.pdf", DocumentRefused, "larger than"),
    ("/chunked.pdf", DocumentRefused, "larger than"),
    ("/moved", DocumentRefused, "redirect"),
    ("/status/403", DocumentRefused, "403"),
    ("/status/404", DocumentUnavailable, "404"),
    ("/status/503", DocumentUnavailable, "503"),
])
async def test_a_fetch_checks_status_type_and_size(
        sandbox: tuple[str, Starlette], documents: Documents, path: str,
        error: type[Exception], why: str) -> None:
    url, _ = sandbox
    with pytest.raises(error, match=why) as caught:
        await documents.fetch(pdf_at(f"{url}{path}"))
    assert url not in str(caught.value)


async def test_a_source_that_is_down_is_unavailable(documents: Documents) -> None:
    with allow_sandbox(f"http://127.0.0.1:{free_port()}") as url:  # nothing listens there
        with pytest.raises(DocumentUnavailable):
            await documents.fetch(pdf_at(f"{url}/fax.pdf"))


async def test_a_stopped_sandbox_is_no_longer_reachable(documents: Documents) -> None:
    with serve_sandbox(document_server()) as url:
        assert (await documents.fetch(pdf_at(f"{url}/fax.pdf"))).content == PDF
    with pytest.raises(DocumentRefused, match="only https"):
        await documents.fetch(pdf_at(f"{url}/fax.pdf"))


async def test_a_recording_link_goes_through_the_same_policy(
        sandbox: tuple[str, Starlette], documents: Documents) -> None:
    url, _ = sandbox
    doc = await documents.fetch(f"{url}/fax.pdf", content_type="application/pdf")
    assert doc.content == PDF
    with pytest.raises(DocumentRefused):
        await documents.fetch("https://169.254.169.254/latest/meta-data/")
