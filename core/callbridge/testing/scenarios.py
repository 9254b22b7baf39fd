"""The contract kit's inputs: its sample events, its tenant and its default target.

Everything here is fictional and settable: :class:`Scenarios` replaces any
sample, ``contract_suite(..., tenant=TenantSettings(...))`` replaces the
tenant. The reference page "The contract kit's inputs" lists the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from callbridge.capabilities import Capability
from callbridge.events import AnyEvent, CallEvent, ExternalParty, parse_event
from callbridge.faults import Fault
from callbridge.models import AppRequest, AppSubscription, ClientContact, ClosedMatter, LogTarget
from callbridge.settings import TenantSettings

__all__ = ["KIT_CALLBACK", "KIT_START", "TENANT", "AppEventSamples", "Row", "Scenarios",
           "default_tenant"]

#: The tenant key of every kit context and sample event.
TENANT = "kit"
#: When the sample events happen, and where the kit's clock starts.
KIT_START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
#: The firm's own number in the sample events and the kit's tenant.
FIRM_NUMBER = "+12125550100"
#: The firm's staff member on the sample events (also the tenant's extension 101).
STAFF_EMAIL = "staff@firm.example"
STAFF_EXTENSION = "101"


#: The client and matter ``send_closed_matter`` sends unless the scenarios give another.
SAMPLE_CLOSED_MATTER = ClosedMatter(
    id="kit-matter-1", name="00042-Whitfield", description="Lease dispute",
    closed_on=date(2026, 1, 5),
    client=ClientContact(id="kit-contact-1", name="Dana Whitfield", first_name="Dana",
                         last_name="Whitfield", email="dana@example.com",
                         phones=("+12125550142",), custom_fields={"BroadlyOptOut": False}),
    custom_fields={"SendBroadlyThankYou": True})
#: The callback URL the app-event cases subscribe with.
KIT_CALLBACK = "https://callbridge.example.com/v1/apps/kit/app/events"

#: Builds a request the app would send: (subscription, what it names, now) -> AppRequest.
#: What it names: the marker of the write reported on, or the id of the matter changed.
RequestBuilder = Callable[[AppSubscription, str, datetime], AppRequest]


@dataclass(frozen=True)
class AppEventSamples:
    """Requests your app would send the host, for the app-event cases (``app_events``).

    Each builder is given a subscription (sign with its ``secret``), what the
    request names (the marker of the write it reports on, or the id of the
    matter that changed) and the time to sign with; it returns the
    :class:`~callbridge.models.AppRequest` as the host would receive it (header
    names in lower case). Give the ones your app sends, at least one.

    Attributes:
        write_done: a request reporting a write done (the record created).
        kind: the kind of the record ``write_done`` and ``write_failed`` report
            on, as the log hook's :class:`~callbridge.models.Record` has it.
        write_failed: a request reporting that write failed.
        matter_changed: a request reporting that a matter changed.
    """

    write_done: RequestBuilder | None = None
    kind: str | None = None
    write_failed: RequestBuilder | None = None
    matter_changed: RequestBuilder | None = None

    def __post_init__(self) -> None:
        if not (self.write_done or self.write_failed or self.matter_changed):
            raise ValueError("AppEventSamples needs at least one request builder")
        if (self.write_done or self.write_failed) and not self.kind:
            raise ValueError("AppEventSamples.kind is needed with write_done or write_failed")


def default_tenant(region: str = "US") -> TenantSettings:
    """The kit's tenant: one firm number, one extension, the scenarios' region."""
    return TenantSettings(name="Kit Firm", default_region=region, own_numbers=frozenset({FIRM_NUMBER}),
                          extensions={STAFF_EXTENSION: STAFF_EMAIL})


@dataclass(frozen=True)
class Scenarios:
    """The inputs of the standard cases, all fictional.

    Attributes:
        known_number: a contact's number in the app (E.164).
        unknown_number: a number no contact has.
        known_email: a contact's address (needed for ``contact_search_email``).
        known_user_email: a staff member's address that the app's users hold
            (needed for ``users``); the kit also looks up a user nobody has.
        new_contact_name: the name ``create_contact`` is given.
        contact_one_matter, contact_no_matters, contact_several_matters: ids
            of contacts with one, no and several open matters.
        call, sms, fax: replace the sample events (dicts as
            :func:`callbridge.events.parse_event` reads them).
        log_target: where the sample events are logged. The default has no
            contact: pass ``LogTarget(contacts=(Contact(id=...),))`` when your
            app cannot log an event of some kind without one.
        activity_code_label: the label ``ensure_activity_code`` is given.
        closed_since: for ``closed_matter_events``: a time before at least one
            matter of the sandbox closed (``closed_matters_since`` reads from it).
        contact_fields, matter_fields: the custom fields whose values
            ``closed_matters_since`` is asked for (exact names).
        closed_matter: the closed matter and client ``send_closed_matter`` sends
            (a fictional one by default).
        app_events: requests your app sends the host (needed for ``app_events``).
        region: where numbers without a country code are read.
    """

    known_number: str
    unknown_number: str
    known_email: str | None = None
    known_user_email: str | None = None
    new_contact_name: str = "New callbridge Contact"
    contact_one_matter: str | None = None
    contact_no_matters: str | None = None
    contact_several_matters: str | None = None
    call: Mapping[str, Any] | None = None
    sms: Mapping[str, Any] | None = None
    fax: Mapping[str, Any] | None = None
    log_target: LogTarget = field(default_factory=LogTarget)
    activity_code_label: str = "CB-CALL"
    app_events: AppEventSamples | None = None
    region: str = "US"
    closed_since: datetime | None = None
    contact_fields: tuple[str, ...] = ("BroadlyOptOut",)
    matter_fields: tuple[str, ...] = ("SendBroadlyThankYou",)
    closed_matter: ClosedMatter = field(default_factory=lambda: SAMPLE_CLOSED_MATTER)

    def party(self, number: str, email: str | None = None) -> ExternalParty:
        """An external party with ``number`` (and ``email``), read in the scenarios' region."""
        data: dict[str, Any] = {"number": number}
        if email:
            data["email"] = email
        return ExternalParty.model_validate(data, context={"region": self.region})

    def sample(self, kind: str, n: int = 1) -> dict[str, Any]:
        """The kit's own sample event of ``kind`` as JSON (the ``n``-th of that kind)."""
        start = KIT_START + timedelta(minutes=10 * (n - 1))
        base: dict[str, Any] = {
            "kind": kind, "id": f"kit-{kind}-{n}", "tenant": TENANT, "direction": "inbound",
            "external": {"number": self.known_number},
            "internal": {"email": STAFF_EMAIL, "extension": STAFF_EXTENSION,
                         "number": FIRM_NUMBER},
        }
        if kind == "call":
            base |= {"started_at": start.isoformat(),
                     "answered_at": (start + timedelta(seconds=8)).isoformat(),
                     "ended_at": (start + timedelta(minutes=4)).isoformat(),
                     "outcome": "completed", "notes": "Kit sample call: asked about the lease."}
        elif kind == "sms":
            base |= {"sent_at": start.isoformat(), "body": "Kit sample message."}
        else:
            # A small document, so apps that hold files show their upload in the cassette.
            base |= {"sent_at": start.isoformat(), "page_count": 2,
                     "document": {"content": "JVBERi0xLjQKJSBraXQgc2FtcGxlIGZheAo=",
                                  "content_type": "application/pdf"}}
        return base

    def event(self, kind: str, n: int = 1) -> AnyEvent:
        """The sample event of ``kind`` (yours when given), parsed."""
        given = {"call": self.call, "sms": self.sms, "fax": self.fax}[kind]
        data = dict(given) if given is not None else self.sample(kind)
        if n > 1:  # a second, distinct event for batches: same content, its own id
            data["id"] = f"{data['id']}-{n}"
        return parse_event(data, region=self.region)

    def late_call(self) -> CallEvent:
        """The sample call's revision with late details (recording, transcript)."""
        event = self.event("call")
        assert isinstance(event, CallEvent)
        return event.model_copy(update={
            "recording_url": "https://recordings.example.com/kit-call-1.mp3",
            "transcript": "Kit sample transcript.", "summary": "Asked about the lease."})


@dataclass(frozen=True)
class Row:
    """An author's own case: a hook, its arguments, and the expected outcome.

    ``args`` are the hook's keyword arguments besides ``ctx``; a ``party`` given
    as a string is read as a number, an ``event`` given as a dict is parsed.
    ``expect`` is an exception class the call must raise, a predicate the result
    must satisfy, or a value the result must equal. ``fault`` is the answer the
    sandbox gives when the row is recorded (e.g. ``404`` or ``(429, 30.0)``).
    """

    id: str
    hook: str
    args: Mapping[str, Any]
    expect: Any
    fault: Fault | None = None
    capability: Capability | None = None  # defaults to the one that needs ``hook``
