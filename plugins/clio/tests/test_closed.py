"""Clio's closed matters against the sandbox: a matter that closes while a walk is under
way is read by the next walk, though a later page held a matter changed after it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import callbridge_clio
from callbridge.context import HookContext
from callbridge.http import Credentials
from callbridge.settings import TenantSettings
from callbridge.testing import make_context
from callbridge.testing.clock import FakeClock

from plugins.clio.tests.conftest import Clio

SINCE = datetime(2026, 3, 1, tzinfo=UTC)


async def walk(ctx: HookContext, position: str | None) -> tuple[list[Any], str]:
    """Every page from ``position`` to the end of the walk."""
    found: list[Any] = []
    while True:
        page = await callbridge_clio.closed_matters_since(
            ctx, position=position, since=SINCE, contact_fields=[], matter_fields=[])
        found += page.matters
        position = page.position
        if not page.more:
            return found, position


async def test_a_matter_closed_behind_the_walk_is_read_by_the_next_walk(clio: Clio) -> None:
    st = clio.state
    st.max_page_size = 1
    clock = FakeClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    st.clock = clock
    hook_ctx = make_context(
        callbridge_clio, tenant=TenantSettings(default_region="US"), faults=clio.faults,
        credentials=Credentials(client_id=st.client_id, client_secret=st.client_secret),
        tokens=clio.tokens, clock=clock)
    behind = st.add_matter(st.add_contact("Ana", "Behind"), "Closes during the walk")
    first_closed = st.add_matter(st.add_contact("Bo", "First"), "Closed before")
    last_closed = st.add_matter(st.add_contact("Cy", "Last"), "Closed before too")
    st.close_matter(first_closed, on="2026-03-02")
    st.close_matter(last_closed, on="2026-03-02")
    first = await callbridge_clio.closed_matters_since(
        hook_ctx, position=None, since=SINCE, contact_fields=[], matter_fields=[])
    assert first.more and [m.id for m in first.matters] == [str(first_closed)]
    clock.advance(60)
    st.close_matter(behind, on="2026-03-02")  # its id is behind the walk's cursor...
    clock.advance(60)
    st.touch(st.matters, last_closed, description="Filed")  # ...and a later page moves on
    rest, position = await walk(hook_ctx, first.position)
    assert [m.id for m in rest] == [str(last_closed)]
    clock.advance(15 * 60)
    again, _ = await walk(hook_ctx, position)
    await hook_ctx.http.aclose()
    await hook_ctx.bare_http.aclose()
    assert str(behind) in [m.id for m in again]
