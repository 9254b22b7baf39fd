"""The records hooks exchange with the host: contacts, matters, users, log results.

Plain pydantic models, frozen. Ids are strings whatever the app uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from callbridge.errors import AppError
from callbridge.events import AnyEvent

if TYPE_CHECKING:
    from callbridge.context import DeliveryState

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Contact(BaseModel):
    """A contact in the app.

    ``phones`` are the numbers as stored in the app (raw text); the host reads
    them to E.164 itself. ``updated_at`` orders matches for ``most_recent``.
    """

    model_config = _FROZEN

    id: str
    """The contact's id in the app."""
    name: str | None = None
    """The contact's name, as the app shows it."""
    phones: tuple[str, ...] = ()
    """Its numbers as stored in the app (raw text); the host reads them to E.164 itself."""
    emails: tuple[str, ...] = ()
    """Its email addresses."""
    updated_at: datetime | None = None
    """When the app last changed it; orders matches under the ``most_recent`` policy (a contact without it counts as oldest; ties go to the highest id)."""
    deleted: bool = False
    """True for a contact the app has deleted (the phone index drops it)."""


class Matter(BaseModel):
    """A matter (case, project) in the app. ``status`` as the app names it."""

    model_config = _FROZEN

    id: str
    """The matter's id in the app."""
    name: str | None = None
    """Its name or number, as the app shows it."""
    status: str | None = None
    """Its status, as the app names it."""


class AppUser(BaseModel):
    """A staff member's account in the app."""

    model_config = _FROZEN

    id: str
    """The user's id in the app."""
    name: str | None = None
    """The user's name."""
    email: str | None = None
    """The user's email address."""


class Record(BaseModel):
    """A record written in the app: its kind ("communication", "time_entry", ...),
    its id, and the step of the log that wrote it."""

    model_config = _FROZEN

    kind: str
    """What was written, in the app's terms (``communication``, ``time_entry``, ``contact``...)."""
    id: str
    """The written record's id in the app."""
    step: str = "log"
    """The record's key within its delivery: two records of one kind need two steps."""


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
    """The contacts to link; empty when none matched and none was created."""
    matter: Matter | None = None
    """The contact's only open matter, when there is exactly one."""
    user: AppUser | None = None
    """The staff member's user in the app, else the default user."""
    notes: str | None = None  # notes chosen for a delayed or manual log; overrides the event's
    #: The opaque reference ``ensure_activity_code`` returned (the host caches it per
    #: tenant and app); None when the app has no activity codes.
    activity_code: str | None = None
    """The reference ``ensure_activity_code`` returned, for apps that declare ``activity_codes``."""


class LogStatus(StrEnum):
    """Whether the app has done a write (``logged``) or will do it later (``accepted``)."""

    LOGGED = "logged"  # the app holds the record
    ACCEPTED = "accepted"  # the app writes asynchronously and has not confirmed


class LogResult(BaseModel):
    """What a log hook wrote.

    ``missing`` names the parts that could not be written while the rest was
    (typed partial success): ``LogResult(records=..., missing=("document",))``
    ends *logged* with the reason ``document_missing``.
    """

    model_config = _FROZEN

    records: tuple[Record, ...]
    """Every record the log wrote (or found written by an earlier attempt)."""
    status: LogStatus = LogStatus.LOGGED
    """``logged``, or ``accepted`` when the app will do the write later."""
    missing: tuple[str, ...] = ()
    """Parts that could not be written (e.g. ``document``); the outcome says so."""
    #: Deprecated (hook API 1.x): ``note="document missing"`` reads as ``missing=("document",)``.
    note: str | None = None

    @property
    def missing_parts(self) -> tuple[str, ...]:
        """``missing``, with the 1.x note read as well."""
        if self.missing or not self.note:
            return self.missing
        text = self.note.strip().lower()
        return (text.removesuffix(" missing").replace(" ", "_"),) if text.endswith(" missing") else ()


class ChangedContacts(BaseModel):
    """One page of contacts changed since a time, for the host's phone index.

    Return ``cursor`` to be called again for the next page, None when done;
    ``high_water`` is the time to pass as ``since`` on the next sync.
    """

    model_config = _FROZEN

    contacts: tuple[Contact, ...]
    """The page's contacts."""
    cursor: str | None = None
    """Pass it back for the next page; None on the last page."""
    high_water: datetime | None = None
    """The time to pass as ``since`` on the next sync."""


class OutcomeStatus(StrEnum):
    """A delivery's state (SPEC §2.6); ``Outcome.reason`` carries the sub-state."""

    PENDING = "pending"  # stored, not yet processed
    WAITING = "waiting"  # reason rate_limit | delay | backoff; due at next_attempt_at
    PARKED = "parked"  # reason reauthorise | daily_limit | config_error; until released
    LOGGED = "logged"
    ACCEPTED = "accepted"
    SKIPPED = "skipped"
    UNRESOLVED = "unresolved"
    FAILED = "failed"  # permanent
    DEAD = "dead"  # transient failures past the deadline

    @property
    def final(self) -> bool:
        """No attempt follows on its own (a user or a release may still reopen it)."""
        return self not in (OutcomeStatus.PENDING, OutcomeStatus.WAITING, OutcomeStatus.PARKED)


class WaitReason(StrEnum):
    RATE_LIMIT = "rate_limit"
    DELAY = "delay"
    BACKOFF = "backoff"


class ParkReason(StrEnum):
    REAUTHORISE = "reauthorise"
    DAILY_LIMIT = "daily_limit"
    CONFIG_ERROR = "config_error"


class Outcome(BaseModel):
    """The current result of one event in one app."""

    model_config = _FROZEN

    status: OutcomeStatus
    reason: str | None = None  # a short code: "no_contact", "internal", "rate_limit", ...
    message: str | None = None  # one sentence for a person, no numbers or secrets
    records: tuple[Record, ...] = ()
    retryable: bool = False
    next_attempt_at: datetime | None = None
    candidates: tuple[Contact, ...] = Field(default=())  # for unresolved: the matches to choose from


@dataclass(frozen=True)
class BatchItem:
    """One event of a batch given to ``log_batch``: the event, where to log it, its delivery.

    ``delivery`` is this item's own delivery (records of earlier attempts,
    ``marker``, ``step``); keep each record written for the item with it.
    """

    event: AnyEvent
    """The event to log."""
    target: LogTarget
    """Where to log it, as for a single log hook."""
    delivery: DeliveryState
    """This item's own delivery: its records, marker, attempt and ``step``."""


@dataclass(frozen=True)
class BatchResult:
    """What ``log_batch`` did with one item: ``ok`` with its LogResult, or ``error``."""

    ok: LogResult | None = None
    """What was written for the item, when it was."""
    error: AppError | None = None
    """Why the item failed, when it did (the host treats it as that item's error)."""

    def __post_init__(self) -> None:
        if (self.ok is None) == (self.error is None):
            raise ValueError("a BatchResult holds exactly one of ok and error")


# --- the closed-matter sync (SPEC §5) --------------------------------------------------

#: A custom field's value as the host reads it: a checkbox is True or False, another
#: type its text, and a field left unset (or absent from the record) None.
FieldValue = bool | str | None


class CustomField(BaseModel):
    """A custom field of the app, looked up by its exact, case-sensitive name.

    ``field_type`` is None when the app has no field of that exact name on that
    kind of record (``BroadlyOptOut`` is not ``broadlyoptout``).
    """

    model_config = _FROZEN

    name: str
    """The name asked for, exactly as configured."""
    on: Literal["contact", "matter"]
    """Which records carry it: the client contact or the matter."""
    field_type: str | None = None
    """The app's type name, lower case (``checkbox``, ``text_line``...); None: no such field."""

    @property
    def exists(self) -> bool:
        return self.field_type is not None

    @property
    def is_checkbox(self) -> bool:
        return self.field_type == "checkbox"


class ClientContact(BaseModel):
    """A closed matter's client: who is sent to the destination."""

    model_config = _FROZEN

    id: str
    """The contact's id in the source app."""
    name: str | None = None
    """The client's name, as the app shows it."""
    first_name: str | None = None
    """The given name, when the app keeps it apart."""
    last_name: str | None = None
    """The family name, when the app keeps it apart."""
    email: str | None = None
    """The client's primary email address."""
    phones: tuple[str, ...] = ()
    """The client's numbers, primary first: E.164 where they read as numbers in the firm's region, else as stored."""
    custom_fields: dict[str, FieldValue] = Field(default_factory=dict)
    """The configured contact fields' values by exact name (None: unset)."""


class ClosedMatter(BaseModel):
    """A matter the source app reports closed, with its client."""

    model_config = _FROZEN

    id: str
    """The matter's id in the source app."""
    name: str | None = None
    """Its number or name, as the app shows it."""
    description: str | None = None
    """What the matter is about."""
    closed_on: date
    """The day it was closed (a re-opened matter closed again has a later one)."""
    client: ClientContact
    """Its client, with the configured contact fields."""
    custom_fields: dict[str, FieldValue] = Field(default_factory=dict)
    """The configured matter fields' values by exact name (None: unset)."""


class ClosedMatterPage(BaseModel):
    """One page of matters closed since a position (``closed_matters_since``).

    ``position`` is opaque to the host: it stores it and passes it back, so a
    restart neither misses nor repeats a page. ``more`` is True when another page
    is ready now; ``fields`` holds the definition of every custom field asked for
    (one per name and kind of record), read on every call so a configuration fixed
    in the app is seen at once.
    """

    model_config = _FROZEN

    matters: tuple[ClosedMatter, ...]
    """The page's closed matters (a matter may come again on a later page: the host sends once)."""
    position: str
    """Where the next call starts; the host keeps it in the ledger once the page is handled."""
    more: bool = False
    """Another page is ready now: the host calls again at once with ``position``."""
    fields: tuple[CustomField, ...] = ()
    """The asked fields' definitions (exact names), for the host's configuration check."""


# App events (hook API 2.1): kept in their own module, named here with the other hook models.
from callbridge.apprequests import AppRequest as AppRequest  # noqa: E402
from callbridge.apprequests import AppSubscription as AppSubscription  # noqa: E402
from callbridge.apprequests import AppWork as AppWork  # noqa: E402
from callbridge.apprequests import MatterChanged as MatterChanged  # noqa: E402
from callbridge.apprequests import WriteConfirmed as WriteConfirmed  # noqa: E402
from callbridge.apprequests import WriteFailed as WriteFailed  # noqa: E402
