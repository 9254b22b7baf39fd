"""The host's services over a real ledger: the write protocol (``ctx.delivery.step``),
``ctx.cache.get_or_load`` and ``ctx.lock``."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import DuplicateRecord, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record
from callbridge.services import LedgerCache, LedgerDelivery, LedgerLocks
from callbridge.testing.clock import FakeClock


class Thread:
    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


GW = Thread()


def claim_one(ledger: Ledger) -> Any:
    [claim] = ledger.claim(owner="w1", limit=1, lease_seconds=60)
    return claim


@pytest.fixture
def stored(ledger: Ledger) -> Ledger:
    ledger.store_event(parse_event({
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+1 212 555 0142"}, "started_at": "2026-03-02T10:00:00Z",
        "ended_at": "2026-03-02T10:05:00Z", "outcome": "completed"}), apps=["crm"])
    return ledger


class App:
    """An app that counts what it is asked."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.finds = 0
        self.lose_answer = False

    async def create(self) -> str:
        self.created.append(f"r{len(self.created) + 1}")
        if self.lose_answer:
            raise ConnectionError("the answer was lost")
        return self.created[-1]

    async def find(self) -> str | None:
        self.finds += 1
        return self.created[-1] if self.created else None


async def test_a_first_attempt_creates_once_and_keeps_the_record_at_once(stored: Ledger) -> None:
    app = App()
    delivery = LedgerDelivery(GW, stored, claim_one(stored), "m")
    first = await delivery.step("communication", "communication", create=app.create, find=app.find)
    again = await delivery.step("communication", "communication", create=app.create, find=app.find)
    assert first == again == Record(kind="communication", id="r1", step="communication")
    assert app.created == ["r1"] and app.finds == 0  # a first attempt never looks
    assert stored.records(delivery.claim.delivery_id) == (first,)


async def test_after_an_uncertain_write_the_next_attempt_finds_before_creating(stored: Ledger) -> None:
    app = App()
    app.lose_answer = True
    claim = claim_one(stored)
    with pytest.raises(ConnectionError):
        await LedgerDelivery(GW, stored, claim, "m").step("time_entry", "time_entry",
                                                         create=app.create, find=app.find)
    stored.finish(claim, Outcome(status=OutcomeStatus.PENDING))  # due again at once
    app.lose_answer = False
    retry = LedgerDelivery(GW, stored, claim_one(stored), "m")
    record = await retry.step("time_entry", "time_entry", create=app.create, find=app.find)
    assert record.id == "r1" and app.created == ["r1"] and app.finds == 1
    assert stored.records(claim.delivery_id) == (record,)


async def test_an_uncertain_write_not_found_is_created(stored: Ledger) -> None:
    claim = claim_one(stored)
    stored.begin_step(claim, "document", "document")  # began, then the process died
    stored.finish(claim, Outcome(status=OutcomeStatus.PENDING))
    app = App()
    retry = LedgerDelivery(GW, stored, claim_one(stored), "m")
    record = await retry.step("document", "document", create=app.create, find=app.find)
    assert app.finds == 1 and app.created == ["r1"] and record.id == "r1"


async def test_a_second_record_for_one_step_is_an_error(stored: Ledger) -> None:
    delivery = LedgerDelivery(GW, stored, claim_one(stored), "m")
    await delivery.remember(Record(kind="contact", id="1", step="create_contact"))
    await delivery.remember(Record(kind="contact", id="1", step="create_contact"))  # same: fine
    with pytest.raises(DuplicateRecord):
        await delivery.remember(Record(kind="contact", id="2", step="create_contact"))


async def test_the_cache_loads_once_for_concurrent_callers_and_again_after_its_ttl(
        stored: Ledger) -> None:
    clock = FakeClock()  # the entries' lifetimes; the locks wait on the real clock
    cache = LedgerCache(GW, stored, LedgerLocks(GW, stored), "acme", "crm", clock)
    other = LedgerCache(GW, stored, LedgerLocks(GW, stored), "acme", "crm", clock)
    loads = 0

    async def loader() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return {"users": [1, 2]}

    got = await asyncio.gather(*(c.get_or_load("users", loader, ttl=60)
                                 for c in (cache, other, cache, other)))
    assert got == [{"users": [1, 2]}] * 4 and loads == 1
    clock.advance(59)
    assert await other.get_or_load("users", loader, ttl=60) == {"users": [1, 2]} and loads == 1
    clock.advance(2)
    await cache.get_or_load("users", loader, ttl=60)
    assert loads == 2
    await cache.invalidate("users")
    await other.get_or_load("users", loader, ttl=60)
    assert loads == 3


async def test_the_cache_is_per_tenant_and_app(stored: Ledger) -> None:
    locks = LedgerLocks(GW, stored)
    a = LedgerCache(GW, stored, locks, "acme", "crm", FakeClock())
    b = LedgerCache(GW, stored, locks, "acme", "other", FakeClock())

    async def one() -> int:
        return 1

    async def two() -> int:
        return 2
    assert (await a.get_or_load("k", one, ttl=60), await b.get_or_load("k", two, ttl=60)) == (1, 2)


async def test_a_lock_serialises_holders_of_two_processes_on_one_database(
        stored: Ledger, ledger_url: str, key: str) -> None:
    second = Ledger(ledger_url, secret_key=key)  # another process's ledger object
    order: list[str] = []
    one, two = LedgerLocks(GW, stored), LedgerLocks(GW, second)

    async def hold(locks: LedgerLocks, name: str) -> bool:
        async with locks.hold("acme", "crm", "contact:+12125550142") as held:
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")
            return held.waited

    waited = await asyncio.gather(hold(one, "a"), hold(two, "b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    assert sorted(waited) == [False, True]


async def test_a_lock_name_holding_a_number_is_not_stored_in_clear(stored: Ledger) -> None:
    import sqlalchemy as sa

    locks = LedgerLocks(GW, stored)
    async with locks.hold("acme", "crm", "contact:+12125550142"):
        with stored.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.text("select name_hash from locks"))]
    assert names and not any("5550142" in n for n in names)
