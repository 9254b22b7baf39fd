"""Accepted writes confirmed by the host (SPEC §2.6), end to end: the engine, a SQLite
ledger file, the plugin by its entry point and the Smokeball sandbox over loopback,
one fake clock driving both sides (the plugin's stated delay passes in no time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.confirming import CONFIRM_AFTER
from callbridge.drain import drain
from callbridge.engine import Engine
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.testing.clock import BusyTransport, FakeClock
from callbridge_smokeball.sandbox import SandboxState, create_app

from plugins.smokeball.tests.conftest import FIRM, START, write_config
from plugins.smokeball.tests.samples import call


@dataclass
class Firm:
    state: SandboxState
    clock: FakeClock
    engine: Engine
    ids: dict[str, str]

    def reads(self, path_part: str) -> list[dict[str, Any]]:
        return [r for r in self.state.requests if r["method"] == "GET" and path_part in r["path"]]

    async def feed(self, *events: Any) -> list[int]:
        return [(await self.engine.ingest(e)).event_pk for e in events]

    def views(self, pks: list[int]) -> list[Any]:
        return [self.engine.ledger.find_delivery("acme", "smokeball", pk) for pk in pks]


@pytest.fixture
async def firm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Firm]:
    clock = FakeClock(START + timedelta(minutes=10), autojump=True)
    state = SandboxState(clock=clock)
    ids = state.seed(FIRM)
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_ID", state.client_id)
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_SECRET", state.client_secret)
    monkeypatch.setenv("ACME_SMOKEBALL_API_KEY", state.api_key)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "smokeball")
    with serve_in_thread(create_app(state)) as url:
        state.host = url
        state.storage_host = url.replace("127.0.0.1", "localhost")
        rt = load(write_config(tmp_path / "callbridge.toml", url), strict=True)
        engine = rt.engine(clock=clock, transports={
            "smokeball": BusyTransport(httpx2.AsyncHTTPTransport(), clock)})
        engine.ledger.token_set("acme", "smokeball", state.issue_token())
        try:
            yield Firm(state, clock, engine, ids)
        finally:
            await engine.aclose()


def calls(n: int) -> list[Any]:
    return [call(id=f"sb-confirm-{i}", started_at=f"2026-03-02T15:0{i % 10}:00+00:00",
                 answered_at=f"2026-03-02T15:0{i % 10}:06+00:00",
                 ended_at=f"2026-03-02T15:0{i % 10}:48+00:00") for i in range(n)]


async def test_accepted_writes_are_confirmed_in_one_read_and_become_logged(firm: Firm) -> None:
    pks = await firm.feed(*calls(6))
    # `ingest` treats accepted as ended: nothing is confirmed before the stated delay.
    await drain(firm.engine, event_pks=pks, wait_max=0)
    assert {v.status for v in firm.views(pks)} == {"accepted"}
    fees_read = len(firm.reads("/fees"))
    started = firm.clock.now()
    drained = await drain(firm.engine, event_pks=pks, wait_max=600, confirm=True)
    views = firm.views(pks)
    assert {v.status for v in views} == {"logged"}, [(v.status, v.reason) for v in views]
    assert all(len(v.records) == 1 and v.records[0].kind == "fee" for v in views)
    assert drained.confirmed == 6 and drained.left_open == 0
    # Six deliveries on one matter: one confirmation call, one read of that matter's fees.
    assert firm.engine.confirmer.calls == 1
    assert len(firm.reads("/fees")) - fees_read == 1
    assert firm.clock.now() - started >= timedelta(seconds=CONFIRM_AFTER)
    assert len(firm.state.rows("fees")) == 6


async def test_a_write_accepted_then_never_seen_is_written_again_once(firm: Firm) -> None:
    firm.state.lose_next_writes = 1  # the fee is answered 202 and never appears
    pks = await firm.feed(*calls(1))
    await drain(firm.engine, event_pks=pks, wait_max=0)
    [view] = firm.views(pks)
    assert view.status == "accepted" and len(firm.state.lost) == 1
    drained = await drain(firm.engine, event_pks=pks, wait_max=3600, confirm=True)
    [view] = firm.views(pks)
    assert view.status == "logged", (view.status, view.reason, view.message)
    assert drained.left_open == 0
    # The lost fee was looked up by its marker, not found, and written once more.
    fees = firm.state.rows("fees")
    assert len(fees) == 1 and len(firm.state.lost) == 1
    assert view.records[0].id.endswith(fees[0]["id"])
    assert firm.state.lost[0][1] != fees[0]["id"]


async def test_a_check_that_cannot_tell_yet_is_repeated_later_not_failed(
        firm: Firm, monkeypatch: pytest.MonkeyPatch) -> None:
    pks = await firm.feed(*calls(2))
    await drain(firm.engine, event_pks=pks, wait_max=0)
    # Smokeball's reads fail for a while: the checks cannot tell; the writes stay accepted.
    firm.state.rate_limited = True
    firm.state.burst = 0
    firm.state.rate = 0.0
    await drain(firm.engine, event_pks=pks, wait_max=CONFIRM_AFTER * 2, confirm=True)
    views = firm.views(pks)
    assert {v.status for v in views} == {"accepted"}
    assert all(v.next_attempt_at is not None and v.next_attempt_at > firm.clock.now()
               for v in views)
    assert firm.engine.confirmer.calls >= 1
    # Smokeball answers again: the next check confirms them.
    firm.state.burst, firm.state.rate = 5, 5.0
    await drain(firm.engine, event_pks=pks, wait_max=3600, confirm=True)
    assert {v.status for v in firm.views(pks)} == {"logged"}


async def test_serve_confirms_accepted_writes_as_their_checks_fall_due(firm: Firm) -> None:
    pks = await firm.feed(*calls(3))
    stop = asyncio.Event()
    serving = asyncio.create_task(firm.engine.serve(stop))
    try:
        for _ in range(40):  # up to 20 minutes of the fake clock
            await firm.clock.sleep(30)
            if {v.status for v in firm.views(pks)} == {"logged"}:
                break
    finally:
        stop.set()
        await serving
    assert {v.status for v in firm.views(pks)} == {"logged"}
    assert firm.engine.confirmer.calls == 1


async def test_a_record_kept_from_an_earlier_attempt_is_confirmed_not_written_again(
        firm: Firm) -> None:
    # The fee is written by a first attempt; the delivery is then retried long after
    # (as when the worker that wrote it died): the retry finds the fee by its marker
    # and ends accepted minutes after the fee was written. The check must still see it.
    pks = await firm.feed(*calls(1))
    await drain(firm.engine, event_pks=pks, wait_max=0)
    [view] = firm.views(pks)
    ledger, now = firm.engine.ledger, firm.clock.now()
    [due] = ledger.accepted_due(now=now + timedelta(hours=1), owner="gone", lease_seconds=60)
    assert ledger.reopen_unconfirmed(due.delivery_id, retry_at=now + timedelta(minutes=10),
                                     message="retried", now=now, owner="gone")
    firm.clock.advance(600)
    await drain(firm.engine, event_pks=pks, wait_max=0)
    assert firm.views(pks)[0].status == "accepted"
    drained = await drain(firm.engine, event_pks=pks, wait_max=3600, confirm=True)
    [view] = firm.views(pks)
    assert view.status == "logged", (view.status, view.reason, view.message)
    assert drained.left_open == 0
    assert len(firm.state.rows("fees")) == 1
    assert firm.engine.confirmer.calls == 1  # confirmed at the first check
