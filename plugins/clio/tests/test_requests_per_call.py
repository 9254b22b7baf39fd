"""How many Clio API requests one logged event costs (the figures in docs/plugins/clio.md).

With the phone index and the matter index warm and the users cached: a completed call
of a known contact costs 2 requests (the communication and the time entry), a missed
one 1; a call from an unknown caller, under creation policy ``none`` with exclusive
association off, 1 when missed and 2 when completed; plus the tenant's share of the
index syncs. Run: ``python -m pytest plugins/clio/tests/test_requests_per_call.py -v``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import callbridge_clio as plugin
import pytest
from callbridge.context import HookContext
from callbridge.events import parse_event
from callbridge.models import Contact, LogTarget
from callbridge.testing.clock import FakeClock

COMM, ENTRY = "POST /api/v4/communications.json", "POST /api/v4/activities.json"


def call(i: int, number: str = "2125550142", *, outcome: str = "completed",
         at: datetime = datetime(2026, 3, 2, 15, tzinfo=UTC)) -> Any:
    answered = outcome == "completed"
    return parse_event({
        "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
        "external": {"number": number}, "internal": {"extension": "101"},
        "started_at": at.isoformat(),
        "answered_at": (at + timedelta(seconds=12)).isoformat() if answered else None,
        "ended_at": (at + timedelta(minutes=6)).isoformat(), "outcome": outcome})


def api_requests(sandbox: Any) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.state.requests
            if r["path"].startswith("/api/v4/")]


async def requests_for(engine: Any, sandbox: Any, event: Any) -> list[str]:
    sandbox.state.requests.clear()
    await engine.ingest(event)
    await engine.run_until_idle()
    return api_requests(sandbox)


@pytest.fixture
async def warm(clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> Any:
    """An engine with the phone index synced, and the matter index and the users loaded
    by a first call (from Sam, not from the contacts measured)."""
    engine = clio_engine()
    await engine.sync_indexes()
    await requests_for(engine, sandbox, call(0, "+1 646 555 0111"))
    return engine


async def test_a_completed_call_of_a_known_contact_costs_two_requests_first_or_repeat(
        warm: Any, sandbox: Any) -> None:
    first = await requests_for(warm, sandbox, call(1))
    repeat = await requests_for(warm, sandbox, call(2))
    assert first == [COMM, ENTRY] and repeat == [COMM, ENTRY]


async def test_a_missed_call_of_a_known_contact_costs_one_request(warm: Any, sandbox: Any) -> None:
    assert await requests_for(warm, sandbox, call(1, outcome="missed")) == [COMM]




async def test_a_missed_call_from_an_unknown_caller_costs_one_request(warm: Any,
                                                                      sandbox: Any) -> None:
    assert await requests_for(warm, sandbox, call(1, "+1 718 555 0130", outcome="missed")) == [COMM]


async def test_a_completed_call_from_an_unknown_caller_costs_two_requests(warm: Any,
                                                                          sandbox: Any) -> None:
    assert await requests_for(warm, sandbox, call(1, "+1 718 555 0130")) == [COMM, ENTRY]


async def test_a_call_before_any_sync_pays_the_live_search_and_the_matter_sync(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    asked = await requests_for(clio_engine(), sandbox, call(1))
    # A live search (the last four digits and six forms), the matter index's first sync
    # (matters, relationships), the users, the activity description the host ensures once
    # per tenant (found, else created), then the two writes.
    assert asked == ["GET /api/v4/contacts.json"] * 7 + [
        "GET /api/v4/matters.json", "GET /api/v4/relationships.json", "GET /api/v4/users.json",
        "GET /api/v4/activity_descriptions.json", "POST /api/v4/activity_descriptions.json",
        COMM, ENTRY]


# --- a day's stretch: 15 calls from 3 known contacts over 10 minutes ---------------------------


async def test_fifteen_calls_from_three_known_contacts_over_ten_minutes_cost_at_most_36(
        clio: Any, hook_ctx: HookContext) -> None:
    """The hooks the pipeline calls for each call (the phone index answers the contact),
    with one fake clock for the matter index's staleness; both indexes warm at the start."""
    clock = FakeClock(datetime(2026, 3, 2, 15, tzinfo=UTC))
    ctx = dataclasses.replace(hook_ctx, clock=clock)
    st = clio.state
    people = [st.add_contact("Dana", "Whitfield", ["(212) 555-0142"]),
              st.add_contact("Sam", "Ortiz", ["+1 646 555 0111"]),
              st.add_contact("Lee", "Park", ["212.555.0150"])]
    st.add_matter(people[0], "Lease dispute")
    st.add_matter(people[1], "Estate", related={people[2]: "Executor"})
    await plugin.find_matters(ctx, Contact(id=str(people[0])))  # warm: the matter index
    await plugin.find_user(ctx, "ann@acme.example")  # and the users
    st.requests.clear()
    for i in range(15):  # one call every 40 seconds
        contact = Contact(id=str(people[i % 3]))
        matters = await plugin.find_matters(ctx, contact)
        user = await plugin.find_user(ctx, "ann@acme.example")
        target = LogTarget(contacts=(contact,), matter=matters[0] if len(matters) == 1 else None,
                           user=user)
        delivered = dataclasses.replace(ctx, delivery=type(hook_ctx.delivery)())
        await plugin.log_call(delivered, call(i, at=clock.now()), target)
        clock.advance(40)
    asked = [f"{r['method']} {r['path']}" for r in st.requests]
    writes = [a for a in asked if a in (COMM, ENTRY)]
    syncs = [a for a in asked if a not in (COMM, ENTRY)]
    print(f"15 calls over 10 minutes: {len(asked)} requests ({len(writes)} writes, "
          f"{len(syncs)} for syncs: {syncs})")
    assert len(writes) == 30 and len(st.communications) == 15 and len(st.activities) == 15
    # The matter index goes stale once (after five minutes): matters and relationships
    # changed since; the users stay cached for fifteen minutes.
    assert syncs == ["GET /api/v4/matters.json", "GET /api/v4/relationships.json"]
    assert len(asked) <= 36


async def test_fifteen_calls_through_the_engine_over_ten_minutes_cost_at_most_36(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    """The same stretch through the host's engine: phone index synced and the matter
    index, users and activity code loaded by a first call (from another contact); one
    fake clock for the engine, its limiter, the plugin's staleness and the sandbox."""
    import httpx2
    from callbridge.testing.clock import BusyTransport

    clock = FakeClock(datetime(2026, 3, 2, 15, tzinfo=UTC), autojump=True)
    sandbox.state.clock = sandbox.faults.clock = clock
    engine = clio_engine(clock=clock, transports={
        "clio": BusyTransport(httpx2.AsyncHTTPTransport(), clock)})
    await engine.sync_indexes()
    await requests_for(engine, sandbox, call(0, "2125550160", at=clock.now()))  # Olive
    numbers = ["2125550142", "+1 646 555 0111", "212.555.0150"]  # Dana, Sam, Lee
    sandbox.state.requests.clear()
    started = clock.now()
    for i in range(15):  # one call every 40 seconds
        await engine.ingest(call(i + 1, numbers[i % 3], at=clock.now()))
        await engine.run_until_idle()
        clock.advance(40)
    asked = api_requests(sandbox)
    writes = [a for a in asked if a in (COMM, ENTRY)]
    print(f"15 calls through the engine over {(clock.now() - started).total_seconds():.0f} s: "
          f"{len(asked)} requests ({len(writes)} writes, {len(asked) - len(writes)} for syncs: "
          f"{[a for a in asked if a not in (COMM, ENTRY)]})")
    assert len(writes) == 30 and sandbox.faults.count(status=429) == 0
    assert len(asked) <= 36
