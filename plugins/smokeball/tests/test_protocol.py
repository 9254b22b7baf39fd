"""The plugin on the host's 2.0 services, built by ``callbridge.testing.make_context``:
the write protocol (``ctx.delivery.step``), the delivery's marker, the shared cache and
the held lock. Skipped, saying so, on a host without ``make_context``."""

from __future__ import annotations

from typing import Any

import callbridge_smokeball as plugin
import pytest
from callbridge.events import ExternalParty
from callbridge.models import AppUser, Contact, LogTarget, Matter, Record
from callbridge.testing.clock import FakeClock
from callbridge_smokeball.sandbox import SandboxState, create_app

from plugins.smokeball.tests.conftest import FIRM, START
from plugins.smokeball.tests.samples import call

make_context = getattr(pytest.importorskip("callbridge.testing"), "make_context", None)
if make_context is None:
    pytest.skip("this host has no callbridge.testing.make_context", allow_module_level=True)
TOKEN = "sb-protocol-token-0000"


def sandbox() -> tuple[SandboxState, dict[str, str], Any]:
    clock = FakeClock(START, autojump=True)
    state = SandboxState(clock=clock, api_key=TOKEN)
    ids = state.seed(FIRM)
    state.issue_token(access_token=TOKEN, lifetime=10**9)
    return state, ids, clock


def ctx_for(state: SandboxState, clock: Any, **delivery: Any) -> Any:
    return make_context(plugin, sandbox=create_app(state), clock=clock, token=TOKEN, **delivery)


def target(ids: dict[str, str], matter: bool = True) -> LogTarget:
    return LogTarget(contacts=(Contact(id=ids["dana"], name="Dana Whitfield"),),
                     matter=Matter(id=ids["lease"]) if matter else None,
                     user=AppUser(id=ids["bob"], name="Bob Stone"))


def posts(state: SandboxState, path_end: str) -> int:
    return sum(1 for r in state.requests if r["method"] == "POST" and r["path"].endswith(path_end))


async def test_a_kept_record_is_returned_with_nothing_sent() -> None:
    state, ids, clock = sandbox()
    kept = Record(kind="fee", id=f"{ids['lease']}/f-1", step="fee")
    ctx = ctx_for(state, clock, attempt=2, records=[kept])
    result = await plugin.log_call(ctx, event=call(), target=target(ids))
    assert result.records == (kept,) and posts(state, "/fees") == 0


async def test_an_uncertain_step_finds_the_fee_by_the_deliverys_marker() -> None:
    state, ids, clock = sandbox()
    first = ctx_for(state, clock)
    written = await plugin.log_call(first, event=call(), target=target(ids))
    fee = state.rows("fees")[0]
    assert fee["description"].endswith(f"callbridge ref: {first.delivery.marker}")
    again = ctx_for(state, clock, attempt=2, uncertain=[("fee", "fee")])
    again.delivery.marker = first.delivery.marker
    result = await plugin.log_call(again, event=call(), target=target(ids))
    assert result.records == written.records and posts(state, "/fees") == 1
    assert again.delivery.created == []


async def test_an_uncertain_step_with_nothing_found_writes_once() -> None:
    state, ids, clock = sandbox()
    ctx = ctx_for(state, clock, attempt=2, uncertain=[("task", "task")])
    result = await plugin.log_call(ctx, event=call(), target=target(ids, matter=False))
    assert [r.kind for r in result.records] == ["task"] and posts(state, "/tasks") == 1
    reads = [r for r in state.requests if r["method"] == "GET" and r["path"] == "/tasks"]
    assert len(reads) == 1  # the lookup by marker ran first


async def test_a_created_contact_carries_the_deliverys_marker() -> None:
    state, _, clock = sandbox()
    ctx = ctx_for(state, clock)
    party = ExternalParty.model_validate({"number": "+12125550188"}, context={"region": "US"})
    created = await plugin.create_contact(ctx, party=party, name="Rae Quinn")
    assert state.data["contacts"][created.id]["externalSystemId"] == ctx.delivery.marker


async def test_staff_and_the_activity_code_are_read_once_through_the_hosts_cache() -> None:
    state, ids, clock = sandbox()
    ctx = ctx_for(state, clock)
    assert (await plugin.find_user(ctx, email="bob@firm.example")) is not None
    assert (await plugin.pick_default_user(ctx)) is not None
    await plugin.log_call(ctx, event=call(), target=target(ids))
    await plugin.log_call(ctx, event=call(id="sb-call-2"),
                          target=target(ids).model_copy(update={"user": None}))
    gets = [r["path"] for r in state.requests if r["method"] == "GET"]
    assert gets.count("/staff") == 1 and gets.count("/activitycodes") == 1
    cache = getattr(ctx, "cache", None)  # else the plugin keeps them in ctx.store
    assert cache is None or cache.loads == 2  # the staff list and the activity code
