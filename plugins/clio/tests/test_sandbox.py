"""The Clio sandbox answers as Clio does: the shapes and refusals the plugin, the demo and
the end-to-end tests rely on. A plain client, no plugin code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from callbridge_clio.sandbox import SandboxState, create_app

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


async def test_paging_gives_full_next_urls_until_the_last_page(api: httpx2.AsyncClient,
                                                                state: SandboxState) -> None:
    for i in range(5):
        state.add_contact(f"C{i}", "Bulk")
    seen, url, pages = [], "/contacts.json", 0
    params: dict[str, Any] | None = {"fields": "id", "limit": 2}
    while url:
        body = (await api.get(url, params=params)).json()
        seen += [c["id"] for c in body["data"]]
        url, params, pages = body["meta"]["paging"].get("next"), None, pages + 1
        if url:
            assert url.startswith(f"{API}/contacts.json?") and "page_token=" in url and "fields=id" in url
    assert pages == 3 and seen == sorted(state.contacts)


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


async def test_the_upload_flow_stores_the_bytes_and_marks_the_document_complete(
        api: httpx2.AsyncClient, raw: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    version = doc["latest_document_version"]
    assert version["put_url"].startswith("https://app.clio.com/storage/")
    put = await raw.put(version["put_url"], content=b"%PDF",
                        headers={h["name"]: h["value"] for h in version["put_headers"]})
    assert put.status_code == 200
    done = await api.patch(f"/documents/{doc['id']}.json", params={
        "fields": "id,latest_document_version{fully_uploaded}"},
        json={"data": {"uuid": version["uuid"], "fully_uploaded": True}})
    assert done.json()["data"]["latest_document_version"] == {"fully_uploaded": True}


async def test_marking_a_document_complete_before_its_upload_is_upload_not_found(
        api: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    r = await api.patch(f"/documents/{doc['id']}.json", params={"fields": "id"}, json={
        "data": {"uuid": doc["latest_document_version"]["uuid"], "fully_uploaded": True}})
    assert r.status_code == 422 and r.json()["error"]["type"] == "UploadNotFoundError"


async def test_the_storage_refuses_an_authorization_header(api: httpx2.AsyncClient,
                                                           state: SandboxState) -> None:
    doc = await upload_target(api, state)
    put = await api.put(doc["latest_document_version"]["put_url"], content=b"%PDF")  # token attached
    assert put.status_code == 400 and state.storage == {}


async def test_the_storage_refuses_a_url_whose_signature_was_changed(
        raw: httpx2.AsyncClient, api: httpx2.AsyncClient, state: SandboxState) -> None:
    doc = await upload_target(api, state)
    url = doc["latest_document_version"]["put_url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert (await raw.put(url, content=b"%PDF")).status_code == 403


async def test_the_fault_injector_in_front_answers_429_with_retry_after(
        app: Any, api: httpx2.AsyncClient) -> None:
    app.storm_retry_after = 3
    app.storm_until = time.monotonic() + 5
    r = await api.get("/users.json", params={"fields": "id"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"


async def test_under_a_rate_limit_every_answer_carries_the_rate_headers(
        app: Any, api: httpx2.AsyncClient) -> None:
    app.rate_limit = (1, 60.0)
    rate = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
    first = await api.get("/users.json", params={"fields": "id"})
    second = await api.get("/users.json", params={"fields": "id"})
    assert first.status_code == 200 and rate <= set(first.headers)
    assert second.status_code == 429 and rate | {"retry-after"} <= set(second.headers)
    assert (first.headers["x-ratelimit-remaining"], second.headers["x-ratelimit-remaining"]) == ("0", "0")


async def test_seeded_relationships_and_matters_read_back(api: httpx2.AsyncClient,
                                                          state: SandboxState) -> None:
    client = state.add_contact("Lee", "Park")
    other = state.add_contact("Olive", "Opposing")
    matter = state.add_matter(client, "Contract", related={other: "Opposing party"})
    r = await api.get("/relationships.json", params={"fields": "description,matter{id,status}",
                                                     "contact_id": other})
    assert r.json()["data"] == [{"description": "Opposing party", "matter": {"id": matter, "status": "Open"}}]
