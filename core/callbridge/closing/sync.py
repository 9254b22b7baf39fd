"""One run of a firm's closed-matter sync: read the source from its position, decide,
queue, and send what is due.

Everything of one firm happens under its ``closed-matters`` ledger lock, so a
``callbridge sync-closed`` beside ``serve`` never sends twice. The order makes a
restart safe at any point: a page's sends are queued (each keyed by its matter)
before the page's position is kept; a send is noted as begun before its request
and its record kept after; a matter seen again finds its send and is not sent again.

While a configuration error stands (a field of an enabled trigger missing or not a
checkbox, or an app that cannot play its part) the position does not move and no
send is attempted: the matters closing meanwhile are read again once it is fixed,
with the values they have then.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability
from callbridge.closing.report import FirmReport, Line
from callbridge.closing.sends import attempt, new_send, requeue, send_key
from callbridge.closing.store import ClosingStore, Send
from callbridge.closing.triggers import asked_fields, decide, field_problems
from callbridge.models import ClosedMatter, OutcomeStatus
from callbridge.outcomes import describe
from callbridge.settings import TenantSettings
from callbridge.settings_closing import ClosedMatterSettings

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.closing")

#: The most pages one run reads (the rest is read by the next run).
MAX_PAGES = 100
#: The name of the firm's lock.
LOCK = "closed-matters"
#: A send's state as a run reports it.
FATE = {OutcomeStatus.LOGGED: "sent", OutcomeStatus.WAITING: "waiting",
        OutcomeStatus.PARKED: "parked", OutcomeStatus.FAILED: "failed",
        OutcomeStatus.DEAD: "dead", OutcomeStatus.PENDING: "queued",
        OutcomeStatus.SKIPPED: "skipped"}


def firm_settings(engine: Engine, tenant_id: str) -> ClosedMatterSettings | None:
    closed = engine.config.tenant(tenant_id).closed_matters
    return closed if closed is not None and closed.enabled else None


def app_problems(engine: Engine, tenant: TenantSettings,
                 closed: ClosedMatterSettings) -> list[str]:
    """The apps named cannot play their parts (not loaded, or not declaring it)."""
    problems = []
    for app, capability, part in ((closed.source, Capability.CLOSED_MATTER_EVENTS, "source"),
                                  (closed.destination, Capability.CLOSED_MATTER_DESTINATION,
                                   "destination")):
        plugin = tenant.app_plugin(app)
        if plugin not in engine.registry.plugins:
            problems.append(f"the {part} app {app!r} uses plugin {plugin!r}, which is not loaded")
        elif not engine.hooks_for(tenant, app).supports(capability):
            problems.append(f"the {part} app {app!r} (plugin {plugin!r}) does not declare "
                            f"{capability.value}")
    return problems


async def sync_firm(engine: Engine, tenant_id: str, *, poll: bool = True,
                    requeue_failed: bool = False) -> FirmReport:
    """One run for one firm: poll the source (unless ``poll`` is False), send what is due."""
    tenant = engine.config.tenant(tenant_id)
    closed = tenant.closed_matters
    if closed is None:
        raise KeyError(f"tenant {tenant_id!r} has no closed_matters settings")
    report = FirmReport(tenant_id, closed.source, closed.destination)
    store = ClosingStore(engine, tenant_id, closed.source, closed.destination)
    async with engine.locks.for_app(tenant_id, closed.source)(LOCK):
        now = engine.clock.now()
        if requeue_failed:
            await requeue(store, now)
        problems = app_problems(engine, tenant, closed)
        if not problems and poll:
            problems = await _poll(engine, store, closed, report)
        await store.keep_config_errors(problems)
        report.problems = problems
        if problems:
            report.held += sum(1 for s in [await store.send(k) for k in await store.unsent_keys()]
                               if s is not None and s.open)
            return report
        await _send_due(engine, store, closed, report)
    return report


async def _poll(engine: Engine, store: ClosingStore, closed: ClosedMatterSettings,
                report: FirmReport) -> list[str]:
    tenant = engine.config.tenant(store.tenant)
    hooks = engine.hooks_for(tenant, closed.source)
    ctx = engine.context(store.tenant, closed.source)
    now = engine.clock.now()
    start = closed.since or await store.start(now)
    position = await store.position()
    contact_fields, matter_fields = asked_fields(closed)
    for _ in range(MAX_PAGES):
        try:
            page = await hooks.closed_matters_since(
                ctx, position=position, since=start, contact_fields=contact_fields,
                matter_fields=matter_fields)
        except Exception as exc:  # the sends still go; the next run reads again
            report.error = describe(exc)
            log.warning("closed matters of %s/%s could not be read: %s", store.tenant,
                        closed.source, type(exc).__name__)
            return []
        report.pages += 1
        problems = field_problems(closed, page.fields, closed.source)
        if problems:  # held: the position stays, the page is read again once fixed
            report.held += len(page.matters)
            return problems
        for matter in page.matters:
            await _queue(store, closed, matter, start, report)
        await store.keep_position(page.position)
        position = page.position
        if not page.more:
            break
    return []


async def _queue(store: ClosingStore, closed: ClosedMatterSettings, matter: ClosedMatter,
                 start: datetime, report: FirmReport) -> None:
    """Decide one closed matter and keep its send (or its skip) before the position moves."""
    if matter.closed_on < start.date():
        return  # closed before the firm's sync began: never sent
    key = send_key(matter, again_when_closed_again=closed.send_again_when_closed_again)
    earlier = await store.send(key)
    if earlier is not None and earlier.status != OutcomeStatus.SKIPPED:
        return  # queued or sent already: once per closed matter
    now = store.engine.clock.now()
    decision = decide(closed, matter)
    if earlier is not None and not decision.send and earlier.reason == decision.reason:
        return  # read again (the same second, or changed): skipped for the same reason
    line = Line(matter.id, matter.name, matter.closed_on.isoformat(), "queued")
    if decision.send:
        send = new_send(store.tenant, closed.source, key, matter)
        send.updated_at = now
        send.deadline_at = now + timedelta(hours=closed.deadline_hours)
    else:
        send = Send(key=key, marker="", status=OutcomeStatus.SKIPPED, reason=decision.reason,
                    message=decision.why, matter_name=matter.name,
                    closed_on=matter.closed_on.isoformat(), updated_at=now)
        line.fate, line.reason, line.why = "skipped", decision.reason, decision.why
    await store.keep(send)
    report.lines = [x for x in report.lines if x.matter != matter.id] + [line]


async def _send_due(engine: Engine, store: ClosingStore, closed: ClosedMatterSettings,
                    report: FirmReport) -> None:
    now = engine.clock.now()
    for key in await store.unsent_keys():
        send = await store.send(key)
        if send is None or not send.due(now):
            continue
        send = await attempt(engine, store, send, deadline_hours=closed.deadline_hours)
        matter_id = key.split("@", 1)[0]
        line = report.line(matter_id)
        if line is None:
            line = Line(matter_id, send.matter_name, send.closed_on, "queued")
            report.lines.append(line)
        line.fate = FATE.get(send.status, send.status.value)
        line.reason, line.why = send.reason, send.message or ""
        line.record = send.records[-1].id if send.records and send.status == \
            OutcomeStatus.LOGGED else None
