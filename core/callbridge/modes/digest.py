"""The digest (SPEC §4): a scheduled work unit per tenant that matches again the calls
of the look-back not logged yet in the apps with automatic logging on, so a contact
created after a call still gets it.

What it does per delivery state (docs/logging-modes.md has the table):

* skipped for no contact → due again (mode ``digest``): matched again, then logged
  or skipped again;
* unresolved → left for a user, unless the app's several-matches policy is no
  longer ``ask`` (then due again, and the policy decides);
* no delivery to an app that logs automatically now (connected, or switched on,
  after the call) → one is made;
* waiting, parked, pending, dead, failed, accepted, logged, other skips → left to
  their own rules.

Re-runs and overlapping runs never log twice: a run holds the tenant's ledger lock
``digest:<tenant>`` (another run meanwhile does nothing and says so), each change
is conditional on the state it was decided on (:func:`callbridge.modes.store.reopen`),
and a delivery is only ever worked under its own fenced lease.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from callbridge.ledger import ContentErased
from callbridge.modes import notes, store
from callbridge.settings import SeveralMatches

if TYPE_CHECKING:
    from callbridge.engine import Engine

__all__ = ["DigestReport", "run_digest", "run_due"]

log = logging.getLogger("callbridge.digest")

#: How long a run holds the tenant's digest lock at most (seconds).
LOCK_TTL = 900.0
_NEXT = "digest:next"


@dataclass
class DigestReport:
    """What one run did for one tenant."""

    tenant: str
    since: datetime
    #: False when another run held the tenant's digest (this one changed nothing).
    ran: bool = True
    requeued: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    left: Counter[str] = field(default_factory=Counter)
    #: The outcomes of the deliveries it queued, once worked (``work=True``).
    after: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "since": self.since.isoformat(), "ran": self.ran,
                "requeued": self.requeued, "added": self.added, "left": dict(self.left),
                "after": dict(self.after)}

    def summary(self) -> str:
        if not self.ran:
            return f"{self.tenant}: another digest is running; nothing done"
        left = ", ".join(f"{n} {s}" for s, n in sorted(self.left.items())) or "none"
        after = ", ".join(f"{n} {s}" for s, n in sorted(self.after.items()))
        return (f"{self.tenant}: {len(self.requeued)} matched again, {len(self.added)} added "
                f"(since {self.since:%Y-%m-%d %H:%M} UTC); left: {left}"
                + (f"; now: {after}" if after else ""))


def _again(status: str, reason: str | None, policy: SeveralMatches) -> bool:
    if status == "skipped":
        return reason == "no_contact"
    return status == "unresolved" and policy != SeveralMatches.ASK


async def run_digest(engine: Engine, tenant: str, now: datetime, *,
                     work: bool = False) -> DigestReport:
    """One run of the digest for ``tenant`` (see the module docstring)."""
    settings = engine.config
    report = DigestReport(tenant, now - settings.modes.digest_lookback)
    handle = await engine.db(engine.ledger.try_lock, f"digest:{tenant}", ttl=LOCK_TTL)
    if handle is None:
        report.ran = False
        return report
    try:
        await _run(engine, report, now)
        if work and (report.requeued or report.added):
            ids = set(report.requeued) | set(report.added)
            views = [v for v in await engine.db(engine.ledger.history, tenant=tenant,
                                                since=report.since, limit=10**6)
                     if v.delivery_id in ids]
            await engine.run_until_idle(event_pks=sorted({v.event_pk for v in views}),
                                        tenant=tenant)
            for v in await engine.db(engine.ledger.history, tenant=tenant, since=report.since,
                                     limit=10**6):
                if v.delivery_id in ids:
                    report.after[v.status] += 1
    finally:
        await engine.db(engine.ledger.release_lock, handle)
    return report


async def _run(engine: Engine, report: DigestReport, now: datetime) -> None:
    tenant_id = report.tenant
    tenant = engine.config.tenants.get(tenant_id)
    if tenant is None:
        return
    apps = engine.apps_for(tenant)
    await _sweep_held(engine, tenant_id)
    # Contacts created since the call: the phone indexes catch up first.
    await engine.scheduler.sync_indexes(stale_after=0, tenants=[tenant_id])
    for view in await engine.db(engine.ledger.history, tenant=tenant_id, since=report.since,
                                limit=10**6):
        if view.kind != "call" or view.app not in apps:
            continue
        policy = tenant.apps[view.app].several_matches
        if not _again(view.status, view.reason, policy):
            report.left[view.status] += 1
            continue
        if await engine.db(store.reopen, engine.ledger, view.delivery_id, now=now,
                           mode="digest", status=view.status, reason=view.reason,
                           since=view.updated_at):
            report.requeued.append(view.delivery_id)
        else:
            report.left["changed_meanwhile"] += 1
    missing = await engine.db(store.calls_without, engine.ledger, tenant_id, report.since, apps)
    for pk, lacking in sorted(missing.items()):
        try:
            event = await engine.db(engine.ledger.load_event, pk)
        except ContentErased:
            continue
        if not event.is_final:
            continue
        for app in sorted(lacking):
            report.added.append(await engine.db(store.add, engine.ledger, pk, app,
                                                mode="digest", now=now))


async def _sweep_held(engine: Engine, tenant: str) -> None:
    """Delayed deliveries still held though their call has ended (a process stopped
    between storing the end and giving them their time) get it now."""
    for pk in await engine.db(store.held_events, engine.ledger, tenant):
        try:
            event = await engine.db(engine.ledger.load_event, pk)
        except ContentErased:
            continue
        if event.is_final and event.kind == "call":
            await notes.release(engine, pk, event)


class DigestTimer:
    """When each tenant's digest is next due; the time is kept in the ledger (key-value,
    per tenant), read again only once this process's copy says it may be due."""

    def __init__(self) -> None:
        self._next: dict[str, datetime] = {}

    async def run_due(self, engine: Engine, now: datetime) -> list[DigestReport]:
        reports = []
        every = timedelta(minutes=engine.config.modes.digest_every_minutes)
        for tenant in sorted(engine.config.tenants):
            if tenant in self._next and self._next[tenant] > now:
                continue
            raw = await engine.db(engine.ledger.kv_get, tenant, "", _NEXT)
            due = datetime.fromisoformat(json.loads(raw)["at"]) if raw else None
            if due is None:
                # First sight of this tenant: its first digest one period from now.
                due = now + every
                await engine.db(engine.ledger.kv_set, tenant, "", _NEXT,
                                json.dumps({"at": due.isoformat()}))
            if due > now:
                self._next[tenant] = due
                continue
            try:
                report = await run_digest(engine, tenant, now)
            except Exception as exc:  # one tenant's failure never stops the others
                log.warning("digest of %s failed: %s", tenant, type(exc).__name__)
                continue
            if report.ran:
                self._next[tenant] = now + every
                await engine.db(engine.ledger.kv_set, tenant, "", _NEXT,
                                json.dumps({"at": (now + every).isoformat()}))
                reports.append(report)
            else:
                self._next[tenant] = now + timedelta(seconds=60)
        return reports


async def run_due(engine: Engine, now: datetime,
                  timer: DigestTimer | None = None) -> list[DigestReport]:
    """The scheduler's work unit: run every tenant's digest that is due (``timer``: the
    process's copy of the due times, kept between calls)."""
    return await (timer or DigestTimer()).run_due(engine, now)
