"""The closed-matter sync's state, kept in the ledger (encrypted key-value entries).

Per (tenant, source app):

* ``closed:position``: the source's position after the last page handled; a page's
  sends are queued before its position is kept, so a restart reads that page again
  and finds its sends queued (never sent twice, never missed);
* ``closed:start``: when the firm's sync began (matters closed before it are never sent);
* ``closed:config_error``: the configuration errors of the last run (``doctor`` reads it);
* ``closed:next_poll``: when ``serve`` polls next (a matter-changed webhook moves it to now).

Per (tenant, destination app):

* ``closed:send:<key>``: one send (:class:`Send`), the key being the matter's id, or
  its id and close date when a re-closed matter is sent again;
* ``closed:unsent``: the keys of the sends not sent (pending, waiting, parked, and
  failed or dead until re-queued).

Every entry is read and written under the firm's ``closed-matters`` lock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from callbridge.models import ClosedMatter, OutcomeStatus, Record

if TYPE_CHECKING:
    from callbridge.engine import Engine

POSITION = "closed:position"
START = "closed:start"
CONFIG_ERROR = "closed:config_error"
NEXT_POLL = "closed:next_poll"
UNSENT = "closed:unsent"
SEND = "closed:send:"
#: Sends still to be worked on.
OPEN_STATES = frozenset({OutcomeStatus.PENDING, OutcomeStatus.WAITING, OutcomeStatus.PARKED})
#: Sends kept on the unsent list: open ones, and those that gave up (re-queueable).
UNSENT_STATES = OPEN_STATES | {OutcomeStatus.FAILED, OutcomeStatus.DEAD}


class Send(BaseModel):
    """One client sent (or to be sent) for one closed matter: a work unit with the
    delivery states (SPEC §2.6)."""

    model_config = ConfigDict(extra="ignore")

    key: str
    marker: str
    """The idempotency id the destination receives (the same on every attempt)."""
    status: OutcomeStatus = OutcomeStatus.PENDING
    reason: str | None = None
    message: str | None = None
    matter: ClosedMatter | None = None
    """The matter and client as read; dropped once sent (the record remains)."""
    matter_name: str | None = None
    closed_on: str
    attempt: int = 0
    first_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    deadline_at: datetime | None = None
    records: list[Record] = Field(default_factory=list)
    begun: list[tuple[str, str]] = Field(default_factory=list)
    updated_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATES

    def due(self, now: datetime) -> bool:
        if self.status == OutcomeStatus.PENDING or self.status == OutcomeStatus.PARKED:
            return True
        return self.status == OutcomeStatus.WAITING and (
            self.next_attempt_at is None or self.next_attempt_at <= now)


class ClosingStore:
    """The sync's entries for one firm (tenant, source, destination)."""

    def __init__(self, engine: Engine, tenant: str, source: str, destination: str) -> None:
        self.engine, self.tenant = engine, tenant
        self.source, self.destination = source, destination

    async def _get(self, app: str, key: str) -> Any:
        raw = await self.engine.db(self.engine.ledger.kv_get, self.tenant, app, key)
        return json.loads(raw) if raw else None

    async def _set(self, app: str, key: str, value: Any) -> None:
        await self.engine.db(self.engine.ledger.kv_set, self.tenant, app, key,
                             json.dumps(value, separators=(",", ":")))

    async def _delete(self, app: str, key: str) -> None:
        await self.engine.db(self.engine.ledger.kv_delete, self.tenant, app, key)

    # --- the source's side ------------------------------------------------------------

    async def position(self) -> str | None:
        value = await self._get(self.source, POSITION)
        return str(value) if value is not None else None

    async def keep_position(self, position: str) -> None:
        await self._set(self.source, POSITION, position)

    async def start(self, default: datetime) -> datetime:
        """When the firm's sync began (kept on its first run)."""
        value = await self._get(self.source, START)
        if value is None:
            await self._set(self.source, START, default.isoformat())
            return default
        return datetime.fromisoformat(value)

    async def config_errors(self) -> list[str]:
        return list(await self._get(self.source, CONFIG_ERROR) or [])

    async def keep_config_errors(self, problems: list[str]) -> None:
        if problems:
            await self._set(self.source, CONFIG_ERROR, problems)
        else:
            await self._delete(self.source, CONFIG_ERROR)

    async def next_poll(self) -> datetime | None:
        value = await self._get(self.source, NEXT_POLL)
        return datetime.fromisoformat(value) if value else None

    async def keep_next_poll(self, at: datetime) -> None:
        await self._set(self.source, NEXT_POLL, at.isoformat())

    # --- the sends ----------------------------------------------------------------------

    async def send(self, key: str) -> Send | None:
        raw = await self._get(self.destination, SEND + key)
        return Send.model_validate(raw) if raw is not None else None

    async def unsent_keys(self) -> list[str]:
        return list(await self._get(self.destination, UNSENT) or [])

    async def keep(self, send: Send) -> None:
        """Write a send, and its place on the unsent list."""
        if send.status == OutcomeStatus.LOGGED:
            send.matter = None  # the client's data is not kept once sent
        await self._set(self.destination, SEND + send.key, send.model_dump(mode="json"))
        keys = await self.unsent_keys()
        unsent = send.status in UNSENT_STATES
        if unsent and send.key not in keys:
            await self._set(self.destination, UNSENT, [*keys, send.key])
        elif not unsent and send.key in keys:
            await self._set(self.destination, UNSENT, [k for k in keys if k != send.key])
