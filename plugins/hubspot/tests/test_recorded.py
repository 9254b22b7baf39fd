"""Recorded exchanges the kit's standard cases do not make: batch writes with a bad item
(HubSpot's 207 and its 400), a lost batch answer found again, and the daily limit.

Like the kit's cases, each replays its cassette offline (``CALLBRIDGE_RECORD_MODE``
unset) and records against the sandbox at https://api.hubapi.com with ``once``;
``test_conformance.py`` reads these exchanges through HubSpot's client models too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_hubspot as hs
import httpx2
import pytest
from callbridge.context import HookContext
from callbridge.errors import PermanentError
from callbridge.http import Credentials, RetryPolicy
from callbridge.models import LogTarget
from callbridge.settings import TenantSettings
from callbridge.testing import make_context
from callbridge.testing.cassettes import CassetteTransport, open_cassette, record_mode
from callbridge.testing.scrub import Scrubber
from callbridge_hubspot import batch, limits
from callbridge_hubspot.portal import Portal
from callbridge_hubspot.sandbox import Limits, create_app

from plugins.hubspot.tests.conftest import Delivery, locks
from plugins.hubspot.tests.test_contract import ANN, CALL, DANA, KIT_TOKEN, seeded_portal

CASSETTES = Path(__file__).parent / "cassettes"
GHOST_TARGET = LogTarget.model_validate({"contacts": [{"id": "999999"}], "user": ANN})


async def recorded(case: str, body: Callable[[HookContext], Awaitable[Any]], *,
                   portal: Portal | None = None, sandbox_limits: Limits | None = None) -> Any:
    """Run ``body`` with a context whose client plays (or records) ``case``'s cassette."""
    mode = record_mode()
    inner = None
    if mode != "none":
        inner = httpx2.ASGITransport(app=create_app(portal or seeded_portal(),
                                                    limits=sandbox_limits, faults=False))
    options = hs.HubSpotSettings(portal_time_zone="America/New_York", search_settle_seconds=0)
    with open_cassette(CASSETTES / f"{case}.yaml", scrubber=Scrubber(region="US"),
                       mode=mode) as cassette:
        transport = CassetteTransport(cassette, inner)
        if mode != "none" and not cassette.write_protected:
            cassette.get_metadata("recorded", "recorded against the HubSpot sandbox on "
                                  f"{datetime.now(UTC).date()}")
        ctx = make_context(
            hs, settings=options.model_dump(exclude_unset=True), tenant_id="kit",
            tenant=TenantSettings(default_region="US"), transport=transport,
            retry=RetryPolicy(enabled=False), token=KIT_TOKEN,
            credentials=Credentials(token=KIT_TOKEN), lock=locks(), delivery=Delivery())
        http, bare = ctx.http, ctx.bare_http
        try:
            result = await body(ctx)
        finally:
            await http.aclose()
            await bare.aclose()
        if transport.misses:
            raise transport.misses[0]
    return result


def items(*targets: LogTarget) -> list[Any]:
    from callbridge.events import parse_event

    return [batch.BatchItem(event=parse_event({**CALL, "id": f"rec-{i}"}, region="US"),
                            target=t, delivery=Delivery(marker=f"cb1-rec-{i}"))
            for i, t in enumerate(targets)]


GOOD = LogTarget(contacts=(DANA,), user=ANN)


async def test_a_batch_answered_207_fails_only_its_bad_item() -> None:
    results = await recorded("batch-207", lambda ctx: batch.log_batch(
        ctx, "call", items(GOOD, GHOST_TARGET, GOOD)))
    assert [r.error is None for r in results] == [True, False, True]
    assert isinstance(results[1].error, PermanentError)


async def test_a_batch_refused_with_400_is_resent_without_its_bad_item() -> None:
    portal = seeded_portal()
    portal.batch_errors = "400"
    results = await recorded("batch-400", lambda ctx: batch.log_batch(
        ctx, "call", items(GOOD, GHOST_TARGET, GOOD)), portal=portal)
    assert [r.error is None for r in results] == [True, False, True]


async def test_a_lost_batch_answer_is_found_by_its_markers() -> None:
    async def body(ctx: HookContext) -> Any:
        work = items(GOOD, GOOD)
        await batch.log_batch(ctx, "call", work)  # recorded: written
        for item in work:  # the answer is lost: nothing kept, the steps begun
            item.delivery.remembered.clear()
            item.delivery.retry()
        return await batch.log_batch(ctx, "call", work)

    results = await recorded("batch-lost-answer-found", body)
    assert all(r.ok for r in results)


async def test_a_daily_429_parks() -> None:
    with pytest.raises(limits.DailyLimitReached):
        await recorded("daily-limit", lambda ctx: hs.find_user(ctx, "ann@firm.example"),
                       sandbox_limits=Limits(daily=0))
