"""The Clio sandbox answers as Clio does: the shapes and refusals the plugin, the demo and
the end-to-end tests rely on. A plain client, no plugin code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from callbridge.testing.clock import FakeClock
from callbridge_clio.sandbox import SandboxState, create_app, text_matches
from callbridge_clio.sandbox.state import STORAGE_HOST as STORAGE

API = "https://app.clio.com/api/v4"


@pytest.fixture
def state() -> SandboxState:
    st = SandboxState()
    st.add_user("Ann Lee", "ann@acme.example", authorised=True)
    return st


@pytest.fixture
def app(state: SandboxState) -> Any:
    return create_app(state)


@pytest.fixture
async def raw(app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """A client with no credentials."""
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="https://app.clio.com") as client:
        yield client


@pytest.fixture
async def api(app: Any, state: SandboxState) -> AsyncIterator[httpx2.AsyncClient]:
    """A client with a live access token."""
    token = state.issue_token()["access_token"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=API,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def test_authorize_redirects_with_a_code_and_the_state_that_the_token_endpoint_exchanges(
        raw: httpx2.AsyncClient, state: SandboxState) -> None:
    back = "https://firm.example/callback"
    r = await raw.get("/oauth/authorize", params={"response_type": "code", "client_id": state.client_id,
                                                  "redirect_uri": back, "state": "s-42"})
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == back and query["state"] == ["s-42"]
    token = await raw.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": back,
        "client_id": state.client_id, "client_secret": state.client_secret})
    body = token.json()
    assert token.status_code == 200 and body["token_type"] == "bearer"
    assert body["access_token"] and body["refresh_token"] and body["expires_in"] == state.token_lifetime


async def test_a_refresh_answers_a_new_access_token_and_keeps_the_refresh_token(
        raw: httpx2.AsyncClient, state: SandboxState) -> None:
    issued = state.issue_token()
    r = await raw.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": issued["refresh_token"],
        "client_id": state.client_id, "client_secret": state.client_secret})
    assert r.status_code == 200 and "refresh_token" not in r.json()
    assert r.json()["access_token"] != issued["access_token"]


@pytest.mark.parametrize("header", [None, "Bearer not-a-token"])
async def test_a_missing_or_unknown_token_is_401_invalid_token(raw: httpx2.AsyncClient,
                                                               header: str | None) -> None:
    r = await raw.get("/api/v4/users.json", params={"fields": "id"},
                      headers={"Authorization": header} if header else {})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


async def test_an_expired_token_is_401(api: httpx2.AsyncClient, state: SandboxState) -> None:
    state.expire_tokens()
    assert (await api.get("/users.json", params={"fields": "id"})).status_code == 401


async def test_only_the_requested_fields_come_back(api: httpx2.AsyncClient, state: SandboxState) -> None:
    state.add_contact("Dana", "Whitfield", ["(212) 555-0142"])
    r = await api.get("/contacts.json", params={"fields": "id,name,phone_numbers{number}"})
    (contact,) = r.json()["data"]
    assert set(contact) == {"id", "name", "phone_numbers"}
    assert contact["phone_numbers"] == [{"number": "(212) 555-0142"}]


async def test_without_fields_only_id_and_etag_come_back(api: httpx2.AsyncClient,
                                                         state: SandboxState) -> None:
    state.add_contact("Dana", "Whitfield")
    (contact,) = (await api.get("/contacts.json")).json()["data"]
    assert set(contact) == {"id", "etag"}


@pytest.mark.parametrize("fields", ["id,nickname", "id,matter{client{id}}"])
async def test_an_unknown_or_too_deep_field_is_a_400(api: httpx2.AsyncClient, fields: str) -> None:
    r = await api.get("/communications.json", params={"fields": fields})
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest"


async def test_paging_gives_next_urls_on_the_sandboxs_host_when_ordered_by_id(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    for i in range(5):
        state.add_contact(f"C{i}", "Bulk")
    seen, url, pages = [], "/contacts.json", 0
    params: dict[str, Any] | None = {"fields": "id", "limit": 2, "order": "id(asc)"}
    while url:
        body = (await api.get(url, params=params)).json()
        seen += [c["id"] for c in body["data"]]
        url, params, pages = body["meta"]["paging"].get("next"), None, pages + 1
        if url:
            assert url.startswith(f"{API}/contacts.json?") and "page_token=" in url and "fields=id" in url
    assert pages == 3 and seen == sorted(state.contacts)


async def test_a_served_sandbox_names_its_own_host_in_paging_links(state: SandboxState) -> None:
    state.host = "http://127.0.0.1:8799"
    for i in range(3):
        state.add_contact(f"C{i}", "Bulk")
    token = state.issue_token()["access_token"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state)),
                                  base_url="http://127.0.0.1:8799/api/v4",
                                  headers={"Authorization": f"Bearer {token}"}) as client:
        r = await client.get("/contacts.json", params={"fields": "id", "limit": 1, "order": "id(asc)"})
    assert r.json()["meta"]["paging"]["next"].startswith("http://127.0.0.1:8799/api/v4/contacts.json?")


async def test_without_order_by_id_there_is_no_cursor_and_a_page_token_is_refused(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    for i in range(3):
        state.add_contact(f"C{i}", "Bulk")
    first = (await api.get("/contacts.json", params={"fields": "id", "limit": 2})).json()
    assert len(first["data"]) == 2 and "next" not in first["meta"]["paging"]
    r = await api.get("/contacts.json", params={"fields": "id", "limit": 2, "page_token": "MTAwMQ=="})
    assert r.status_code == 400 and "order=id(asc)" in r.json()["error"]["message"]


async def test_a_list_without_an_order_parameter_pages_by_cursor(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    client = state.add_contact("Lee", "Park")
    for i in range(3):
        state.add_matter(client, f"M{i}", related={client: "Guarantor"})
    r = await api.get("/relationships.json", params={"fields": "id", "limit": 2})
    assert "page_token=" in r.json()["meta"]["paging"]["next"]


async def test_a_person_without_names_is_a_422(api: httpx2.AsyncClient) -> None:
    r = await api.post("/contacts.json", params={"fields": "id"},
                       json={"data": {"type": "Person", "phone_numbers": [{"number": "+12125550142"}]}})
    assert r.status_code == 422


async def test_communications_are_found_by_their_external_property(api: httpx2.AsyncClient) -> None:
    for value in ("a", "b"):
        await api.post("/communications.json", params={"fields": "id"}, json={"data": {
            "type": "PhoneCommunication", "subject": "s", "body": "b",
            "received_at": "2026-03-02T15:00:00Z",
            "external_properties": [{"name": "callbridge_event", "value": value}]}})
    r = await api.get("/communications.json", params={
        "fields": "id,external_properties{value}", "external_property_name": "callbridge_event",
        "external_property_value": "b"})
    assert [c["external_properties"] for c in r.json()["data"]] == [[{"value": "b"}]]


async def upload_target(api: httpx2.AsyncClient, state: SandboxState) -> dict[str, Any]:
    contact = state.add_contact("Dana", "Whitfield")
    r = await api.post("/documents.json", params={
        "fields": "id,latest_document_version{uuid,put_url,put_headers}"},
        json={"data": {"name": "fax.pdf", "parent": {"id": contact, "type": "Contact"}}})
    return dict(r.json()["data"])


def put_headers(doc: dict[str, Any]) -> dict[str, str]:
    return {h["name"]: h["value"] for h in doc["latest_document_version"]["put_headers"]}


async def mark(api: httpx2.AsyncClient, doc: dict[str, Any]) -> httpx2.Response:
    return await api.patch(f"/documents/{doc['id']}.json", params={
        "fields": "id,latest_document_version{fully_uploaded,put_url}"},
        json={"data": {"uuid": doc["latest_document_version"]["uuid"], "fully_uploaded": True}})


async def test_the_upload_flow_stores_the_bytes_and_marks_the_document_complete(
        api: httpx2.AsyncClient, raw: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    version = doc["latest_document_version"]
    assert version["put_url"].startswith(f"{STORAGE}/")
    put = await raw.put(version["put_url"], content=b"%PDF", headers=put_headers(doc))
    assert put.status_code == 200
    done = await mark(api, doc)
    # Once uploaded, the version has no upload URL any more.
    assert done.json()["data"]["latest_document_version"] == {"fully_uploaded": True, "put_url": None}


async def test_the_storage_is_its_own_origin_not_the_apis(
        api: httpx2.AsyncClient, raw: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    on_api = doc["latest_document_version"]["put_url"].replace(STORAGE, "https://app.clio.com")
    assert (await raw.put(on_api, content=b"%PDF", headers=put_headers(doc))).status_code == 404
    assert state.storage == {}


async def test_marking_a_document_complete_before_its_upload_is_upload_not_found(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    r = await mark(api, doc)
    assert r.status_code == 422 and r.json()["error"]["type"] == "UploadNotFoundError"


async def test_a_second_mark_is_refused_and_a_verification_can_time_out(
        api: httpx2.AsyncClient, raw: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    await raw.put(doc["latest_document_version"]["put_url"], content=b"%PDF", headers=put_headers(doc))
    state.upload_timeouts = 1
    timed_out = await mark(api, doc)
    assert timed_out.status_code == 422 and timed_out.json()["error"]["type"] == "UploadTimeoutError"
    assert (await mark(api, doc)).status_code == 200
    again = await mark(api, doc)
    assert again.status_code == 422 and again.json()["error"]["type"] == "UnprocessableEntity"


async def test_the_storage_refuses_an_authorization_header(api: httpx2.AsyncClient,
                                                           state: SandboxState) -> None:
    doc = await upload_target(api, state)
    put = await api.put(doc["latest_document_version"]["put_url"], content=b"%PDF",
                        headers=put_headers(doc))  # token attached
    assert put.status_code == 400 and state.storage == {}


async def test_the_storage_refuses_a_url_whose_signature_was_changed(
        raw: httpx2.AsyncClient, api: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    url = doc["latest_document_version"]["put_url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert (await raw.put(url, content=b"%PDF", headers=put_headers(doc))).status_code == 403


@pytest.mark.parametrize("drop", ["Content-Type", "x-amz-server-side-encryption"])
async def test_the_storage_refuses_an_upload_without_its_put_headers(
        raw: httpx2.AsyncClient, api: httpx2.AsyncClient, state: SandboxState, drop: str) -> None:
    doc = await upload_target(api, state)
    headers = {k: v for k, v in put_headers(doc).items() if k != drop}
    put = await raw.put(doc["latest_document_version"]["put_url"], content=b"%PDF", headers=headers)
    assert put.status_code == 403 and b"SignatureDoesNotMatch" in put.content and state.storage == {}


async def test_an_upload_url_expires_after_ten_minutes(raw: httpx2.AsyncClient) -> None:
    clock = FakeClock()
    state = SandboxState(clock=clock)
    state.add_user("Ann Lee", "ann@acme.example")
    token = state.issue_token()["access_token"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state)), base_url=API,
                                  headers={"Authorization": f"Bearer {token}"}) as api, \
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state))) as bare:
        late, in_time = await upload_target(api, state), await upload_target(api, state)
        clock.advance(600)
        ok = await bare.put(in_time["latest_document_version"]["put_url"], content=b"%PDF",
                            headers=put_headers(in_time))
        clock.advance(1)
        expired = await bare.put(late["latest_document_version"]["put_url"], content=b"%PDF",
                                 headers=put_headers(late))
    assert ok.status_code == 200
    assert expired.status_code == 403 and b"Request has expired" in expired.content


# --- folders ---------------------------------------------------------------------------


async def test_a_matters_folder_is_a_folder_inside_the_accounts_root(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    matter = state.add_matter(state.add_contact("Dana", "Whitfield"), "Lease dispute")
    r = await api.get(f"/matters/{matter}.json", params={"fields": "id,folder{id}"})
    folder = r.json()["data"]["folder"]["id"]
    listed = await api.get("/folders.json", params={"fields": "id,name,parent,root",
                                                    "ids[]": folder, "order": "id(asc)"})
    (row,) = listed.json()["data"]
    assert row["parent"]["type"] == "Folder" and row["root"] is False
    assert state.folders[row["parent"]["id"]]["root"] is True


async def test_a_folder_made_in_a_matter_is_a_child_of_the_matters_folder(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    matter = state.add_matter(state.add_contact("Dana", "Whitfield"), "Lease dispute")
    made = await api.post("/folders.json", params={"fields": "id,parent"}, json={
        "data": {"name": "Faxes", "parent": {"id": matter, "type": "Matter"}}})
    parent = made.json()["data"]["parent"]
    assert parent == {"id": state.matters[matter]["folder"]["id"], "type": "Folder"}
    children = await api.get("/folders.json", params={"fields": "id,name", "parent_id": parent["id"],
                                                      "order": "id(asc)"})
    assert [f["name"] for f in children.json()["data"]] == ["Faxes"]


async def test_the_fault_injector_in_front_answers_429_with_retry_after(
        app: Any, api: httpx2.AsyncClient) -> None:
    app.storm_retry_after = 3
    app.storm_until = time.monotonic() + 5  # the fault injector's own clock
    r = await api.get("/users.json", params={"fields": "id"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"


RATE = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}


@pytest.mark.parametrize(("path", "status"), [("/users.json", 200), ("/matters/1.json", 404),
                                               ("/contacts.json?fields=mood", 400)])
async def test_every_api_answer_carries_the_rate_headers(api: httpx2.AsyncClient, path: str,
                                                         status: int) -> None:
    r = await api.get(path)
    assert r.status_code == status and RATE <= set(r.headers)


async def test_the_per_token_limit_answers_429_until_the_window_resets() -> None:
    clock = FakeClock()
    state = SandboxState(clock=clock, rate_limit=(2, 60.0))
    state.add_user("Ann Lee", "ann@acme.example")
    token = state.issue_token()["access_token"]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state)), base_url=API,
                                  headers={"Authorization": f"Bearer {token}"}) as api:
        answers = [await api.get("/users.json") for _ in range(3)]
        clock.advance(60)
        after = await api.get("/users.json")
    reset = int(clock.now().timestamp())
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].headers["retry-after"] == "60"
    assert answers[0].headers["x-ratelimit-reset"] == str(reset)  # a Unix time: the window's end
    assert after.status_code == 200 and after.headers["x-ratelimit-remaining"] == "1"


@pytest.mark.parametrize("version", ["4.0.99", "5.0.0", "latest"])
async def test_an_invalid_api_version_is_410_gone(api: httpx2.AsyncClient, version: str) -> None:
    r = await api.get("/users.json", headers={"X-API-VERSION": version})
    assert r.status_code == 410


async def test_a_valid_api_version_is_answered_back(api: httpx2.AsyncClient) -> None:
    r = await api.get("/users.json", headers={"X-API-VERSION": "4.0.13"})
    assert r.status_code == 200 and r.headers["x-api-version"] == "4.0.13"


# --- enums and filters -------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    {"type": "SmsCommunication"},
    {"type": "PhoneCommunication", "senders": [{"id": 1, "type": "Person"}]},
    {"type": "PhoneCommunication", "receivers": [{"id": 1, "type": "user"}]},
])
async def test_communication_enums_are_checked(api: httpx2.AsyncClient, data: dict[str, Any]) -> None:
    r = await api.post("/communications.json", params={"fields": "id"}, json={"data": {
        "subject": "s", "body": "b", "received_at": "2026-03-02T15:00:00Z", **data}})
    assert r.status_code == 422


async def test_a_matter_status_outside_the_enum_is_a_400(api: httpx2.AsyncClient) -> None:
    assert (await api.get("/matters.json", params={"status": "Open"})).status_code == 400
    assert (await api.get("/matters.json", params={"status": "open,pending"})).status_code == 200


async def test_users_are_filtered_by_enabled_only_when_asked(api: httpx2.AsyncClient,
                                                             state: SandboxState) -> None:
    state.add_user("Old Hand", "old@acme.example", enabled=False)
    every = await api.get("/users.json", params={"fields": "email"})
    enabled = await api.get("/users.json", params={"fields": "email", "enabled": "true"})
    assert len(every.json()["data"]) == 2
    assert [u["email"] for u in enabled.json()["data"]] == ["ann@acme.example"]


# --- the contact search's matching modes ---------------------------------------------------


@pytest.mark.parametrize(("mode", "query", "found"), [
    ("substring", "0142", True), ("substring", "555-01", True),
    ("token", "0142", True), ("token", "555-0142", True), ("token", "2125550142", False),
    ("token", "555-01", False),
    ("prefix", "(212) 555", True), ("prefix", "0142", False),
    ("exact", "(212) 555-0142", True), ("exact", "(212) 555-014", False), ("exact", "0142", False),
])
def test_the_search_modes_match_as_documented(mode: Any, query: str, found: bool) -> None:
    assert text_matches(query, "(212) 555-0142", mode) is found


@pytest.mark.parametrize("mode", ["prefix", "exact"])
async def test_a_strict_search_finds_a_number_only_as_it_is_written(
        api: httpx2.AsyncClient, state: SandboxState, mode: Any) -> None:
    state.search_mode = mode
    state.add_contact("Dana", "Whitfield", ["(212) 555-0142"])

    async def hits(query: str) -> int:
        r = await api.get("/contacts.json", params={"fields": "id", "query": query})
        return len(r.json()["data"])

    assert await hits("0142") == 0 and await hits("+12125550142") == 0
    assert await hits("(212) 555-0142") == 1


async def test_seeded_relationships_and_matters_read_back(api: httpx2.AsyncClient,
                                                          state: SandboxState) -> None:
    client = state.add_contact("Lee", "Park")
    other = state.add_contact("Olive", "Opposing")
    matter = state.add_matter(client, "Contract", related={other: "Opposing party"})
    r = await api.get("/relationships.json", params={"fields": "description,matter{id,status}",
                                                     "contact_id": other})
    assert r.json()["data"] == [{"description": "Opposing party", "matter": {"id": matter, "status": "Open"}}]
