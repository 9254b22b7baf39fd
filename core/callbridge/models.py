"""The records hooks exchange with the host: contacts, matters, users, log results.

Plain pydantic models, frozen. Ids are strings whatever the app uses.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Contact(BaseModel):
    """A contact in the app.

    ``phones`` are the numbers as stored in the app (raw text); the host reads
    them to E.164 itself. ``updated_at`` orders matches for ``most_recent``.
    """

    model_config = _FROZEN

    id: str
    name: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    updated_at: datetime | None = None
    deleted: bool = False


class Matter(BaseModel):
    """A matter (case, project) in the app. ``status`` as the app names it."""

    model_config = _FROZEN

    id: str
    name: str | None = None
    status: str | None = None


class AppUser(BaseModel):
    """A staff member's account in the app."""

    model_config = _FROZEN

    id: str
    name: str | None = None
    email: str | None = None


class Record(BaseModel):
    """A record written in the app: its kind ("communication", "time_entry", ...),
    its id, and the step of the log that wrote it."""

    model_config = _FROZEN

    kind: str
    id: str
    step: str = "log"


class LogTarget(BaseModel):
    """Where the host asks a log hook to write an event.

    ``contacts`` is empty when no contact matched and none was created (log
    without a contact where the app allows it, or apply the app's fallback);
    it has several entries only under the ``all`` policy for an app that
    declares ``multi_contact_link``. ``matter`` is set when exactly one open
    matter was found. ``user`` is the staff member matched to the event's
    internal user, else the default user.
    """

    model_config = _FROZEN

    contacts: tuple[Contact, ...] = ()
    matter: Matter | None = None
    user: AppUser | None = None
    notes: str | None = None  # notes chosen for a delayed or manual log; overrides the event's


class LogStatus(StrEnum):
    LOGGED = "logged"
    ACCEPTED = "accepted"  # the app writes asynchronously and has not confirmed


class LogResult(BaseModel):
    """What a log hook wrote."""

    model_config = _FROZEN

    records: tuple[Record, ...]
    status: LogStatus = LogStatus.LOGGED
    note: str | None = None  # e.g. "document missing"


class ChangedContacts(BaseModel):
    """One page of contacts changed since a time, for the host's phone index.

    Return ``cursor`` to be called again for the next page, None when done;
    ``high_water`` is the time to pass as ``since`` on the next sync.
    """

    model_config = _FROZEN

    contacts: tuple[Contact, ...]
    cursor: str | None = None
    high_water: datetime | None = None


class OutcomeStatus(StrEnum):
    LOGGED = "logged"
    ACCEPTED = "accepted"
    SKIPPED = "skipped"
    UNRESOLVED = "unresolved"
    FAILED = "failed"
    PENDING = "pending"  # stored, not yet processed


class Outcome(BaseModel):
    """The current result of one event in one app."""

    model_config = _FROZEN

    status: OutcomeStatus
    reason: str | None = None  # a short code: "no_contact", "internal", "rate_limited", ...
    message: str | None = None  # one sentence for a person, no numbers or secrets
    records: tuple[Record, ...] = ()
    retryable: bool = False
    next_attempt_at: datetime | None = None
    candidates: tuple[Contact, ...] = Field(default=())  # for unresolved: the matches to choose from
