"""The Clio plugin's requests and the sandbox's answers, against the OpenAPI document Clio
publishes (``openapi_server/openapi/openapi.yaml`` in the ``clio-cli`` 1.0.5 wheel).

The wheel is fetched with pip at test time into the pytest cache (or the temporary
folder when the cache is off) and never committed; without the package index the
tests are skipped, saying why. Checked for every exchange in the contract cassettes
and every answer of the sandbox driven through the plugin's own API calls: the path
and method exist, each query parameter and the ``X-API-VERSION`` asked for are
documented, the keys of a JSON request's ``data`` (and one level inside) are
properties of the operation's request schema, the status is documented for the
operation, and the keys of a 2xx answer's ``data`` (and one level inside) are
properties of its response schema, and so are the keys of an error answer. What the
document does not know is in ALLOWED, each with its reason; an entry nothing needs
any more fails a test too.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge_clio import API_VERSION
from callbridge_clio.api import MARKER, ClioApi
from callbridge_clio.sandbox import SandboxState, create_app
from callbridge_clio.sandbox.fields import KNOWN_FIELDS

from plugins.clio.tests.openapi_check import (
    Document,
    DocumentUnavailable,
    Exchange,
    cassette_exchanges,
    json_or_none,
    load_document,
)

CASSETTES = Path(__file__).parent / "cassettes"
BASE_URL = "https://app.clio.com/api/v4"

#: What the plugin or the sandbox sends or answers that the document does not describe.
ALLOWED: dict[str, str] = {
    "PUT /{key}: not a path of the API":
        "the fax upload goes to the pre-signed storage URL Clio hands out in put_url, "
        "on the storage's own origin, outside the API",
    f"X-API-VERSION {API_VERSION} is not a minor version the document lists":
        f"the plugin pins {API_VERSION}; the document describes minor versions up to 4.0.10",
    "GET /contacts.json: status 503 is not documented":
        "the document lists no server errors; the kit's error-5xx case records a 503, "
        "which any HTTP API may answer",
    "PUT /webhooks/1034/activate: no such operation":
        "the Webhooks tag's text documents it (the delayed confirmation of the handshake: "
        "PUT /api/v4/webhooks/:id/activate with the secret in X-Hook-Secret); the paths "
        "of the 4.0.10 document leave it out",
    "GET /users.json: answer 401 key 'error_description' is not documented":
        "Clio answers an invalid token in the OAuth form {error, error_description} "
        "(its support article on expired tokens), not the documented Error object",
}

#: Operations used whose request or answer schema the document leaves open, so their
#: keys go unchecked. None today: every schema the plugin meets is described.
OPEN_SCHEMAS: dict[str, str] = {}


@pytest.fixture(scope="session")
def clio_document(pytestconfig: pytest.Config) -> Document:
    """Clio's OpenAPI document, fetched once per cache folder."""
    cache = getattr(pytestconfig, "cache", None)
    folder = (cache.mkdir("clio-openapi") if cache is not None
              else Path(tempfile.gettempdir()) / "callbridge-clio-openapi")
    try:
        return Document(load_document(Path(folder)))
    except DocumentUnavailable as exc:
        pytest.skip(f"Clio's OpenAPI document is unavailable ({exc}); these checks need the "
                    "package index")


def unexpected(document: Document, labelled: list[tuple[str, Exchange]],
               used: set[str]) -> list[str]:
    """Problems not in ALLOWED (each labelled); the allowed ones met are added to ``used``."""
    out = []
    for label, exchange in labelled:
        for problem in document.problems(exchange):
            if problem in ALLOWED:
                used.add(problem)
            else:
                out.append(f"{label}: {problem}")
    return out


def open_schemas(document: Document, labelled: list[tuple[str, Exchange]]) -> set[str]:
    return {s for _, exchange in labelled for s in document.open_schemas(exchange)}


# --- the document -----------------------------------------------------------------------


def test_the_document_is_clios_api_v4(clio_document: Document) -> None:
    info = clio_document.doc["info"]
    assert clio_document.doc["openapi"].startswith("3.")
    assert info["version"] == "v4"
    assert f"{BASE_URL}" in [s["url"] for s in clio_document.doc["servers"]]
    assert clio_document.minor_versions[-1] == "4.0.10"
    assert clio_document.default_version == "4.0.9"


def test_the_checker_names_what_the_document_does_not_know(clio_document: Document) -> None:
    def problems(method: str, path: str, body: Any = None, status: int = 200,
                 answer: Any = None, version: str = "4.0.9") -> list[str]:
        return clio_document.problems(Exchange(method, BASE_URL + path,
                                               {"X-API-VERSION": version}, body, status, answer))

    assert problems("GET", "/contacts.json?fields=id&limit=2&page_token=x&ids%5B%5D=7") == []
    assert problems("GET", "/contacts.json?colour=red") == [
        "GET /contacts.json: query parameter 'colour' is not documented"]
    assert problems("POST", "/calls.json") == ["POST /calls.json: no such operation"]
    assert problems("POST", "/communications.json", {"data": {"subject": "s", "mood": "calm"}},
                    201) == ["POST /communications.json: request data key 'mood' is not documented"]
    assert problems("POST", "/contacts.json", {"data": {"phone_numbers": [{"colour": "red"}]}},
                    201) == ["POST /contacts.json: request data key 'phone_numbers.colour' "
                             "is not documented"]
    assert problems("GET", "/users/who_am_i.json", status=418) == [
        "GET /users/who_am_i.json: status 418 is not documented"]
    assert problems("GET", "/matters/7.json", answer={"data": {"id": 7, "mood": "calm"}}) == [
        "GET /matters/{id}.json: answer data key 'mood' is not documented"]
    assert problems("GET", "/users.json", status=401,
                    answer={"error": {"type": "t", "message": "m", "mood": "calm"}}) == [
        "GET /users.json: answer 401 key 'error.mood' is not documented"]
    assert problems("GET", "/users.json", version="4.0.99") == [
        "X-API-VERSION 4.0.99 is not a minor version the document lists"]


# --- the recorded exchanges ---------------------------------------------------------------


def recorded() -> list[tuple[str, Exchange]]:
    return [(f"{name} #{i} {ex.method} {ex.url.split('?')[0]}", ex)
            for name, i, ex in cassette_exchanges(CASSETTES)]


def test_every_recorded_exchange_agrees_with_clios_document(clio_document: Document) -> None:
    labelled = recorded()
    assert len(labelled) > 40, "the contract cassettes are missing"
    assert unexpected(clio_document, labelled, set()) == []


def test_no_recorded_exchange_meets_a_schema_the_document_leaves_open(
        clio_document: Document) -> None:
    assert open_schemas(clio_document, recorded()) == set(OPEN_SCHEMAS)


# --- the sandbox's answers ----------------------------------------------------------------

#: ClioApi's building blocks, exercised through the calls below.
GENERIC = {"all_pages", "page", "get", "create", "update"}


def seeded() -> tuple[SandboxState, dict[str, int], str]:
    """A small firm with pages of two records, so the paging ``next`` URLs are met too."""
    st = SandboxState(host="https://app.clio.com", max_page_size=2, rate_limit=None)
    ids: dict[str, int] = {}
    ids["ann"] = st.add_user("Ann Lee", "ann@firm.example", authorised=True)
    st.add_user("Bob Stone", "bob@firm.example")
    st.add_user("Cy Rowe", "cy@firm.example")
    ids["field"] = st.add_custom_field("Sync to phone system", "Matter")
    ids["dana"] = st.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"])
    st.add_contact("Dale", "Whitfield", ["+1 212 555 0143"])
    st.add_contact("Dee", "Whitfield", ["212-555-0144"])
    ids["matter"] = st.add_matter(ids["dana"], "Lease dispute",
                                  custom_fields={ids["field"]: "true"})
    st.add_matter(ids["dana"], "Trust", status="Pending")
    st.add_matter(ids["dana"], "Old lease", status="Closed", close_date="2025-12-01")
    st.relate(ids["dana"], ids["matter"], "Client's spouse")
    st.add_activity_description("Telephone call")
    token = st.issue_token(ids["ann"])["access_token"]
    return st, ids, token


async def sandbox_exchanges() -> list[tuple[str, Exchange]]:
    """Every call the plugin's API layer makes, against the sandbox; and its error answers."""
    st, ids, token = seeded()
    seen: list[tuple[str, Exchange]] = []

    async def keep(response: httpx2.Response) -> None:
        await response.aread()
        request = response.request
        answer = (json_or_none(response.content)
                  if "json" in response.headers.get("content-type", "") else None)
        seen.append((f"sandbox {request.method} {request.url.path}", Exchange(
            request.method, str(request.url), dict(request.headers),
            json_or_none(request.content), response.status_code, answer)))

    transport = httpx2.ASGITransport(app=create_app(st, faults=False))
    async with httpx2.AsyncClient(
            transport=transport, base_url=BASE_URL, event_hooks={"response": [keep]},
            headers={"Authorization": f"Bearer {token}", "X-API-VERSION": API_VERSION}) as http:
        api = ClioApi(http)
        called: set[str] = set()

        async def call(name: str, *args: Any, **kwargs: Any) -> Any:
            called.add(name)
            method: Callable[..., Awaitable[Any]] = getattr(api, name)
            return await method(*args, **kwargs)

        since = datetime(2020, 1, 1, tzinfo=UTC)
        assert len(await call("search_contacts", "Whitfield")) == 3  # two pages
        created = await call("create_contact", {
            "type": "Person", "first_name": "Rae", "last_name": "Quinn",
            "phone_numbers": [{"name": "Work", "number": "+17185550101", "default_number": True}],
            "email_addresses": [{"name": "Work", "address": "rae@example.com",
                                 "default_email": True}]})
        await call("contacts_created_since", since)
        _, cursor = await call("contacts_page", updated_since=since, cursor=None)
        assert cursor is not None
        await call("contacts_page", updated_since=since, cursor=cursor)
        assert len(await call("client_matters", ids["dana"], "open,pending")) == 2
        await call("relationships", ids["dana"])
        await call("relationships_changed", since)
        await call("matters_changed", since=since, status="closed",
                   custom_field_ids=[ids["field"]])
        await call("custom_fields", "Matter")
        await call("users")
        await call("who_am_i")
        comm = await call("create_communication", {
            "type": "PhoneCommunication", "subject": "Inbound call", "body": "Notes",
            "received_at": "2026-03-02T15:00:00+00:00", "matter": {"id": ids["matter"]},
            "senders": [{"id": created.id, "type": "Contact"}],
            "receivers": [{"id": ids["ann"], "type": "User"}],
            "external_properties": [{"name": MARKER, "value": "cb1-sandbox"}]})
        await call("communications_marked", "cb1-sandbox")
        await call("communication", comm.id)
        await call("update_communication", comm.id, {"body": "Notes, and a transcript"})
        await call("create_activity", {
            "type": "TimeEntry", "date": "2026-03-02", "quantity": 246,
            "communication": {"id": comm.id}, "matter": {"id": ids["matter"]},
            "user": {"id": ids["ann"]}, "non_billable": False, "note": "Phone call"})
        await call("time_entries_of", comm.id)
        assert await call("activity_description_named", "Telephone call") is not None
        await call("create_activity_description", "CB-CALL")
        root = await call("root_folder", "Matter", ids["matter"])
        assert await call("folder_named", "Faxes", parent_folder=root) is None
        folder = await call("create_folder", "Faxes", parent_folder=root)
        # Another folder's children are not this one's.
        other = await call("folder_named", "Faxes", parent_folder=await call(
            "root_folder", "Contact", created.id))
        assert other is None
        doc = await call("create_document", {
            "name": "Fax.pdf", "parent": {"id": folder.id, "type": "Folder"},
            "communication_id": comm.id, "content_type": "application/pdf",
            "received_at": "2026-03-02T17:00:00+00:00",
            "external_properties": [{"name": MARKER, "value": "cb1-sandbox"}]})
        version = doc.latest_document_version
        # The storage takes no API headers: a client of its own, as the plugin's bare one.
        async with httpx2.AsyncClient(transport=transport,
                                      event_hooks={"response": [keep]}) as bare:
            await bare.put(version.put_url, content=b"%PDF-1.4\n",
                           headers={h.name: h.value for h in version.put_headers})
        await call("documents_marked", "cb1-sandbox")
        await call("mark_uploaded", doc.id, version.uuid)
        await call("document", doc.id)

        # Error answers, sent as they are.
        await http.post("/contacts.json", params={"fields": "id"},
                        json={"data": {"type": "Person"}})  # 422: a Person without names
        await http.get("/contacts.json", params={"fields": "id,mood"})  # 400: an unknown field
        await http.get("/matters/999999.json", params={"fields": "id"})  # 404
        await http.get("/users.json", params={"fields": "id"},
                       headers={"Authorization": "Bearer revoked"})  # 401

    public = {name for name, member in inspect.getmembers(ClioApi, inspect.iscoroutinefunction)
              if not name.startswith("_")}
    assert public - GENERIC - called == set(), "a ClioApi call the sandbox drive does not make"
    statuses = {ex.status for _, ex in seen}
    assert {200, 201, 400, 401, 404, 422} <= statuses
    assert any("page_token=" in ex.url for _, ex in seen), "no page was followed"
    return seen


async def test_the_sandboxs_answers_agree_with_clios_document(clio_document: Document) -> None:
    seen = await sandbox_exchanges()
    assert unexpected(clio_document, seen, set()) == []
    assert open_schemas(clio_document, seen) <= set(OPEN_SCHEMAS)


def properties(document: Document, schema: str) -> set[str]:
    """Every property of a component schema, through its ``allOf`` parts."""
    schemas = document.doc["components"]["schemas"]
    found: set[str] = set()
    for part in [schemas[schema], *schemas[schema].get("allOf", [])]:
        if "$ref" in part:
            found |= properties(document, part["$ref"].split("/")[-1])
        found |= set(part.get("properties") or {})
    return found


@pytest.mark.parametrize(("kind", "schema"), [
    ("contact", "Contact"), ("matter", "Matter"), ("relationship", "Relationship"), ("user", "User"),
    ("communication", "Communication"), ("activity", "Activity"), ("document", "Document"),
    ("folder", "Folder"), ("custom_field", "CustomField"),
    ("activity_description", "ActivityDescription"), ("webhook", "Webhook")])
def test_the_sandbox_knows_every_field_the_document_lists(clio_document: Document, kind: str,
                                                          schema: str) -> None:
    assert set(KNOWN_FIELDS[kind]) == properties(clio_document, schema)


async def test_every_allow_list_entry_is_still_needed(clio_document: Document) -> None:
    used: set[str] = set()
    unexpected(clio_document, [*recorded(), *await sandbox_exchanges()], used)
    assert set(ALLOWED) - used == set()
