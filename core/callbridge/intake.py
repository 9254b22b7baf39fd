"""The intake: events in, kept in the ledger, deliveries made for the apps that log them.

Every revision of an event is stored. Deliveries are made only for a final
revision (an ended call, an SMS or fax sent or received): earlier ones (a call
ringing or in progress) are kept for when the final one arrives, and logging
modes other than automatic make their own deliveries (manual, delayed). An
ended call seen in progress waits a grace period for notes taken during it
(:mod:`callbridge.modes.notes`), which a revision may carry too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbridge.events import AnyEvent
from callbridge.ledger import Stored
from callbridge.modes import notes

if TYPE_CHECKING:
    from callbridge.engine import Engine

#: Events this process stored lately, kept parsed for the worker.
RECENT = 10000


def is_final(event: AnyEvent) -> bool:
    """Whether the event is in its final state (logs automatically)."""
    return bool(getattr(event, "is_final", True))


class Intake:
    """Stores events and creates their deliveries (one per app logging automatically)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The ledger's copy of events stored by this process, by (event, revision):
        # no need to decrypt and parse them again when their deliveries are worked.
        self.recent: OrderedDict[tuple[int, int], AnyEvent] = OrderedDict()

    def apps_for(self, event: AnyEvent) -> list[str]:
        """The apps an event is delivered to automatically on arrival."""
        if not is_final(event):
            return []
        return self.engine.apps_for(self.engine.config.tenant(event.tenant))

    def _keep(self, stored: Stored) -> None:
        # A stale copy that arrived late never replaces a richer one; an erased
        # event has none.
        if stored.event is None:
            return
        self.recent[(stored.event_pk, stored.revision)] = stored.event
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)

    async def store(self, event: AnyEvent) -> Stored:
        """Store one event and create its deliveries."""
        stored = await self.engine.db(self.engine.ledger.store_event, event,
                                      apps=self.apps_for(event),
                                      hold_until=notes.hold_until(self.engine, event))
        self._keep(stored)
        await notes.on_stored(self.engine, event, stored)
        return stored

    async def store_many(self, events: Sequence[AnyEvent]) -> list[Stored]:
        """:meth:`store` for a batch: one trip to the ledger, a commit per event."""
        batch = [(e, self.apps_for(e)) for e in events]
        stored = await self.engine.db(self.engine.ledger.store_events, batch,
                                      hold_until=[notes.hold_until(self.engine, e) for e in events])
        for given, s in zip(events, stored, strict=True):
            self._keep(s)
            await notes.on_stored(self.engine, given, s)
        return stored

    def cached(self, event_pk: int, revision: int) -> AnyEvent | None:
        return self.recent.get((event_pk, revision))
