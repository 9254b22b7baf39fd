"""The closed-matter sync as a scheduler work unit of ``callbridge serve``.

:func:`run_due` is called by :class:`callbridge.scheduler.InProcessScheduler` on every
pass: a firm is polled when its ``closed:next_poll`` (kept in the ledger, so a
restart loses none) has come, every ``poll_minutes``; between polls only its sends
whose retry has come are attempted. A source's "matter changed" notice (an app
webhook) calls :func:`poll_soon`, which brings the next poll forward to now. The
times are also held in memory per engine, so an idle pass reads nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.closing.store import ClosingStore
from callbridge.closing.sync import firm_settings, sync_firm
from callbridge.settings_closing import ClosedMatterSettings

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.closing")

#: The engine attribute holding, per tenant, when its next poll or retry is due.
_ATTRIBUTE = "_closing_due"


def _due(engine: Engine) -> dict[str, datetime]:
    due: dict[str, datetime] = vars(engine).setdefault(_ATTRIBUTE, {})
    return due


async def next_due(engine: Engine, tenant_id: str) -> datetime:
    """When the firm next needs a run: its next poll or its earliest retry."""
    known = _due(engine).get(tenant_id)
    if known is not None:
        return known
    closed = firm_settings(engine, tenant_id)
    if closed is None:
        return datetime.max.replace(tzinfo=engine.clock.now().tzinfo)
    store = ClosingStore(engine, tenant_id, closed.source, closed.destination)
    at = await store.next_poll() or engine.clock.now()
    _due(engine)[tenant_id] = at
    return at


async def poll_soon(engine: Engine, tenant_id: str) -> None:
    """Bring the firm's next poll forward to now (a matter changed in the source)."""
    closed = firm_settings(engine, tenant_id)
    if closed is None:
        return
    now = engine.clock.now()
    store = ClosingStore(engine, tenant_id, closed.source, closed.destination)
    await store.keep_next_poll(now)
    _due(engine)[tenant_id] = now


#: After a firm's run failed outright (the ledger unreachable...), when it is tried again.
RETRY_FAILED = timedelta(minutes=1)


async def run_due(engine: Engine, now: datetime | None = None) -> int:
    """Run every firm whose poll or retry is due; how many firms ran.

    One firm's trouble never stops the others, nor the scheduler: it is logged
    (without its contents) and that firm is tried again a minute later."""
    now = now or engine.clock.now()
    ran = 0
    for tenant_id in sorted(engine.config.tenants):
        closed = firm_settings(engine, tenant_id)
        if closed is None:
            continue
        try:
            if await next_due(engine, tenant_id) > now:
                continue
            await _run_one(engine, tenant_id, closed, now)
        except Exception as exc:
            log.warning("closed-matter sync of %s failed: %s", tenant_id, type(exc).__name__)
            _due(engine)[tenant_id] = now + RETRY_FAILED
            continue
        ran += 1
    return ran


async def _run_one(engine: Engine, tenant_id: str, closed: ClosedMatterSettings,
                   now: datetime) -> None:
    store = ClosingStore(engine, tenant_id, closed.source, closed.destination)
    poll_at = await store.next_poll()
    poll = poll_at is None or poll_at <= now
    try:
        await sync_firm(engine, tenant_id, poll=poll)
    finally:
        if poll:
            poll_at = now + timedelta(minutes=closed.poll_minutes)
            await store.keep_next_poll(poll_at)
    assert poll_at is not None
    retry = await _earliest_retry(store)
    _due(engine)[tenant_id] = min(poll_at, retry) if retry else poll_at


async def _earliest_retry(store: ClosingStore) -> datetime | None:
    times = []
    for key in await store.unsent_keys():
        send = await store.send(key)
        if send is not None and send.status.value == "waiting" and send.next_attempt_at:
            times.append(send.next_attempt_at)
    return min(times, default=None)
