"""The HubSpot sandbox keeps HubSpot's documented rules (what the plugin's tests rely on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.testing.clock import FakeClock
from callbridge_hubspot.portal import ENV_SEED, Portal
from callbridge_hubspot.sandbox import Limits, create_app

TOKEN = "pat-na1-sandbox-test"


@pytest.fixture
def portal() -> Portal:
    p = Portal(clock=FakeClock(), tokens={TOKEN})
    p.add_contact("Dana", "Whitfield", "(212) 555-0142", email="dana@example.com")
    return p


def client(app: Any, token: str = TOKEN) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app),
                              base_url="https://api.hubapi.com",
                              headers={"Authorization": f"Bearer {token}"})


def search(*groups: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"filterGroups": [{"filters": g} for g in groups], **extra}


EQ = {"propertyName": "phone", "operator": "EQ", "value": "x"}


@pytest.mark.parametrize(("body", "problem"), [
    (search(*[[EQ]] * 6), "at most 5 filterGroups"),
    (search([EQ] * 7), "at most 6 filters a group"),
    (search(*[[EQ] * 4] * 5), "at most 18 filters"),
    (search([EQ], limit=201), "limit must be between"),
    (search([{"propertyName": "phone", "operator": "LIKE", "value": "x"}]), "known operator"),
    (search([EQ], query="x" * 3001), "3000 characters"),
    (search([EQ], after="10000"), "at most 10000 results"),
])
async def test_search_refuses_what_hubspot_refuses(portal: Portal, body: dict[str, Any],
                                                   problem: str) -> None:
    async with client(create_app(portal, faults=False)) as http:
        r = await http.post("/crm/v3/objects/contacts/search", json=body)
    assert r.status_code == 400 and problem in r.json()["message"]


async def test_a_write_is_searchable_only_after_the_delay(portal: Portal) -> None:
    portal.search_delay = 2.0
    clock = portal.clock
    assert isinstance(clock, FakeClock)
    body = search([{"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ",
                    "value": "2125550177"}])
    async with client(create_app(portal, faults=False)) as http:
        made = await http.post("/crm/v3/objects/contacts", json={
            "properties": {"firstname": "Rae", "phone": "+1 212 555 0177"}})
        assert made.status_code == 201
        assert (await http.post("/crm/v3/objects/contacts/search", json=body)).json()["total"] == 0
        clock.advance(2.0)
        found = (await http.post("/crm/v3/objects/contacts/search", json=body)).json()
    assert [c["id"] for c in found["results"]] == [made.json()["id"]]


async def test_unknown_properties_options_and_read_only_values_are_400(portal: Portal) -> None:
    async with client(create_app(portal, faults=False)) as http:
        r = await http.post("/crm/v3/objects/calls", json={"properties": {
            "hs_timestamp": "2026-03-02T15:00:00Z", "hs_call_status": "DONE", "made_up": "1",
            "hs_object_id": "5"}})
    codes = sorted(e["code"] for e in r.json()["errors"])
    assert r.status_code == 400 and codes == ["INVALID_OPTION", "PROPERTY_DOESNT_EXIST",
                                              "READ_ONLY_VALUE"]


async def test_an_association_type_must_fit_the_objects(portal: Portal) -> None:
    async with client(create_app(portal, faults=False)) as http:
        r = await http.post("/crm/v3/objects/calls", json={
            "properties": {"hs_timestamp": "2026-03-02T15:00:00Z"},
            "associations": [{"to": {"id": "101"}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 81}]}]})
    assert r.status_code == 400


async def test_no_unique_values_on_calls(portal: Portal) -> None:
    async with client(create_app(portal, faults=False)) as http:
        r = await http.post("/crm/v3/properties/calls", json={
            "name": "x_id", "label": "X", "type": "string", "fieldType": "text",
            "groupName": "callinformation", "hasUniqueValue": True})
    assert r.status_code == 400 and "unique" in r.json()["message"]


async def test_the_burst_limit_answers_429_with_its_policy_and_headers(portal: Portal) -> None:
    async with client(create_app(portal, limits=Limits(burst=2), faults=False)) as http:
        first = await http.get("/crm/v3/owners")
        await http.get("/crm/v3/owners")
        third = await http.get("/crm/v3/owners")
    assert first.headers["X-HubSpot-RateLimit-Max"] == "2"
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "1"
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert third.status_code == 429 and third.json()["policyName"] == "TEN_SECONDLY_ROLLING"


async def test_searches_have_their_own_limit_and_no_rate_headers(portal: Portal) -> None:
    async with client(create_app(portal, limits=Limits(search_per_second=1), faults=False)) as http:
        first = await http.post("/crm/v3/objects/contacts/search", json={})
        second = await http.post("/crm/v3/objects/contacts/search", json={})
    assert "X-HubSpot-RateLimit-Remaining" not in first.headers
    assert second.status_code == 429


async def test_the_daily_budget_resets_at_the_portals_midnight(portal: Portal) -> None:
    clock = portal.clock
    assert isinstance(clock, FakeClock)  # 15:00 UTC = 10:00 in New York
    async with client(create_app(portal, limits=Limits(daily=1), faults=False)) as http:
        assert (await http.get("/crm/v3/owners")).headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
        refused = await http.get("/crm/v3/owners")
        clock.advance(14 * 3600 - 60)  # 04:59 UTC: still the same day in New York
        still = await http.get("/crm/v3/owners")
        clock.advance(120)  # 05:01 UTC: just past midnight there
        again = await http.get("/crm/v3/owners")
    assert refused.status_code == 429 and refused.json()["policyName"] == "DAILY"
    assert (still.status_code, again.status_code) == (429, 200)


async def test_a_token_without_a_browser(portal: Portal) -> None:
    app = create_app(portal, faults=False)
    async with client(app, token="nothing") as http:
        assert (await http.get("/crm/v3/owners")).status_code == 401
        token = (await http.post("/sandbox/private-apps")).json()["token"]
    async with client(app, token=token) as http:
        assert (await http.get("/crm/v3/owners")).status_code == 200


async def test_the_default_sandbox_is_seeded_from_a_fixture_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"tokens": ["pat-na1-seeded"], "portal": {"timeZone": "Europe/London"},
                                "owners": [{"firstName": "Ann", "lastName": "Lee",
                                            "email": "ann@acme.example"}]}))
    monkeypatch.setenv(ENV_SEED, str(seed))
    async with client(create_app(), token="pat-na1-seeded") as http:
        owners = (await http.get("/crm/v3/owners")).json()["results"]
        zone = (await http.get("/account-info/v3/details")).json()["timeZone"]
    assert [o["email"] for o in owners] == ["ann@acme.example"] and zone == "Europe/London"


async def test_the_bundled_seed_has_a_token_and_a_portal() -> None:
    async with client(create_app(), token="pat-na1-sandbox-0000-0000-0000-000000000000") as http:
        r = await http.post("/crm/v3/objects/contacts/search", json={"limit": 10})
    assert r.status_code == 200 and r.json()["total"] >= 4


def test_the_sandbox_command_serves_hubspot_on_loopback(tmp_path: Path) -> None:
    """`callbridge sandbox hubspot` serves the seeded portal; the seed's token works."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"tokens": ["pat-na1-cli"], "owners": [
        {"firstName": "Ann", "lastName": "Lee", "email": "ann@acme.example"}]}))
    env = {**os.environ, ENV_SEED: str(seed)}
    proc = subprocess.Popen([sys.executable, "-m", "callbridge", "sandbox", "hubspot", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx2.get(f"http://127.0.0.1:{port}/crm/v3/owners",
                                    headers={"Authorization": "Bearer pat-na1-cli"})
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.2)  # a real process starting: nothing to inject a clock into
        assert answer.status_code == 200
        assert [o["email"] for o in answer.json()["results"]] == ["ann@acme.example"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
