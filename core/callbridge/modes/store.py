"""What the logging modes keep in the ledger, as conditional changes of one statement.

Every change here checks, in the statement that makes it, the state it was
decided on (not logged, not held by a worker's lease, the status read), so two
users, two digests or a worker racing a user never both succeed: the loser
changes nothing and is told so. Synchronous; async code runs these through
``engine.db``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from callbridge.ledger import FINAL_OK
from callbridge.ledger import tables as t

if TYPE_CHECKING:
    from callbridge.ledger import Ledger

#: ``not_before`` of a delayed delivery whose call has not ended yet: held until it does.
UNTIL_END = datetime(9999, 12, 31, tzinfo=UTC)

_d = t.deliveries


def _free(now: datetime) -> Any:
    """No worker holds the delivery's lease now."""
    return sa.or_(_d.c.lease_owner.is_(None), _d.c.lease_expires < now)


def find_events(ledger: Ledger, ref: str, *, tenant: str | None = None) -> list[tuple[int, str]]:
    """The events ``ref`` names, as (ledger id, tenant): the source's event id (in any
    source and kind of the tenant, or of every tenant), or the ledger's id (``123`` or
    ``#123``)."""
    e = t.events
    found: dict[int, str] = {}
    text = ref.strip()
    with ledger._read() as conn:
        if not text.startswith("#"):
            combos = sa.select(e.c.tenant, e.c.source, e.c.kind).distinct()
            if tenant is not None:
                combos = combos.where(e.c.tenant == tenant)
            for row in conn.execute(combos).all():
                hashed = ledger._event_id(row.tenant, row.source, row.kind, text)
                pk = conn.execute(sa.select(e.c.id).where(
                    e.c.tenant == row.tenant, e.c.source == row.source, e.c.kind == row.kind,
                    e.c.source_id == hashed)).scalar()
                if pk is not None:
                    found[int(pk)] = row.tenant
        digits = text.removeprefix("#")
        if digits.isdigit() and len(digits) < 19:
            hit = conn.execute(sa.select(e.c.id, e.c.tenant).where(e.c.id == int(digits))).first()
            if hit is not None and (tenant is None or hit.tenant == tenant):
                found[int(hit.id)] = hit.tenant
    return sorted(found.items())


@dataclass(frozen=True)
class DeliveryRow:
    """The few columns of a delivery the modes decide on."""

    delivery_id: int
    app: str
    status: str
    reason: str | None
    mode: str
    leased: bool
    attempt: int
    not_before: datetime | None
    next_attempt_at: datetime | None
    has_notes: bool


def delivery_rows(ledger: Ledger, event_pk: int, now: datetime) -> dict[str, DeliveryRow]:
    """The event's deliveries, by app."""
    with ledger._read() as conn:
        rows = conn.execute(sa.select(
            _d.c.id, _d.c.app, _d.c.status, _d.c.reason, _d.c.mode, _d.c.lease_owner,
            _d.c.lease_expires, _d.c.attempt, _d.c.not_before, _d.c.next_attempt_at,
            _d.c.notes_enc).where(_d.c.event_id == event_pk)).all()
    return {r.app: DeliveryRow(
        delivery_id=r.id, app=r.app, status=r.status, reason=r.reason, mode=r.mode,
        leased=r.lease_owner is not None and r.lease_expires is not None and r.lease_expires >= now,
        attempt=r.attempt, not_before=r.not_before, next_attempt_at=r.next_attempt_at,
        has_notes=r.notes_enc is not None) for r in rows}


def reopen(ledger: Ledger, delivery_id: int, *, now: datetime, mode: str,
           chosen: Sequence[str] | None = None, status: str | None = None,
           reason: str | None = None, since: datetime | None = None) -> bool:
    """Make a delivery not logged due now, for ``mode`` (with a user's chosen contacts).

    Only if it is not logged or accepted, no worker holds it, and (when given) its
    status, reason and last change are still ``status``/``reason``/``since``: one
    statement, so a concurrent change wins and this one reports False.
    """
    where = [_d.c.id == delivery_id, _d.c.status.not_in(FINAL_OK), _free(now)]
    if status is not None:
        where.append(_d.c.status == status)
        where.append(_d.c.reason.is_(None) if reason is None else _d.c.reason == reason)
    if since is not None:
        where.append(_d.c.updated_at == since)
    values: dict[str, Any] = {
        "status": "pending", "reason": None, "message": None, "retryable": False,
        "next_attempt_at": None, "not_before": None, "mode": mode, "updated_at": now,
        "deadline_at": now + ledger.deadline}
    if chosen is not None:
        values["chosen_contact_ids"] = json.dumps(list(chosen))
    with ledger._write() as conn:
        return bool(conn.execute(_d.update().where(*where).values(**values)).rowcount)


def add(ledger: Ledger, event_pk: int, app: str, *, mode: str, now: datetime,
        chosen: Sequence[str] | None = None) -> int:
    """The event's delivery to ``app`` for ``mode``, made if missing (see
    :meth:`Ledger.add_delivery`); an existing one is returned unchanged."""
    return ledger.add_delivery(event_pk, app, mode=mode, chosen_contact_ids=chosen)


def set_delayed(ledger: Ledger, event_pk: int, app: str, *, now: datetime, due: datetime | None,
                notes: str | None, chosen: Sequence[str] | None,
                convert_automatic: bool) -> str:
    """Make (or make again) the event's delivery to ``app`` a delayed one.

    ``due``: when it is written (None: when the call ends). An automatic delivery
    not begun (no lease, no attempt that wrote anything, not logged) becomes the
    delayed one when ``convert_automatic``. Returns what was done: ``"made"``,
    ``"updated"``, ``"converted"`` or ``"too_late"`` (logged, being logged, or an
    automatic delivery not converted).
    """
    values: dict[str, Any] = {
        "mode": "delayed", "status": "waiting", "reason": "delay", "retryable": True,
        "message": None, "next_attempt_at": due, "not_before": UNTIL_END if due is None else None,
        "notes_enc": ledger._cipher.encrypt(notes),
        "chosen_contact_ids": None if chosen is None else json.dumps(list(chosen)),
        "updated_at": now}
    with ledger._write() as conn:
        row = conn.execute(sa.select(_d.c.id, _d.c.mode).where(
            _d.c.event_id == event_pk, _d.c.app == app)).first()
        if row is None:
            ev = conn.execute(sa.select(t.events.c.tenant, t.events.c.occurred_at).where(
                t.events.c.id == event_pk)).one()
            conn.execute(_d.insert().values(
                event_id=event_pk, tenant=ev.tenant, app=app, occurred_at=ev.occurred_at,
                fence=0, attempt=0, needs_update=False, candidates_enc=None,
                deadline_at=max(ev.occurred_at, now) + ledger.deadline, **values))
            return "made"
        modes = ("delayed", "auto") if convert_automatic else ("delayed",)
        done = conn.execute(_d.update().where(
            _d.c.id == row.id, _d.c.mode.in_(modes), _d.c.status.not_in(FINAL_OK),
            _free(now)).values(**values)).rowcount
        if not done:
            return "too_late"
        return "updated" if row.mode == "delayed" else "converted"


def release_held(ledger: Ledger, event_pk: int, due: dict[str, datetime], now: datetime) -> int:
    """The call has ended: its delayed deliveries held until then fall due at ``due[app]``."""
    n = 0
    with ledger._write() as conn:
        for app, at in due.items():
            n += conn.execute(_d.update().where(
                _d.c.event_id == event_pk, _d.c.app == app, _d.c.mode == "delayed",
                _d.c.not_before == UNTIL_END).values(
                not_before=None, next_attempt_at=at, updated_at=now)).rowcount
    return n


def held_events(ledger: Ledger, tenant: str, limit: int = 1000) -> list[int]:
    """Events with a delivery held until their call ends (for the digest's sweep)."""
    with ledger._read() as conn:
        return [int(pk) for pk in conn.execute(sa.select(_d.c.event_id).distinct().where(
            _d.c.tenant == tenant, _d.c.not_before == UNTIL_END).limit(limit)).scalars()]


def drop_plans(ledger: Ledger, event_pk: int, now: datetime) -> int:
    """Notes cancelled before the call ended: its delayed deliveries, never attempted,
    are removed (the call logs as it would have; nothing was written or tried)."""
    with ledger._write() as conn:
        return int(conn.execute(_d.delete().where(
            _d.c.event_id == event_pk, _d.c.mode == "delayed", _d.c.not_before == UNTIL_END,
            _d.c.attempt == 0, _free(now))).rowcount)


def clear_notes(ledger: Ledger, event_pk: int, now: datetime) -> int:
    """Notes cancelled after the call ended: its delayed deliveries not yet written stay
    delayed, with what automatic logging would have written (no notes, no choice)."""
    with ledger._write() as conn:
        return int(conn.execute(_d.update().where(
            _d.c.event_id == event_pk, _d.c.mode == "delayed", _d.c.status.not_in(FINAL_OK),
            _free(now)).values(notes_enc=None, chosen_contact_ids=None,
                               updated_at=now)).rowcount)


def calls_without(ledger: Ledger, tenant: str, since: datetime, apps: Sequence[str],
                  limit: int = 10_000) -> dict[int, set[str]]:
    """The tenant's calls since ``since`` lacking a delivery to some of ``apps``:
    event id -> the apps it lacks (the digest's apps connected, or turned to
    automatic logging, after the call)."""
    e = t.events
    with ledger._read() as conn:
        pks = [int(pk) for pk in conn.execute(sa.select(e.c.id).where(
            e.c.tenant == tenant, e.c.kind == "call", e.c.occurred_at >= since,
            e.c.purged_at.is_(None)).order_by(e.c.id).limit(limit)).scalars()]
        have: dict[int, set[str]] = {}
        for chunk in range(0, len(pks), 500):
            for row in conn.execute(sa.select(_d.c.event_id, _d.c.app).where(
                    _d.c.event_id.in_(pks[chunk:chunk + 500]))):
                have.setdefault(int(row.event_id), set()).add(row.app)
    out = {pk: set(apps) - have.get(pk, set()) for pk in pks}
    return {pk: missing for pk, missing in out.items() if missing}
