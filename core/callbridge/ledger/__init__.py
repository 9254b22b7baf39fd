"""The ledger: every event received, one delivery per (tenant, app, event), what was
written in each app, and every attempt — the source of truth (docs/ledger.md).

SQLAlchemy 2 Core, a SQLite file by default, any SQLAlchemy URL otherwise,
Alembic migrations. Synchronous and thread-safe; async code reaches it only
through :class:`LedgerGateway` (``ledger.gateway``: one executor).

Claims: a delivery is claimed under a lease (owner, expiry) and a fencing
token (``fence``, raised by every claim). Every write made for a claim checks
the token, so a process that paused past its lease and lost the delivery to
another cannot write: it gets :class:`LeaseLost`. On SQLite every write
transaction starts with ``BEGIN IMMEDIATE``, so a claim's read and update are
one step across processes; on PostgreSQL claims use ``FOR UPDATE SKIP LOCKED``.

One module per concern, each a part of :class:`Ledger`: ``events``,
``deliveries`` (claims, states, the write protocol), ``confirmations`` (accepted
writes checked later), ``appevents`` (accepted writes found by their marker),
``views`` (history), ``listing`` (pages for the operator API),
``kv`` (key-value entries and the cache), ``phone`` (the phone index),
``coordination`` (tokens and locks), ``retention`` (purge and erasure), with
``_base`` (engines and transactions), ``crypto``, ``tables`` and ``gateway``.
"""

from __future__ import annotations

from callbridge.ledger._base import (
    DEFAULT_DEADLINE_HOURS,
    FINAL_OK,
    MIGRATIONS,
    NOT_ENDED,
    PARKED_REASONS,
    WAITING_REASONS,
)
from callbridge.ledger.appevents import AppEventsMixin
from callbridge.ledger.confirmations import AcceptedDelivery, ConfirmationsMixin
from callbridge.ledger.coordination import CoordinationMixin
from callbridge.ledger.deliveries import DeliveriesMixin, settle
from callbridge.ledger.events import EventsMixin
from callbridge.ledger.gateway import (
    HeldLock,
    LedgerGateway,
    LedgerStore,
    LedgerTokenStore,
)
from callbridge.ledger.kv import KvMixin
from callbridge.ledger.listing import ListingMixin
from callbridge.ledger.phone import PhoneIndexMixin
from callbridge.ledger.retention import RetentionMixin
from callbridge.ledger.types import (
    AlreadyLogged,
    AttemptView,
    Claim,
    ContentErased,
    DeliveryView,
    DuplicateRecord,
    IndexEntry,
    LeaseLost,
    LockHandle,
    LockLost,
    Stored,
)
from callbridge.ledger.views import ViewsMixin

__all__ = [
    "DEFAULT_DEADLINE_HOURS", "FINAL_OK", "MIGRATIONS", "NOT_ENDED", "PARKED_REASONS",
    "WAITING_REASONS", "AcceptedDelivery", "AlreadyLogged", "AttemptView", "Claim",
    "ContentErased", "DeliveryView", "DuplicateRecord", "HeldLock", "IndexEntry", "LeaseLost", "Ledger",
    "LedgerGateway", "LedgerStore", "LedgerTokenStore", "LockHandle", "LockLost",
    "Stored", "settle",
]


class Ledger(EventsMixin, DeliveriesMixin, ConfirmationsMixin, AppEventsMixin, ViewsMixin,
             KvMixin, PhoneIndexMixin, CoordinationMixin, RetentionMixin, ListingMixin):
    """One per process. See the module docstring."""

    _gateway: LedgerGateway | None = None

    @property
    def gateway(self) -> LedgerGateway:
        """The ledger's async gateway (made on first use; one executor per ledger)."""
        if self._gateway is None:
            self._gateway = LedgerGateway(self)
        return self._gateway

    def close(self) -> None:
        """Close the database connections (and the gateway's executor)."""
        if self._gateway is not None:
            self._gateway.close()
        super().close()
