"""The sandbox answers with Smokeball's semantics (what the plugin's tests rely on)."""

from __future__ import annotations

import base64
import importlib.metadata
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.testing.clock import FakeClock
from callbridge_smokeball.api import to_ticks
from callbridge_smokeball.sandbox import ENV_SEED, SandboxState, build, create_app, serve

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def state(clock: FakeClock) -> SandboxState:
    st = SandboxState(clock=clock, rate_limited=False)  # the bucket has a test of its own
    st.issue_token(access_token="sbx-token", lifetime=10**6)
    return st


@pytest.fixture
async def api(state: SandboxState) -> AsyncIterator[httpx2.AsyncClient]:
    headers = {"x-api-key": state.api_key, "Authorization": "Bearer sbx-token"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state)),
                                  base_url="https://api.smokeball.com", headers=headers) as c:
        yield c


def ids(page: dict[str, Any]) -> list[str]:
    return [r["id"] for r in page["value"]]


async def test_every_call_needs_the_api_key_and_a_live_token(api: httpx2.AsyncClient,
                                                              state: SandboxState) -> None:
    assert (await api.get("/contacts", headers={"x-api-key": "wrong"})).status_code == 403
    assert (await api.get("/contacts", headers={"Authorization": "Bearer nope"})).status_code \
        == 401
    assert (await api.get("/contacts")).status_code == 200


async def test_a_write_is_accepted_and_readable_only_after_the_delay(
        api: httpx2.AsyncClient, state: SandboxState, clock: FakeClock) -> None:
    state.write_delay = 30
    answer = await api.post("/contacts", json={"person": {"lastName": "Quinn"}},
                            headers={"RequestId": "cb1-x:contact"})
    assert answer.status_code == 202 and answer.headers["RequestId"] == "cb1-x:contact"
    link = answer.json()
    assert set(link) == {"id", "href", "relation", "method"}
    assert (await api.get(f"/contacts/{link['id']}")).status_code == 404
    clock.advance(30)
    assert (await api.get(f"/contacts/{link['id']}")).json()["person"]["lastName"] == "Quinn"


async def test_a_lost_write_is_accepted_and_never_appears(api: httpx2.AsyncClient,
                                                          state: SandboxState,
                                                          clock: FakeClock) -> None:
    state.lose_next_writes = 1
    link = (await api.post("/contacts", json={"person": {"lastName": "Gone"}})).json()
    clock.advance(3600)
    assert (await api.get(f"/contacts/{link['id']}")).status_code == 404
    assert state.lost == [("contacts", link["id"])]


async def test_lists_page_by_offset_and_limit_with_the_total(api: httpx2.AsyncClient,
                                                             state: SandboxState) -> None:
    made = [state.add_contact("P", f"N{i}") for i in range(5)]
    page = (await api.get("/contacts", params={"Offset": 1, "Limit": 2})).json()
    assert page["size"] == 5 and page["offset"] == 1 and ids(page) == made[1:3]
    assert page["next"]["href"].endswith("limit=2&offset=3")
    assert (await api.get("/contacts", params={"Limit": 501})).status_code == 400


async def test_search_takes_fields_operators_and_wildcards(api: httpx2.AsyncClient,
                                                           state: SandboxState) -> None:
    dana = state.add_contact("Dana", "Whitfield", phone=("212", "555-0142"))
    dan = state.add_contact("Dan", "Hunter", cell=("", "0491 570 156"))

    async def search(*terms: str) -> list[str]:
        answer = await api.get("/contacts", params=[("Search", t) for t in terms])
        assert answer.status_code == 200, answer.text
        return ids(answer.json())

    assert await search("phone:*0142*") == [dana]
    assert await search("phone:*5550142*") == []  # text as typed: "555-0142"
    assert await search("phone:212*") == [dana]  # the area code with the number
    assert await search("name:dan*") == [dana, dan]  # case-insensitive prefix
    assert await search("name:dan*", "name:!*hunter*") == [dana]  # terms are ANDed
    assert (await api.get("/contacts", params={"Search": "colour:red"})).status_code == 400
    assert (await api.get("/contacts", params={"Search": "no operator"})).status_code == 400


async def test_updated_since_is_in_dotnet_ticks(api: httpx2.AsyncClient, state: SandboxState,
                                                clock: FakeClock) -> None:
    old = state.add_contact("Old", "One")
    clock.advance(60)
    new = state.add_contact("New", "One")
    since = to_ticks(START.replace(second=30))
    page = (await api.get("/contacts", params={"UpdatedSince": since})).json()
    assert ids(page) == [new] and old not in ids(page)
    assert page["value"][0]["lastUpdated"] == to_ticks(clock.now())
    assert (await api.get("/contacts", params={"UpdatedSince": "yesterday"})).status_code == 400


async def test_the_partner_bucket_answers_429_until_the_clock_refills_it(
        api: httpx2.AsyncClient, state: SandboxState, clock: FakeClock) -> None:
    state.rate_limited = True
    statuses = [(await api.get("/staff")).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    clock.advance(0.2)  # 5 a second: one token
    assert [(await api.get("/staff")).status_code for _ in range(2)] == [200, 429]


async def test_the_upload_refuses_a_content_type_or_a_credential(api: httpx2.AsyncClient,
                                                                 state: SandboxState) -> None:
    matter = state.add_matter("Lease", [])
    info = (await api.post(f"/matters/{matter}/documents/files",
                           json={"fileName": "fax.pdf"})).json()
    url = info["uploadUrl"]
    assert url.startswith(state.storage_host)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(state))) as bare:
        assert (await bare.put(url, content=b"%PDF",
                               headers={"Content-Type": "application/pdf"})).status_code == 403
        assert (await bare.put(url, content=b"%PDF", headers={
            "Content-Type": "", "x-api-key": state.api_key})).status_code == 403
        assert (await bare.put(url.replace("Signature=", "Signature=x"), content=b"%PDF",
                               headers={"Content-Type": ""})).status_code == 403
        assert (await bare.put(url, content=b"%PDF", headers={"Content-Type": ""})).status_code \
            == 200
    stored = (await api.get(f"/matters/{matter}/documents/files/{info['fileId']}")).json()
    assert stored["isUploaded"] is True and state.uploads[info["fileId"]] == b"%PDF"


async def test_client_credentials_put_the_account_first_and_need_no_browser(
        state: SandboxState) -> None:
    app = create_app(state)
    basic = base64.b64encode(f"{state.client_id}:{state.client_secret}".encode()).decode()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="https://auth.smokeball.com") as auth:
        token = (await auth.post("/oauth2/token", content=b"grant_type=client_credentials",
                                 headers={"Authorization": f"Basic {basic}"})).json()
        assert token["expires_in"] == 3600 and "refresh_token" not in token
        code_answer = await auth.get("/oauth2/authorize", params={
            "client_id": state.client_id, "redirect_uri": "https://app.example/cb",
            "state": "s1", "response_type": "code"})
        assert code_answer.status_code == 302
        code = code_answer.headers["location"].split("code=")[1].split("&")[0]
        form = f"grant_type=authorization_code&code={code}&client_id={state.client_id}" \
               f"&client_secret={state.client_secret}&redirect_uri=https://app.example/cb"
        user_token = (await auth.post("/oauth2/token", content=form.encode())).json()
        assert user_token["refresh_token"]
    headers = {"x-api-key": state.api_key, "Authorization": f"Bearer {token['access_token']}",
               "UserId": "user-1"}
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                                  base_url="https://api.smokeball.com", headers=headers) as c:
        assert (await c.get(f"/{state.account_id}/staff")).status_code == 200
    assert state.requests[-1]["user_id"] == "user-1"


def test_the_cli_sandbox_is_seeded_from_a_fixture_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="callbridge.sandboxes")}
    assert "smokeball" in names
    fixture = tmp_path / "firm.json"
    fixture.write_text(json.dumps({"staff": {"zed": {"firstName": "Zed", "lastName": "Ash",
                                                     "email": "zed@firm.example"}},
                                   "tokens": ["my-dev-token"]}))
    monkeypatch.setenv(ENV_SEED, str(fixture))
    app = serve()
    assert "my-dev-token" in capsys.readouterr().err
    st = app.smokeball
    assert [s["firstName"] for s in st.rows("staff")] == ["Zed"] and st.token_valid("my-dev-token")


def test_the_cli_sandbox_takes_its_own_options(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ep = next(ep for ep in importlib.metadata.entry_points(group="callbridge.sandboxes")
              if ep.name == "smokeball")
    assert callable(getattr(ep.load(), "serve", None))  # the CLI hands it --port and the rest
    state, seed = build("http://127.0.0.1:9000", ["--write-delay", "5", "--lose-writes", "2",
                                                  "--no-rate-limit"])
    assert (state.write_delay, state.lose_next_writes, state.rate_limited) == (5.0, 2, False)
    assert state.storage_host == "http://localhost:9000" and state.host == "http://127.0.0.1:9000"
    assert state.rows("staff") and "sandbox-dev-token" in capsys.readouterr().err
    assert seed["tokens"] == ["sandbox-dev-token"]
