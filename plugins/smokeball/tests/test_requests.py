"""Requests per logged event (the figures in docs/plugins/smokeball.md), counted at the
sandbox: the engine, its phone index and the plugin over loopback.

Warm means the phone index is synced and the contact's matters, the staff list and the
activity code were read by an earlier event. Confirmation reads are counted at the
hook: they are a separate work unit, shared by every accepted write of a connection.
"""

from __future__ import annotations

from typing import Any

import callbridge_smokeball as plugin
from callbridge.models import Record

from plugins.smokeball.tests.conftest import Served, Smokeball, deliver
from plugins.smokeball.tests.samples import call, sms


def api_requests(served: Served) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in served.state.requests]


async def test_a_known_contact_with_one_matter_costs_one_request_per_call_and_sms(
        engine: Any, served: Served) -> None:
    built = engine()
    await built.sync_indexes()  # the host keeps the phone index fresh in the background
    served.state.requests.clear()
    await deliver(built, call())
    first = api_requests(served)
    # The first event of the tenant reads the matters, the staff and the activity codes once,
    # and creates the code it did not find.
    assert sorted(m for m, _ in first) == ["GET", "GET", "GET", "POST", "POST"]
    assert {p for _, p in first} >= {"/matters", "/staff", "/activitycodes"}

    served.state.requests.clear()
    await deliver(built, call(id="sb-call-2"))
    assert api_requests(served) == [("POST", f"/matters/{served.ids['lease']}/fees")]

    served.state.requests.clear()
    await deliver(built, sms())
    assert api_requests(served) == [("POST", f"/matters/{served.ids['lease']}/memos")]


async def test_confirmation_reads_one_list_per_matter_and_one_for_all_tasks(
        hook_ctx: Any, sb: Smokeball) -> None:
    lease, estate = sb.ids["lease"], sb.ids["estate"]
    records = [Record(kind="fee", id=f"{lease}/f1", step="fee"),
               Record(kind="fee", id=f"{lease}/f2", step="fee"),
               Record(kind="fee", id=f"{estate}/f3", step="fee"),
               *[Record(kind="task", id=f"t{i}", step="task") for i in range(10)]]
    await plugin.logs.confirm_accepted(hook_ctx, records, sb.clock.now())
    assert sorted((r["method"], r["path"]) for r in sb.state.requests) == sorted([
        ("GET", f"/matters/{estate}/fees"), ("GET", f"/matters/{lease}/fees"), ("GET", "/tasks")])
