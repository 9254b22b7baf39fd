"""Each vendor's samples posted through the server's intake route
(``POST /v1/sources/{tenant}/{source}``) land in the ledger, in any order, and each call
and message is logged in the app once; a request the vendor did not sign is refused and
quarantined."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.events import CallEvent, SmsEvent
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.state import ServerState

from tests.conftest import Notebook, write_config

DATA = Path(__file__).parent / "data" / "sources"
TWILIO = json.loads((DATA / "twilio.json").read_text())
AIRCALL = json.loads((DATA / "aircall.json").read_text())
PUBLIC = "https://callbridge.example.com"
SOURCES = f"""
[serve]
public_url = "{PUBLIC}"

[tenants.acme.sources.twilio]
format = "twilio"
secret_env = "TEST_TWILIO_TOKEN"
previous_secret_env = "TEST_TWILIO_OLD_TOKEN"

[tenants.acme.sources.twilio.options]
account_sid = "{TWILIO["account_sid"]}"

[tenants.acme.sources.aircall]
format = "aircall"
secret_env = "TEST_AIRCALL_TOKEN"
"""


@pytest.fixture
def state(tmp_path: Path, notebook: Notebook, secret_key: str,
          monkeypatch: pytest.MonkeyPatch) -> ServerState:
    monkeypatch.setenv("TEST_TWILIO_TOKEN", TWILIO["auth_token"])
    monkeypatch.setenv("TEST_TWILIO_OLD_TOKEN", TWILIO["old_auth_token"])
    monkeypatch.setenv("TEST_AIRCALL_TOKEN", AIRCALL["token"])
    config = write_config(tmp_path / "callbridge.toml", notebook.url, extra=SOURCES)
    return make_state(load(config), worker=False)


@pytest.fixture
async def client(state: ServerState) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=build_app(state))
    async with httpx2.AsyncClient(transport=transport, base_url="http://serve.test") as c:
        yield c
    await state.engine.aclose()


async def post(client: httpx2.AsyncClient, source: str, case: dict[str, Any]) -> httpx2.Response:
    headers = {"Content-Type": case["content_type"]}
    if "signature" in case:
        headers["X-Twilio-Signature"] = case["signature"]
    return await client.post(f"/v1/sources/acme/{source}", content=case["body"].encode(),
                             headers=headers)


def stored(state: ServerState, source: str, kind: str, event_id: str) -> Any:
    ledger = state.engine.ledger
    pk = ledger.find_event("acme", source, kind, event_id)
    assert pk is not None, event_id
    return ledger.load_event(pk)


async def test_twilios_callbacks_in_any_order_land_in_the_ledger_as_the_furthest_state(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    cases = [*TWILIO["requests"], TWILIO["rotated"]]
    random.Random(13).shuffle(cases)
    for case in cases:
        answer = await post(client, "twilio", case)
        assert answer.status_code == 200, answer.text
    again = await post(client, "twilio", TWILIO["requests"][0])  # Twilio retries a callback
    assert again.json()["events"][0]["result"] == "duplicate"

    first = stored(state, "twilio", "call", "CA" + "0" * 31 + "1")
    assert isinstance(first, CallEvent) and first.tenant == "acme"
    assert (first.state, first.outcome, first.sequence) == ("ended", "completed", 2)
    assert first.recording_url is not None
    dialled = stored(state, "twilio", "call", "CA" + "0" * 29 + "006")
    assert (dialled.state, dialled.direction) == ("ended", "outbound")
    message = stored(state, "twilio", "sms", "SM" + "0" * 29 + "001")
    assert isinstance(message, SmsEvent) and message.status == "delivered"
    assert stored(state, "twilio", "call", "CA" + "0" * 29 + "007").state == "ended"


async def test_aircalls_events_in_any_order_land_in_the_ledger_as_the_furthest_state(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    cases = list(AIRCALL["requests"])
    random.Random(13).shuffle(cases)
    for case in cases:
        answer = await post(client, "aircall", case)
        assert answer.status_code == 200, answer.text
    other = next(c for c in AIRCALL["requests"] if c["name"] == "another resource")
    assert (await post(client, "aircall", other)).json() == {"received": 0, "events": []}

    call = stored(state, "aircall", "call", "31001")
    assert (call.state, call.outcome, call.internal.email) == ("ended", "completed",
                                                               "ann@acme.example")
    assert call.recording_url is not None
    assert stored(state, "aircall", "call", "31003").outcome == "voicemail"


async def test_an_unsigned_or_foreign_request_is_refused_and_quarantined(
        client: httpx2.AsyncClient, state: ServerState) -> None:
    forged = dict(TWILIO["requests"][2], signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    answer = await post(client, "twilio", forged)
    assert answer.status_code == 401
    assert answer.json()["error"]["field"] == "X-Twilio-Signature"
    rotated_out = dict(AIRCALL["rotated"])  # the old webhook's token, no rotation configured
    answer = await post(client, "aircall", rotated_out)
    assert (answer.status_code, answer.json()["error"]["field"]) == (401, "token")
    assert [e.tenant for e in state.quarantine.entries()] == ["acme", "acme"]
    assert state.engine.ledger.find_event("acme", "twilio", "call", "CA" + "0" * 31 + "1") is None


async def test_both_vendors_days_sent_twice_in_any_order_log_each_call_and_message_once(
        client: httpx2.AsyncClient, state: ServerState, notebook: Notebook) -> None:
    posts = [("twilio", c) for c in [*TWILIO["requests"], TWILIO["rotated"]]]
    posts += [("aircall", c) for c in AIRCALL["requests"]]
    posts += posts  # every callback retried by its sender
    random.Random(7).shuffle(posts)
    for source, case in posts:
        assert (await post(client, source, case)).status_code == 200
    await state.engine.run_until_idle()

    outcomes = {(v.source, v.kind, v.source_id): v.status
                for v in state.engine.ledger.history(limit=1000)}
    assert len(outcomes) == 15  # 7 Twilio calls, 3 messages, 5 Aircall calls
    assert set(outcomes.values()) == {"logged"}
    markers = [entry["marker"] for entry in notebook.state.logs.values()]
    assert len(markers) == len(set(markers)) == 15  # nothing logged twice
