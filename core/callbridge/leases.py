"""The leases of the deliveries a worker is working, kept by one task for all of them.

A delivery is claimed under a lease (``ledger.lease_seconds``); while its work
runs the lease is renewed, and if a renewal cannot be confirmed with a quarter
of the lease still to go, the work is stopped by this process's own clock:
another worker may claim the delivery only after the lease has lapsed, by which
time anything this one sent has long reached the app, where the plugin's lookup
finds it.

Most deliveries finish long before their first renewal is due, so nothing is
started per delivery: one keeper task wakes every eighth of a lease while any
lease is held and starts a renewal for each lease a quarter old or more.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from callbridge.ledger import Claim, LeaseLost

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.worker")


class Lease:
    """One held lease: its claim, the work it guards and how long it is good for."""

    __slots__ = ("claim", "lost", "renewed", "renewing", "seconds", "valid_until", "work")

    def __init__(self, claim: Claim, work: asyncio.Task[Any], claimed: float,
                 seconds: float) -> None:
        self.claim, self.work, self.seconds = claim, work, seconds
        #: When the lease was taken or last renewed (the clock's monotonic time).
        self.renewed = claimed
        self.valid_until = claimed + seconds
        self.renewing: asyncio.Task[None] | None = None
        #: Set when the lease could not be kept: the work was stopped for it.
        self.lost = False


class Leases:
    """The leases held by one worker's deliveries (see the module's text)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._held: dict[int, Lease] = {}
        self._keeper: asyncio.Task[None] | None = None
        # Renewals run on their own thread: a queue of ledger writes never delays them.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callbridge-lease")

    def hold(self, claim: Claim, work: asyncio.Task[Any], claimed: float,
             seconds: float | None = None) -> Lease:
        """Keep ``claim``'s lease of ``seconds`` (the settings' ``lease_seconds``), taken
        at ``claimed``, while ``work`` runs."""
        if seconds is None:
            seconds = self.engine.config.ledger.lease_seconds
        lease = Lease(claim, work, claimed, seconds)
        self._held[id(lease)] = lease
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())
        return lease

    def drop(self, lease: Lease) -> None:
        """Stop keeping ``lease`` (its work is done, or stopped); idempotent."""
        if self._held.pop(id(lease), None) is None:
            return
        if lease.renewing is not None:
            lease.renewing.cancel()
        if not self._held and self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None

    @property
    def held(self) -> int:
        """How many leases are kept now."""
        return len(self._held)

    @property
    def keeping(self) -> bool:
        """Whether the keeper task is running (only while a lease is held)."""
        return self._keeper is not None and not self._keeper.done()

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    async def _keep(self) -> None:
        clock = self.engine.clock
        while self._held:
            await clock.sleep(min(lease.seconds for lease in self._held.values()) / 8)
            now = clock.monotonic()
            for lease in list(self._held.values()):
                if (lease.renewing is None and not lease.lost
                        and now - lease.renewed >= lease.seconds / 4):
                    lease.renewing = asyncio.get_running_loop().create_task(self._renew(lease))

    async def _renew(self, lease: Lease) -> None:
        engine, clock = self.engine, self.engine.clock
        started = clock.monotonic()
        budget = lease.valid_until - started - lease.seconds / 4
        try:
            if budget <= 0:
                raise TimeoutError
            with engine.busy():
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    self._pool, functools.partial(engine.ledger.renew, lease.claim,
                                                  lease.seconds)), budget)
            lease.renewed, lease.valid_until = started, started + lease.seconds
        except (LeaseLost, TimeoutError):
            lease.lost = True
            lease.work.cancel()
        finally:
            lease.renewing = None
