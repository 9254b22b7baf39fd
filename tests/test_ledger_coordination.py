"""The cache, locks with fencing tokens, and the async gateway; across processes too."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from datetime import timedelta
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import (
    ContentErased,
    HeldLock,
    Ledger,
    LedgerGateway,
    LockLost,
)
from callbridge.services import LedgerCache, LedgerLocks
from callbridge.testing.clock import FakeClock

from tests.conftest import stored_bytes

NUMBER = "+12125550177"


raw = stored_bytes


# --- the cache -------------------------------------------------------------------------------

def test_a_cached_value_round_trips_per_tenant_and_app_until_it_expires(ledger: Ledger) -> None:
    now = ledger.clock.now()
    expires = ledger.cache_put("acme", "crm", "users", '["ann"]', 60, now=now)
    assert expires == now + timedelta(seconds=60)
    assert ledger.cache_get("acme", "crm", "users", now=now) == ('["ann"]', expires)
    assert ledger.cache_get("acme", "other", "users", now=now) is None
    assert ledger.cache_get("beta", "crm", "users", now=now) is None
    assert ledger.cache_get("acme", "crm", "users", now=expires) is None
    ledger.cache_put("acme", "crm", "users", '["bob"]', 60, now=now)  # replaced, not added
    assert ledger.cache_get("acme", "crm", "users", now=now) == ('["bob"]', expires)
    ledger.cache_delete("acme", "crm", "users")
    assert ledger.cache_get("acme", "crm", "users", now=now) is None


def test_a_cache_lifetime_must_be_positive(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        ledger.cache_put("acme", "crm", "k", "1", 0)


def test_cache_keys_and_values_are_not_in_the_file(ledger: Ledger) -> None:
    ledger.cache_put("acme", "crm", f"contact:{NUMBER}", '"sentinel-value-8812"', 60)
    data = raw(ledger)
    assert NUMBER.encode() not in data and b"sentinel-value-8812" not in data


def test_the_cache_is_erased_with_the_tenant_and_with_a_person(ledger: Ledger) -> None:
    for tenant in ("acme", "beta"):
        ledger.cache_put(tenant, "crm", "users", "[]", 60)
    ledger.erase_person("acme", NUMBER)
    assert ledger.cache_get("acme", "crm", "users") is None
    assert ledger.cache_get("beta", "crm", "users") is not None
    ledger.kv_set("beta", "crm", "k", "v")
    ledger.token_set("beta", "crm", {"access_token": "t"})
    ledger.erase_tenant("beta")
    with pytest.raises(ValueError, match="tenant: must not be empty"):
        ledger.erase_tenant("")
    assert ledger.cache_get("beta", "crm", "users") is None
    assert ledger.kv_get("beta", "crm", "k") is None and ledger.token_get("beta", "crm") is None


def test_erasing_a_tenant_erases_its_events_contents_only(ledger: Ledger) -> None:
    for tenant in ("acme", "beta"):
        ledger.store_event(parse_event({
            "kind": "sms", "id": "s-1", "tenant": tenant, "direction": "inbound",
            "external": {"number": NUMBER}, "sent_at": "2026-03-02T10:00:00Z", "body": "hi"}),
            apps=["crm"])
    assert ledger.erase_tenant("acme") == 1
    (acme,), (beta,) = ledger.history(tenant="acme"), ledger.history(tenant="beta")
    with pytest.raises(ContentErased):
        ledger.load_event(acme.event_pk)
    assert ledger.load_event(beta.event_pk).tenant == "beta"


def test_purge_drops_expired_cache_entries(ledger: Ledger) -> None:
    now = ledger.clock.now()
    ledger.cache_put("acme", "crm", "old", "1", 1, now=now - timedelta(seconds=5))
    ledger.cache_put("acme", "crm", "new", "2", 60, now=now)
    ledger.purge({}, now=now)
    with ledger.engine.connect() as conn:
        from callbridge.ledger import tables as t
        assert len(conn.execute(t.cache.select()).all()) == 1


# --- locks -----------------------------------------------------------------------------------

def test_a_lock_fence_only_rises_as_the_lock_changes_hands(ledger: Ledger) -> None:
    fences = []
    for _ in range(3):
        with ledger.lock(f"contact:{NUMBER}") as held:
            fences.append(held.fence)
    assert fences == [1, 2, 3]
    other = ledger.acquire_lock("another")
    assert other.fence == 1 and other.name_hash != ledger.lock_name_hash(f"contact:{NUMBER}")


def test_lock_names_are_stored_as_keyed_hashes(ledger: Ledger, key: str) -> None:
    handle = ledger.acquire_lock(f"contact:{NUMBER}")
    assert NUMBER.encode() not in raw(ledger)
    other = Ledger("sqlite://", secret_key=Ledger.generate_key())
    other.migrate()
    assert other.lock_name_hash(f"contact:{NUMBER}") != handle.name_hash


def test_a_lock_taken_over_after_expiry_fences_its_old_holder(ledger: Ledger,
                                                               ledger_url: str, key: str) -> None:
    clock = FakeClock(ledger.clock.now())
    timed = Ledger(ledger_url, secret_key=key, clock=clock)
    old = timed.acquire_lock("job", ttl=10)
    timed.check_fence(old)
    timed.renew_lock(old, 10)
    clock.advance(11)
    with pytest.raises(LockLost):
        timed.check_fence(old)  # expired: nobody holds it now
    new = timed.acquire_lock("job", ttl=10, wait=0)
    assert new.fence == old.fence + 1
    with pytest.raises(LockLost):
        timed.renew_lock(old, 10)
    with pytest.raises(LockLost):
        timed.check_fence(old)
    timed.release_lock(old)  # a stale release leaves the new holder alone
    timed.check_fence(new)
    assert timed.try_lock("job") is None
    timed.close()


def test_a_renewed_lock_outlives_its_first_lifetime(ledger_url: str, key: str, ledger: Ledger) -> None:
    clock = FakeClock(ledger.clock.now())
    timed = Ledger(ledger_url, secret_key=key, clock=clock)
    held = timed.acquire_lock("job", ttl=10)
    clock.advance(8)
    timed.renew_lock(held, 10)
    clock.advance(8)
    assert timed.try_lock("job") is None
    timed.check_fence(held)
    timed.close()


# --- the gateway and the async side ----------------------------------------------------------

async def test_the_gateway_runs_every_call_on_its_own_executor(ledger: Ledger) -> None:
    gw = ledger.gateway
    assert gw is ledger.gateway and isinstance(gw, LedgerGateway)
    name = await gw.run(lambda: threading.current_thread().name)
    assert name.startswith("callbridge-ledger")
    await gw.kv_set("acme", "crm", "k", "v")
    assert await gw.run(ledger.kv_get, "acme", "crm", "k") == "v"


def _cache(ledger: Ledger) -> LedgerCache:
    """``ctx.cache`` for acme/crm, as the engine builds it."""
    return LedgerCache(ledger.gateway, ledger, LedgerLocks(ledger.gateway, ledger), "acme", "crm")


async def test_an_async_lock_serialises_holders(ledger: Ledger) -> None:
    locks = LedgerLocks(ledger.gateway, ledger, ttl=30).for_app("acme", "crm")
    inside, most, fences = 0, 0, []

    async def work() -> None:
        nonlocal inside, most
        async with locks("activity_code") as held:
            inside += 1
            most = max(most, inside)
            fences.append(held.fence)
            for _ in range(3):
                await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(3)))
    assert most == 1 and fences == [1, 2, 3]


async def test_an_async_lock_is_renewed_while_held(ledger_url: str, key: str,
                                                   ledger: Ledger) -> None:
    clock = FakeClock(ledger.clock.now())
    timed = Ledger(ledger_url, secret_key=key, clock=clock)
    async with LedgerLocks(timed.gateway, timed, clock, ttl=30).for_app("acme", "crm")(
            "activity_code") as held:
        await asyncio.sleep(0)  # the renewer starts
        for _ in range(10):  # 100 s, far past the lock's lifetime
            held.renewed.clear()
            clock.advance(10)
            await held.renewed.wait()
        assert await timed.gateway.try_lock("acme\x1fcrm\x1factivity_code", ttl=30) is None
        await timed.gateway.check_fence(held.handle)
    timed.close()


async def test_a_held_lock_that_was_lost_says_so(ledger_url: str, key: str, ledger: Ledger) -> None:
    clock = FakeClock(ledger.clock.now())
    timed = Ledger(ledger_url, secret_key=key, clock=clock)
    held = HeldLock(timed.gateway, "job", ttl=30, wait=0)
    async with held:
        clock.advance(31)  # the renewer never ran: the lock expired
        timed.acquire_lock("job", wait=0)
        with pytest.raises(LockLost):
            await held.check()
    timed.close()


async def test_the_cache_loads_a_key_once_for_concurrent_callers(ledger: Ledger) -> None:
    cache = _cache(ledger)
    loads = 0
    loading, release = asyncio.Event(), asyncio.Event()

    async def loader() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        loading.set()
        await release.wait()
        return {"users": ("ann", "bob")}

    tasks = [asyncio.create_task(cache.get_or_load("users", loader, ttl=60)) for _ in range(4)]
    await loading.wait()
    await asyncio.sleep(0)  # let the other callers reach the cache
    release.set()
    assert await asyncio.gather(*tasks) == [{"users": ["ann", "bob"]}] * 4
    assert loads == 1
    await cache.invalidate("users")
    assert ledger.cache_get("acme", "crm", "users") is None


async def test_a_value_the_cache_cannot_keep_is_a_clear_error(ledger: Ledger) -> None:
    async def loader() -> object:
        return object()

    with pytest.raises(TypeError, match="not JSON-serialisable \\(object\\)"):
        await _cache(ledger).get_or_load(f"k:{NUMBER}", loader, ttl=60)


# --- two processes ----------------------------------------------------------------------------

def _count_under_lock(url: str, key: str, rounds: int, start: Any, out: Any) -> None:
    ledger = Ledger(url, secret_key=key)
    start.wait()
    fences = []
    for _ in range(rounds):
        with ledger.lock("counter", wait=60) as held:
            n = int(ledger.kv_get("acme", "crm", "n") or "0")
            ledger.check_fence(held)
            ledger.kv_set("acme", "crm", "n", str(n + 1))
            fences.append(held.fence)
    ledger.close()
    out.put(fences)


def test_two_processes_hold_a_lock_in_turn_with_rising_fences(ledger: Ledger, key: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_count_under_lock, args=(ledger.url, key, 20, start, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120), out.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    assert ledger.kv_get("acme", "crm", "n") == "40"  # no lost update: never two holders
    assert sorted(got[0] + got[1]) == list(range(1, 41))
    assert all(f == sorted(f) for f in got)


def _load_once(url: str, key: str, started: Any, go: Any, out: Any) -> None:
    ledger = Ledger(url, secret_key=key)

    async def loader() -> list[str]:
        ledger.kv_set("acme", "crm", f"load-{multiprocessing.current_process().name}", "1")
        go.wait(60)  # hold the load until every process is asking for the key
        return ["ann", "bob"]

    async def main() -> Any:
        started.put(1)
        return await _cache(ledger).get_or_load("users", loader, ttl=60)

    out.put(asyncio.run(main()))
    ledger.close()


def test_two_processes_load_a_cached_value_once(ledger: Ledger, key: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    started, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_load_once, args=(ledger.url, key, started, go, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        started.get(timeout=120)
    go.set()
    assert [out.get(timeout=120), out.get(timeout=120)] == [["ann", "bob"]] * 2
    for p in procs:
        p.join(timeout=30)
    with ledger.engine.connect() as conn:
        from callbridge.ledger import tables as t
        loads = conn.execute(t.kv.select().where(t.kv.c.key.like("load-%"))).all()
    assert len(loads) == 1
