"""Smokeball's webhooks settle accepted writes, end to end over real HTTP on loopback: the
engine with a SQLite ledger file, the plugin by its entry point, the Smokeball sandbox
(which sends its signed webhooks to the subscribed URL as writes finish) and the host's
server (``callbridge.serve``: its app, with ``POST /v1/apps/{tenant}/{app}/events``)
served by uvicorn. One fake clock drives the engine and the sandbox."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from callbridge.appevents import RECHECK_EVERY
from callbridge.drain import drain
from callbridge.engine import Engine
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.quarantine import Quarantine
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.testing.clock import BusyTransport, FakeClock
from callbridge_smokeball.api import to_ticks
from callbridge_smokeball.sandbox import SandboxState, create_app
from callbridge_smokeball.sandbox.webhooks import send_due
from callbridge_smokeball.webhooks import signature

from plugins.smokeball.tests.conftest import FIRM, START, write_config
from plugins.smokeball.tests.samples import call

PATH = "/v1/apps/acme/smokeball/events"


@dataclass
class Firm:
    state: SandboxState
    clock: FakeClock
    engine: Engine
    quarantine: Quarantine
    url: str

    async def feed(self, *events: Any) -> list[int]:
        return [(await self.engine.ingest(e)).event_pk for e in events]

    def view(self, pk: int) -> Any:
        return self.engine.ledger.find_delivery("acme", "smokeball", pk)

    async def webhooks(self) -> list[int]:
        """Smokeball sends the notifications of the writes done by now."""
        with self.clock.busy():
            return await asyncio.to_thread(send_due, self.state)


@pytest.fixture
async def firm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Firm]:
    clock = FakeClock(START + timedelta(minutes=10), autojump=True)
    state = SandboxState(clock=clock, rate_limited=False)
    state.seed(FIRM)
    state.add_activity_code("CB-CALL")  # so a call's one write is its fee
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_ID", state.client_id)
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_SECRET", state.client_secret)
    monkeypatch.setenv("ACME_SMOKEBALL_API_KEY", state.api_key)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "smokeball")
    # The host's server, on loopback in this event loop (its worker is driven by the test).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # requests wait in the backlog until the server takes them
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with serve_in_thread(create_app(state)) as sandbox:
        state.host = sandbox
        state.storage_host = sandbox.replace("127.0.0.1", "localhost")
        config = write_config(tmp_path / "callbridge.toml", sandbox)
        config.write_text(config.read_text() + f'\n[serve]\npublic_url = "{url}"\n')
        rt = load(config, strict=True)
        engine = rt.engine(clock=clock, transports={
            "smokeball": BusyTransport(httpx2.AsyncHTTPTransport(), clock)})
        engine.ledger.token_set("acme", "smokeball", state.issue_token())
        server_state = make_state(rt, engine=engine, clock=clock, worker=False)
        quarantine = server_state.quarantine
        server = uvicorn.Server(uvicorn.Config(build_app(server_state), lifespan="off",
                                               log_level="warning", access_log=False))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield Firm(state, clock, engine, quarantine, url)
        finally:
            server.should_exit = True
            await serving
            sock.close()
            await engine.aclose()


async def subscribed(firm: Firm) -> None:
    assert await firm.engine.app_events.run_due(force=True) == 1


async def test_the_host_subscribes_once_and_keeps_the_key_in_the_ledger(firm: Firm) -> None:
    await subscribed(firm)
    [sub] = firm.state.webhooks.values()
    assert sub["eventNotificationUrl"] == firm.url + PATH
    assert {"error", "fee.created", "task.created", "memo.created",
            "contact.created"} <= set(sub["eventTypes"])
    kept = await firm.engine.app_events.kept("acme", "smokeball")
    assert kept is not None and kept.subscription.id == sub["id"]
    assert kept.subscription.secret == sub["key"] and len(sub["key"]) == 64
    # Nothing is due: a second run asks Smokeball nothing.
    posts = [r for r in firm.state.requests if r["path"] == "/webhooks"]
    assert await firm.engine.app_events.run_due(force=True) == 0
    assert [r for r in firm.state.requests if r["path"] == "/webhooks"] == posts
    # The key is kept encrypted: the ledger file does not hold it.
    ledger_file = Path(firm.engine.ledger.engine.url.database or "")
    assert sub["key"].encode() not in await asyncio.to_thread(ledger_file.read_bytes)


async def test_an_accepted_write_is_logged_when_smokeball_reports_it_done(firm: Firm) -> None:
    await subscribed(firm)
    [pk] = await firm.feed(call(id="sb-hook-1"))
    await drain(firm.engine, event_pks=[pk], wait_max=0)
    assert firm.view(pk).status == "accepted"
    duplicate = [dict(item) for item in firm.state.outbox]
    assert await firm.webhooks() == [200]
    view = firm.view(pk)
    # Logged at once, by the webhook: no confirmation check was needed.
    assert view.status == "logged" and [r.kind for r in view.records] == ["fee"]
    assert firm.engine.confirmer.calls == 0
    # Smokeball sends the same notification again: it changes nothing.
    attempts = view.attempts
    firm.state.outbox.extend(duplicate)
    assert await firm.webhooks() == [200]
    again = firm.view(pk)
    assert (again.status, again.records, again.attempts) == ("logged", view.records, attempts)


async def test_a_write_smokeball_reports_failed_is_written_again_once(firm: Firm) -> None:
    await subscribed(firm)
    firm.state.fail_next_writes = 1  # answered 202, then an `error` webhook
    [pk] = await firm.feed(call(id="sb-hook-2"))
    await drain(firm.engine, event_pks=[pk], wait_max=0)
    assert firm.view(pk).status == "accepted"
    assert await firm.webhooks() == [200]
    view = firm.view(pk)
    assert (view.status, view.reason, view.records) == ("waiting", "backoff", ())
    assert "Smokeball could not write the fee" in (view.message or "")
    # The retry looks for the fee by its marker, finds none, and writes it once more.
    await drain(firm.engine, event_pks=[pk], wait_max=600)
    assert firm.view(pk).status == "accepted"
    assert await firm.webhooks() == [200]
    view = firm.view(pk)
    assert view.status == "logged", (view.status, view.reason, view.message)
    fees = firm.state.rows("fees")
    assert len(fees) == 1 and len(firm.state.failed) == 1
    assert view.records[0].id.endswith(fees[0]["id"])
    assert firm.engine.confirmer.calls == 0


def _headers(firm: Firm, request_id: str, *, key: str, ago: timedelta = timedelta()) -> dict[str, str]:
    ticks = str(to_ticks(firm.clock.now() - ago))
    return {"Timestamp": ticks, "RequestId": request_id,
            "Signature": signature(key, ticks, request_id, firm.state.client_id)}


async def test_a_request_not_signed_by_smokeball_is_refused_and_kept_in_quarantine(
        firm: Firm) -> None:
    await subscribed(firm)
    [pk] = await firm.feed(call(id="sb-hook-3"))
    await drain(firm.engine, event_pks=[pk], wait_max=0)
    [item] = firm.state.outbox
    request_id = item["request_id"]
    body = json.dumps({"type": "fee.created", "payload": item["payload"]}).encode()
    key = next(iter(firm.state.webhooks.values()))["key"]
    async with httpx2.AsyncClient(base_url=firm.url) as client:
        forged = await client.post(PATH, content=body,
                                   headers=_headers(firm, request_id, key="a-guessed-key"))
        replayed = await client.post(PATH, content=body, headers=_headers(
            firm, request_id, key=key, ago=timedelta(minutes=6)))
        unsigned = await client.post(PATH, content=body, headers={"RequestId": request_id})
        elsewhere = await client.post("/v1/apps/nobody/smokeball/events", content=body,
                                      headers=_headers(firm, request_id, key=key))
        huge = await client.post(PATH, content=b"x" * (1024 * 1024 + 1),
                                 headers=_headers(firm, request_id, key=key))
        good = await client.post(PATH, content=body, headers=_headers(firm, request_id, key=key))
    assert [r.status_code for r in (forged, replayed, unsigned, elsewhere, huge)] == \
        [401, 401, 401, 404, 413]
    assert forged.json() == {"error": {"field": "signature",
                                       "problem": "the Signature does not match"}}
    assert replayed.json()["error"]["field"] == "timestamp"
    assert elsewhere.json()["error"]["field"] == "tenant"
    assert key not in forged.text + replayed.text + unsigned.text
    # Refused requests are kept, never processed: the write stayed accepted until the good one.
    entries = firm.quarantine.entries()
    assert len(entries) == 5 and {e.origin for e in entries} == {"app_event"}
    assert {e.tenant for e in entries} == {"acme", None}
    assert good.status_code == 200 and good.json()["confirmed"] == 1
    assert firm.view(pk).status == "logged"


async def test_a_subscription_smokeball_dropped_is_made_again_at_its_daily_check(
        firm: Firm) -> None:
    await subscribed(firm)
    first = await firm.engine.app_events.kept("acme", "smokeball")
    assert first is not None
    firm.state.webhooks.clear()  # e.g. the refresh token expired and access was granted again
    assert await firm.engine.app_events.run_due() == 0  # not due yet
    later = firm.clock.now() + timedelta(seconds=RECHECK_EVERY + 1)
    assert await firm.engine.app_events.run_due(later) == 1
    [sub] = firm.state.webhooks.values()
    kept = await firm.engine.app_events.kept("acme", "smokeball")
    assert kept is not None and kept.subscription.id == sub["id"] != first.subscription.id
    assert kept.renew_at > later
