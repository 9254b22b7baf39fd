"""How many HubSpot requests a logged call costs (the figures in docs/plugins/hubspot.md).

Plugin level: the hooks called as the host calls them, every request the sandbox
sees counted. The backlog goes through ``log_batch`` in groups of the declared
batch size, as the host's worker hands them over.
"""

from __future__ import annotations

from typing import Any

import callbridge_hubspot as hs
from callbridge.models import Contact, LogTarget
from callbridge_hubspot import batch
from callbridge_hubspot.portal import Portal

from plugins.hubspot.tests.conftest import Delivery
from plugins.hubspot.tests.test_hooks import DANA, call


async def warm(ctx: Any) -> None:
    """The phone index synced, the owners list and the marker property cached."""
    cursor = None
    while True:
        page = await hs.contacts_changed_since(ctx, None, cursor)
        cursor = page.cursor
        if cursor is None:
            break
    await hs.find_user(ctx, "ann@acme.example")
    await hs.marker_property(ctx, await hs.api_for(ctx), "calls")


async def test_a_call_of_a_known_contact_costs_one_request(hook_ctx: Any, portal: Portal) -> None:
    await warm(hook_ctx)
    before = len(portal.requests)
    user = await hs.find_user(hook_ctx, "ann@acme.example")
    await hs.log_call(hook_ctx, call(), LogTarget(contacts=(DANA,), user=user))
    assert [f"{r['method']} {r['path']}" for r in portal.requests[before:]] == [
        "POST /crm/v3/objects/calls"]


async def test_a_backlog_of_a_thousand_calls_costs_under_five_hundredths_a_call(
        hook_ctx: Any, portal: Portal) -> None:
    known = [portal.add_contact("Client", f"No {i}", f"+1212555{i % 100:04d}"
                                if i < 100 else f"+1646555{i % 100:04d}"
                                if i < 200 else f"+1718555{i % 100:04d}") for i in range(300)]
    start = len(portal.requests)
    await warm(hook_ctx)  # counted: the index sync, the owners, the marker property
    user = await hs.find_user(hook_ctx, "ann@acme.example")
    work = []
    for i in range(1000):
        if i < 900:  # three calls from each known contact, served by the index
            target = LogTarget(contacts=(Contact(id=known[i // 3]),), user=user)
        else:  # unknown numbers, creation policy none: logged without a contact
            target = LogTarget(user=user)
        work.append(batch.BatchItem(event=call(id=f"backlog-{i}"), target=target,
                                    delivery=Delivery(marker=f"cb1-backlog-{i}")))
    size = hs.declare().model_dump().get("batch_size") or 100
    results = []
    for group in range(0, len(work), size):
        results += await batch.log_batch(hook_ctx, "call", work[group:group + size])
    assert all(r.ok for r in results) and len(portal.objects["calls"]) == 1000
    spent = len(portal.requests) - start
    per_call = spent / 1000
    print(f"\nbacklog: {spent} HubSpot requests for 1000 calls = {per_call:.3f} a call")
    assert per_call <= 0.05
    assert len([r for r in portal.requests[start:] if r["path"].endswith("/batch/create")]) == 10
