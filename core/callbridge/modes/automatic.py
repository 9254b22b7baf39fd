"""Automatic logging's parking for re-authorisation (SPEC §4).

When an app refuses a connection's credentials and a refresh cannot fix them, the
delivery is parked (``reauthorise``) until the connection is made again. The other
deliveries of that connection would each send a request (and try a refresh) only to
be refused the same way: :class:`Reauthorisation` remembers, in this process, the
connections refused and the credentials they were refused with, and parks their
next deliveries without a request while the stored credentials are still those (at
most :data:`HOLD` seconds, after which one delivery tries again). New credentials
(``callbridge auth``, the browser's connect link) end it at once.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from callbridge.models import Outcome, OutcomeStatus, ParkReason
from callbridge.outcomes import parked

if TYPE_CHECKING:
    from callbridge.engine import Engine

__all__ = ["HOLD", "Reauthorisation"]

#: How long a connection refused stays parked without a request (seconds).
HOLD = 300.0


class Reauthorisation:
    """The connections this process saw refused for their credentials."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._refused: dict[tuple[str, str], tuple[str, float]] = {}

    async def _credentials(self, tenant: str, app: str) -> str:
        """A fingerprint of the stored credentials (kept in memory only)."""
        token = await self.engine.tokens.load(tenant, app)
        text = json.dumps(token, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    async def note(self, tenant: str, app: str, outcome: Outcome) -> None:
        """Remember a connection refused (an outcome parked for re-authorisation)."""
        key = (tenant, app)
        if outcome.status == OutcomeStatus.PARKED and outcome.reason == ParkReason.REAUTHORISE:
            self._refused[key] = (await self._credentials(tenant, app),
                                  self.engine.clock.monotonic())
        elif outcome.status != OutcomeStatus.PARKED:
            self._refused.pop(key, None)

    async def parked(self, tenant: str, app: str) -> Outcome | None:
        """The outcome for a delivery of a connection refused with the credentials it
        still has (parked, no request sent), or None: try it."""
        key = (tenant, app)
        seen = self._refused.get(key)
        if seen is None:
            return None
        fingerprint, at = seen
        if (self.engine.clock.monotonic() - at > HOLD
                or await self._credentials(tenant, app) != fingerprint):
            self._refused.pop(key, None)
            return None
        return parked(ParkReason.REAUTHORISE,
                      "The app refused this connection's credentials; not tried again until it "
                      "is re-authorised (re-authorise with `callbridge auth`).")
