"""What the ledger hands out: its errors and its read-only views."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from callbridge.errors import CallbridgeError
from callbridge.events import AnyEvent
from callbridge.models import Contact, Record


class LeaseLost(CallbridgeError):
    """This process's claim on a delivery is no longer valid: another one owns it."""


class ContentErased(CallbridgeError):
    """The event's contents were erased (retention or a person's request)."""


class AlreadyLogged(CallbridgeError):
    """A delivery already logged (or accepted) cannot be put back to be logged again."""


class DuplicateRecord(CallbridgeError):
    """A second, different record for a (kind, step) the delivery already has a record
    for: a bug in the host or the plugin; the first record is kept."""


@dataclass(frozen=True)
class Stored:
    """What :meth:`Ledger.store_event` did with an event.

    ``event`` is the event as the ledger now holds it: the one given, or, when a
    stale copy arrived after a richer one, the richer contents kept (SPEC §4).
    """

    event_pk: int
    status: Literal["new", "duplicate", "revision"]
    revision: int
    event: AnyEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Claim:
    """A delivery leased to one owner: the fence every write for it must carry, and
    what a retry resumes from (``records``; ``revision`` of the event when claimed)."""

    delivery_id: int
    event_pk: int
    tenant: str
    app: str
    kind: str
    fence: int
    attempt: int
    first_attempt_at: datetime
    records: tuple[Record, ...]
    chosen_contact_ids: tuple[str, ...] | None
    needs_update: bool
    notes: str | None
    mode: str
    owner: str
    revision: int = 0
    deadline_at: datetime | None = None
    #: The (kind, step) pairs an earlier attempt began writing (``begin_step``);
    #: one without a record in ``records`` is an uncertain write.
    begun: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class DeliveryView:
    """One delivery as history shows it: its current outcome, records and attempt count."""

    delivery_id: int
    event_pk: int
    tenant: str
    app: str
    source: str
    kind: str
    source_id: str
    occurred_at: datetime
    status: str
    reason: str | None
    message: str | None
    retryable: bool
    next_attempt_at: datetime | None
    records: tuple[Record, ...]
    attempts: int
    updated_at: datetime
    candidates: tuple[Contact, ...]
    mode: str
    deadline_at: datetime | None = None

    @property
    def masked_id(self) -> str:
        """The event id for display: all but its last 4 characters hidden (an id may be
        a phone number); ``(erased)`` once the event's contents are erased."""
        from callbridge.markers import mask_id

        return mask_id(self.source_id or None)


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a delivery, as appended by :meth:`Ledger.finish`."""

    attempt: int
    fence: int
    started_at: datetime | None
    finished_at: datetime
    status: str
    reason: str | None
    message: str | None
    retryable: bool
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class IndexEntry:
    """A contact the phone index holds for a number."""

    contact_id: str
    updated_at: datetime | None
    name: str | None
    checked_at: datetime | None


class LockLost(CallbridgeError):
    """A ledger lock this process held has passed to another (it expired)."""


@dataclass(frozen=True)
class LockHandle:
    """A held ledger lock: its name's keyed hash, this holder's owner token, and its
    fence (raised each time the lock changes hands, never lowered)."""

    name_hash: str
    owner: str
    fence: int
