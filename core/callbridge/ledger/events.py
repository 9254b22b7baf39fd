"""Events: stored once, duplicates and revisions, and the deliveries they make."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.events import AnyEvent, dump_event, merge_revisions, parse_event
from callbridge.ledger import hotsql, pgstore
from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    _SELECT_EVENT,
    FINAL_OK,
    LedgerCore,
)
from callbridge.ledger.types import (
    ContentErased,
    Stored,
)


def _new_delivery(pk: int, tenant: str, app: str, occurred_at: datetime, now: datetime,
                  deadline: timedelta, **values: Any) -> dict[str, Any]:
    # The deadline runs from the event, or from its arrival when it arrives late
    # (an import of last month's calls gets the same time to get through).
    return {"deadline_at": max(occurred_at, now) + deadline, "event_id": pk, "tenant": tenant, "app": app, "occurred_at": occurred_at,
            "status": "pending", "mode": values.get("mode", "auto"), "retryable": False,
            "needs_update": False, "fence": 0, "attempt": 0, "updated_at": now,
            "notes_enc": values.get("notes_enc"), "chosen_contact_ids": values.get("chosen"),
            "reason": None, "message": None, "next_attempt_at": None,
            "not_before": values.get("not_before"),
            "candidates_enc": None, "lease_owner": None, "lease_expires": None,
            "first_attempt_at": None}


def _keep_late_details(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any] | None:
    """The copy to keep (:func:`callbridge.events.merge_revisions`: the furthest state,
    then the highest sequence; late details never lost); None when ``given`` adds
    nothing to ``stored``."""
    return merge_revisions(stored, given)


class EventsMixin(LedgerCore):
    """Storing and reading events."""


    def store_event(self, event: AnyEvent, *, apps: Sequence[str],
                    received_at: datetime | None = None,
                    hold_until: datetime | None = None) -> Stored:
        """Keep an event (new, duplicate or revision) and its deliveries to ``apps``.

        The newest contents live on the event row; a revision moves the contents it
        replaces to ``event_revisions``, so every revision received is kept. A late
        detail already received (recording, transcript, summary, notes) is never
        dropped because an older copy of the event arrived after it: a webhook
        retried out of order is a duplicate, not a revision that loses the detail.

        ``hold_until``: deliveries made for a revision of an event already known (a
        call seen before it ended) are not claimed before then (the grace period for
        notes taken during the call, callbridge.modes.notes).
        """
        now = received_at or self._now()
        if self._hot is not None:
            pk = self._hot.run(self._store_new_job(event, apps, now))
            if pk is not None:
                return Stored(event_pk=int(pk), status="new", revision=1, event=event)
        return self._retrying(lambda: self._store_event(event, apps, now, hold_until))

    def _store_new_job(self, event: AnyEvent, apps: Sequence[str], now: datetime) -> Any:
        """The group-commit job storing ``event`` if it is new (ledger.hotsql.store_new):
        the same rows :meth:`_store_event` writes for a new event."""
        content = dump_event(event)
        tenant, source, kind, source_id = event.key
        ident = {"tenant": tenant, "source": source, "kind": kind,
                 "source_id": self._event_id(tenant, source, kind, source_id)}
        row = {"source_id_enc": self._cipher.encrypt(source_id),
               "occurred_at": event.occurred_at, "received_at": now, "revision": 1,
               "content_hash": self._cipher.digest("content", content),
               "party_hash": self._party(event), "content_enc": self._cipher.encrypt(content)}
        return hotsql.store_new(ident, row, [
            _new_delivery(0, tenant, app, event.occurred_at, now, self.deadline) for app in apps])

    def _store_event(self, event: AnyEvent, apps: Sequence[str], now: datetime,
                     hold_until: datetime | None = None) -> Stored:
        content = dump_event(event)
        chash = self._cipher.digest("content", content)
        tenant, source, kind, source_id = event.key
        ident = {"tenant": tenant, "source": source, "kind": kind,
                 "source_id": self._event_id(tenant, source, kind, source_id)}
        with self._write() as conn:
            row = conn.execute(_SELECT_EVENT, ident).first()
            if row is None:
                pk = conn.execute(t.events.insert(), {
                    **ident, "source_id_enc": self._cipher.encrypt(source_id),
                    "occurred_at": event.occurred_at, "received_at": now,
                    "revision": 1, "content_hash": chash, "party_hash": self._party(event),
                    "content_enc": self._cipher.encrypt(content),
                }).inserted_primary_key[0]  # type: ignore[index]
                if apps:
                    conn.execute(t.deliveries.insert(), [
                        _new_delivery(pk, tenant, app, event.occurred_at, now, self.deadline)
                        for app in apps])
                return Stored(event_pk=int(pk), status="new", revision=1, event=event)
            pk, revision = int(row.id), int(row.revision)
            if row.purged_at is not None:
                # Erased (retention or a person's request): a copy sent again must
                # not bring the contents back, and nothing can be logged from it.
                return Stored(event_pk=pk, status="duplicate", revision=revision, event=None)
            if row.content_hash == chash:
                return self._duplicate(conn, pk, revision, None, event, apps, now)
            stored_text = self._cipher.decrypt(conn.execute(
                sa.select(t.events.c.content_enc).where(t.events.c.id == pk)).scalar())
            merged = _keep_late_details(json.loads(stored_text or "{}"), json.loads(content))
            if merged is None:  # an older copy: everything it holds is kept already
                return self._duplicate(conn, pk, revision, stored_text, event, apps, now)
            if merged != json.loads(content):
                event = parse_event(merged)
                content = dump_event(event)
                chash = self._cipher.digest("content", content)
            conn.execute(t.event_revisions.insert().from_select(
                ["event_id", "revision", "received_at", "content_enc"],
                sa.select(t.events.c.id, t.events.c.revision, t.events.c.received_at,
                          t.events.c.content_enc).where(t.events.c.id == pk)))
            revision += 1
            conn.execute(t.events.update().where(t.events.c.id == pk).values(
                revision=revision, content_hash=chash, content_enc=self._cipher.encrypt(content),
                party_hash=self._party(event), occurred_at=event.occurred_at, received_at=now))
            # A log already written (or being written now, under a lease) holds older
            # contents: it is updated in place with the late details (SPEC §4).
            d = t.deliveries
            conn.execute(d.update().where(
                d.c.event_id == pk, sa.or_(d.c.status.in_(FINAL_OK), d.c.lease_owner.is_not(None))
            ).values(needs_update=True, updated_at=now))
            self._add_deliveries(conn, pk, tenant, event.occurred_at, apps, now,
                                 not_before=hold_until)
        return Stored(event_pk=pk, status="revision", revision=revision, event=event)

    def _duplicate(self, conn: Connection, pk: int, revision: int, stored_text: str | None,
                   given: AnyEvent, apps: Sequence[str], now: datetime) -> Stored:
        occurred = conn.execute(sa.select(t.events.c.tenant, t.events.c.occurred_at)
                                .where(t.events.c.id == pk)).one()
        self._add_deliveries(conn, pk, occurred.tenant, occurred.occurred_at, apps, now)
        held = parse_event(stored_text) if stored_text is not None else given
        return Stored(event_pk=pk, status="duplicate", revision=revision, event=held)

    def _party(self, event: AnyEvent) -> str | None:
        """The keyed hash of the event's external number, for :meth:`erase_person`."""
        number = event.external.number
        return self._cipher.digest(event.tenant, number) if number else None

    def _add_deliveries(self, conn: Connection, pk: int, tenant: str, occurred_at: datetime,
                        apps: Iterable[str], now: datetime, **values: Any) -> dict[str, int]:
        have = {r.app: r.id for r in conn.execute(
            sa.select(t.deliveries.c.app, t.deliveries.c.id).where(t.deliveries.c.event_id == pk))}
        for app in apps:
            if app not in have:
                row = _new_delivery(pk, tenant, app, occurred_at, now, self.deadline, **values)
                result = conn.execute(t.deliveries.insert(), row)
                have[app] = int(result.inserted_primary_key[0])  # type: ignore[index]
        return have

    def store_events(self, events: Sequence[tuple[AnyEvent, Sequence[str]]], *,
                     hold_until: Sequence[datetime | None] | None = None) -> list[Stored]:
        """:meth:`store_event` for many events (``hold_until``: one per event, or None).

        The new ones are committed together (a SQLite file: one group of the group
        writer, each in a savepoint; PostgreSQL: one transaction, ledger.pgstore), the
        known ones (duplicates, revisions) each in its own transaction after them."""
        holds = list(hold_until) if hold_until is not None else [None] * len(events)
        if self._hot is None and self._postgres:  # the new ones in one transaction
            return pgstore.store_events(self, events, holds)
        if self._hot is None:
            return [self.store_event(event, apps=apps, hold_until=hold)
                    for (event, apps), hold in zip(events, holds, strict=True)]
        # Queued together, committed together (each still in a savepoint of its own);
        # events known already (duplicates, revisions) are stored the general way after.
        now = self._now()
        hot = self._hot
        queued = [hot.submit(self._store_new_job(event, apps, now)) for event, apps in events]
        out: list[Stored] = []
        for (event, apps), hold, future in zip(events, holds, queued, strict=True):
            pk = future.result()
            out.append(Stored(event_pk=int(pk), status="new", revision=1, event=event)
                       if pk is not None else self.store_event(event, apps=apps, hold_until=hold))
        return out

    def load_event(self, event_pk: int) -> AnyEvent:
        """The event's newest contents; :class:`ContentErased` once purged or erased."""
        if self._direct is not None:
            content, purged_at = self._direct.load_event(event_pk)
        else:
            with self._read() as conn:
                content, purged_at = conn.execute(sa.select(
                    t.events.c.content_enc, t.events.c.purged_at).where(
                    t.events.c.id == event_pk)).one()
        if content is None:
            raise ContentErased(f"event {event_pk}: contents erased on {purged_at:%Y-%m-%d}")
        return parse_event(self._cipher.decrypt(content) or "")

    def find_event(self, tenant: str, source: str, kind: str, source_id: str) -> int | None:
        """The event's key in the ledger, by its identity; None if never received."""
        with self._read() as conn:
            return conn.execute(sa.select(t.events.c.id).where(
                t.events.c.tenant == tenant, t.events.c.source == source,
                t.events.c.kind == kind,
                t.events.c.source_id == self._event_id(tenant, source, kind, source_id))).scalar()

    def add_delivery(self, event_pk: int, app: str, *, mode: str = "auto", notes: str | None = None,
                     chosen_contact_ids: Sequence[str] | None = None) -> int:
        """The event's delivery to ``app``, made if missing (manual and delayed logging).

        Idempotent: an existing delivery is returned unchanged.
        """
        return self._retrying(lambda: self._add_delivery(event_pk, app, mode, notes,
                                                         chosen_contact_ids))

    def _add_delivery(self, event_pk: int, app: str, mode: str, notes: str | None,
                      chosen_contact_ids: Sequence[str] | None) -> int:
        with self._write() as conn:
            ev = conn.execute(sa.select(t.events.c.tenant, t.events.c.occurred_at)
                              .where(t.events.c.id == event_pk)).one()
            have = self._add_deliveries(
                conn, event_pk, ev.tenant, ev.occurred_at, [app], self._now(), mode=mode,
                notes_enc=self._cipher.encrypt(notes),
                chosen=None if chosen_contact_ids is None else json.dumps(list(chosen_contact_ids)))
            return int(have[app])
