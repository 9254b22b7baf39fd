"""What an app's requests to the host carry and mean (app events, hook API 2.1).

The models of the ``app_events`` hooks: the subscription the host keeps, the request
as received, and the work a request means. Importable from :mod:`callbridge.models`
as well, with the other models hooks exchange.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class AppSubscription(BaseModel):
    """An app's subscription to send its events to the host (``subscribe_app_events``).

    The host keeps it in the ledger, encrypted, and hands it back to
    ``renew_app_events``, ``verify_app_event`` and ``parse_app_event``.
    """

    model_config = _FROZEN

    id: str
    """The subscription's id in the app."""
    expires_at: datetime | None = None
    """When the app drops it unless renewed; None when it does not expire (the host still asks ``renew_app_events`` daily whether it stands)."""
    secret: str | None = None
    """The key the app signs its requests with: the one the plugin chose, or the one the app gave."""
    events: tuple[str, ...] = ()
    """The app's names of the events subscribed to, for people reading the subscription."""


class AppRequest(BaseModel):
    """One HTTP request an app sent to ``POST /v1/apps/{tenant}/{app}/events``, as received."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    headers: dict[str, str]
    """The request's headers, names in lower case."""
    body: bytes
    """The raw body, exactly as received (signatures are computed over it)."""
    url: str
    """The URL the request was sent to (the subscription's callback URL)."""
    received_at: datetime
    """When the host received it (aware UTC; compare signed timestamps with it)."""

    def header(self, name: str) -> str | None:
        """A header's value by name, whatever its case; None when absent."""
        return self.headers.get(name.lower())


class WriteConfirmed(BaseModel):
    """The app reports that a write it accepted is done.

    ``marker`` is the delivery's marker (``ctx.delivery.marker``) that the write
    carried in what the app echoes back (e.g. a request id header); ``kind`` is
    the :class:`Record` kind the log hook returned for it.
    """

    model_config = _FROZEN

    marker: str
    """The delivery's marker the write carried."""
    kind: str
    """The kind of the record written (as in the log hook's :class:`Record`)."""
    record_id: str | None = None
    """The record's id in the app, when the request gives it (in the form of the :class:`Record`'s id)."""


class WriteFailed(BaseModel):
    """The app reports that a write it accepted failed: the host writes it again."""

    model_config = _FROZEN

    marker: str
    """The delivery's marker the write carried."""
    kind: str
    """The kind of the record that failed (as in the log hook's :class:`Record`)."""
    reason: str
    """One sentence for a person (never the app's own text, which may hold personal data)."""
    record_id: str | None = None
    """The record's id in the app, when the request gives it."""


class MatterChanged(BaseModel):
    """The app reports that a matter changed (the closed-matter sync reads the matter)."""

    model_config = _FROZEN

    matter_id: str
    """The matter's id in the app."""
    closed: bool | None = None
    """True when the request says the matter was closed, False when it says it is open, None when it does not say."""
    changed_at: datetime | None = None
    """When the app changed it, when the request says."""


#: What ``parse_app_event`` returns a list of.
AppWork = WriteConfirmed | WriteFailed | MatterChanged
