"""The three kinds of event, validated at the edge.

``parse_event`` is the one way in: it reads a dict or JSON text, reads every
phone number to E.164 with the tenant's default region, and raises one
:class:`~callbridge.errors.EventValidationError` naming every bad field.
Messages never echo the input: not a value, and not the name of an unknown key
(reported as ``(unknown field)``).

Events may arrive as they happen: a call ringing, then in progress, then ended;
an SMS or fax before its delivery status. Each copy is a *revision* of one event
(same tenant, source, kind and id); :func:`merge_revisions` says which copy wins.
Only a final event (:attr:`CallEvent.is_final` and friends) logs automatically.

The JSON format is documented in docs/events.md; :func:`json_schema` builds the
JSON Schema (``callbridge schema`` prints it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from callbridge.errors import EventValidationError, FieldProblem
from callbridge.eventtext import (
    DOCUMENT_MAX_BYTES,
    SEQUENCE_MAX,
    Email,
    Line,
    LongText,
    Text,
    Url,
    base64_limit,
    event_marker,
    loads,
    problems_of,
)
from callbridge.phones import MAX_LENGTH as NUMBER_MAX
from callbridge.phones import UnreadableNumber, caller_name, to_e164
from callbridge.revisions import LATE_DETAIL_FIELDS, merge_revisions

__all__ = [
    "DOCUMENT_MAX_BYTES", "LATE_DETAIL_FIELDS", "AnyEvent", "CallEvent", "CallOutcome",
    "CallState", "DeliveryStatus", "Direction", "Event", "ExternalParty", "FaxDocument",
    "FaxEvent", "FaxOutcome", "InternalUser", "PartyKind", "SmsEvent", "dump_event",
    "event_marker", "json_schema", "merge_revisions", "newest", "parse_event", "problems_of",
]


class Direction(StrEnum):
    """Which way the event went, seen from the firm."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class PartyKind(StrEnum):
    """What the outside party's number is: a phone number, a short code, or withheld."""

    NUMBER = "number"
    SHORT_CODE = "short_code"
    WITHHELD = "withheld"


class CallOutcome(StrEnum):
    """How an ended call ended."""

    COMPLETED = "completed"
    MISSED = "missed"
    VOICEMAIL = "voicemail"
    BUSY = "busy"
    FAILED = "failed"


class CallState(StrEnum):
    """Where a call is: ``ringing``, ``in_progress`` (answered), or ``ended``."""

    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"


class DeliveryStatus(StrEnum):
    """An SMS's or fax's delivery status, when the source reports one."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class FaxOutcome(StrEnum):
    """Whether a fax's pages arrived."""

    DELIVERED = "delivered"
    FAILED = "failed"


_WITHHELD_TEXT = {"", "anonymous", "withheld", "private", "restricted", "unknown", "blocked"}
_SHORT_CODE = re.compile(r"^\d{3,8}$")

# Each field's description is given as Field(description=...), not as a docstring under it:
# pydantic reads such docstrings from the class's source at import, which every process
# importing the events (each plugin, each command) would pay for.
_STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
_Number = Annotated[str, Field(max_length=NUMBER_MAX)]


class ExternalParty(BaseModel):
    """The person or number outside the firm.

    ``number`` is read to E.164 with the default region from the validation
    context; a bare 3–8 digit string is a short code; no number (or text such as
    "anonymous") is a withheld caller. ``name`` is the caller-ID name as sent;
    :attr:`display_name` is None when that text names nobody.
    """

    model_config = _STRICT

    kind: PartyKind = Field(
        default=PartyKind.NUMBER,
        description="``number``, ``short_code`` or ``withheld``; worked out from ``number`` when "
                    "omitted.")
    number: _Number | None = Field(
        default=None,
        description="The number as the phone system sent it, in any common format; stored as "
                    "E.164.")
    email: Email | None = Field(
        default=None, description="The party's email address, when the source knows it.")
    name: Line | None = Field(
        default=None,
        description='The caller-ID name as sent (generic text such as "WIRELESS CALLER" names '
                    'nobody).')

    @model_validator(mode="before")
    @classmethod
    def _classify(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        number = data.get("number")
        kind = data.get("kind")
        if kind is None:
            if number is None or (isinstance(number, str) and len(number) <= NUMBER_MAX
                                  and number.strip().lower() in _WITHHELD_TEXT):
                data["kind"] = PartyKind.WITHHELD
            elif isinstance(number, str) and len(number) <= NUMBER_MAX and _SHORT_CODE.match(
                    number.strip()):
                data["kind"] = PartyKind.SHORT_CODE
            else:
                data["kind"] = PartyKind.NUMBER
        if data["kind"] == PartyKind.WITHHELD:
            data["number"] = None
        return data

    @field_validator("number")
    @classmethod
    def _read_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        kind = info.data.get("kind")
        if kind == PartyKind.SHORT_CODE:
            if not _SHORT_CODE.match(value.strip()):
                raise ValueError("a short code is 3 to 8 digits")
            return value.strip()
        region = (info.context or {}).get("region", "US")
        try:
            return to_e164(value, region)
        except UnreadableNumber as exc:
            raise ValueError(f"cannot be read as a phone number ({exc})") from None

    @model_validator(mode="after")
    def _number_required(self) -> ExternalParty:
        if self.kind != PartyKind.WITHHELD and not self.number:
            raise ValueError("number is required unless the party is withheld")
        return self

    @property
    def e164(self) -> str | None:
        """The E.164 number, or None for a withheld caller or a short code."""
        return self.number if self.kind == PartyKind.NUMBER else None

    @property
    def matchable(self) -> bool:
        """Whether this party may be matched to a contact or create one."""
        return self.kind == PartyKind.NUMBER

    @property
    def display_name(self) -> str | None:
        """The caller-ID name if it names someone, else None."""
        return caller_name(self.name, self.number)


class InternalUser(BaseModel):
    """The firm's staff member on the event: email and/or extension."""

    model_config = _STRICT

    email: Email | None = Field(
        default=None, description="The staff member's email address (matched to the app's users).")
    extension: str | None = Field(
        default=None, max_length=20, pattern=r"^[0-9*#]{1,20}$",
        description="The staff member's extension; the tenant's ``extensions`` setting maps it to "
                    "an email.")
    number: _Number | None = Field(
        default=None,
        description="The firm's number used, when the phone system gives it; stored as E.164.")

    @field_validator("number")
    @classmethod
    def _read_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            return to_e164(value, (info.context or {}).get("region", "US"))
        except UnreadableNumber as exc:
            raise ValueError(f"cannot be read as a phone number ({exc})") from None


_Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]
_Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
#: The pattern a tenant's key follows (events and settings alike).
TENANT_PATTERN = r"^[A-Za-z0-9._-]+$"
_Sequence = Annotated[int, Field(ge=0, le=SEQUENCE_MAX)]


class _EventBase(BaseModel):
    model_config = _STRICT

    id: _Id = Field(
        description="The source's id of the event; the same id sent again is the same event (a "
                    "revision).")
    tenant: _Name = Field(description="The firm's key in the settings file.")
    source: _Name = Field(
        default="default",
        description="Which phone system sent it, when a firm has several (ids are unique per "
                    "source).")
    direction: Direction = Field(description="``inbound`` or ``outbound``, seen from the firm.")
    external: ExternalParty = Field(description="The person or number outside the firm.")
    internal: InternalUser = Field(
        default=InternalUser(), description="The firm's staff member on the event.")
    sequence: _Sequence | None = Field(
        default=None,
        description="The source's order of this copy among the event's revisions (higher is "
                    "later).")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The event's identity: (tenant, source, kind, id)."""
        kind = str(type(self).model_fields["kind"].default)
        return (self.tenant, self.source, kind, self.id)

    @property
    def marker(self) -> str:
        """A digest of the identity, written into apps so a retry can find its own record."""
        return event_marker(*self.key)

    @property
    def occurred_at(self) -> datetime:
        """When the event began (a call's start, an SMS's or fax's sending)."""
        raise NotImplementedError

    @property
    def is_final(self) -> bool:
        """Whether the event has reached its last state; only final events log automatically."""
        raise NotImplementedError


class CallEvent(_EventBase):
    """A phone call, as it happens or once it has ended.

    A call may be sent ringing, then in progress, then ended (in any order: the
    furthest state wins). ``ended_at`` and ``outcome`` are required once the call
    has ended, and refused before.
    """

    kind: Literal["call"] = Field(default="call", description="Always ``call``.")
    state: CallState = Field(
        default=CallState.ENDED,
        description="``ringing``, ``in_progress`` or ``ended`` (the default).")
    started_at: AwareDatetime = Field(
        description="When the call began ringing, with its UTC offset.")
    answered_at: AwareDatetime | None = Field(
        default=None, description="When it was answered, if it was.")
    ended_at: AwareDatetime | None = Field(
        default=None, description="When it ended; required once ``state`` is ``ended``.")
    outcome: CallOutcome | None = Field(
        default=None, description="How it ended; required once ``state`` is ``ended``.")
    notes: Text | None = Field(
        default=None, description="Notes taken about the call (may arrive later, in a revision).")
    recording_url: Url | None = Field(
        default=None, description="A link to the call's recording (may arrive later).")
    transcript: LongText | None = Field(
        default=None, description="The call's transcript (may arrive later).")
    summary: Text | None = Field(
        default=None, description="A summary of the call (may arrive later).")

    @model_validator(mode="after")
    def _times_in_order(self) -> CallEvent:
        if self.state == CallState.ENDED:
            missing = [n for n in ("ended_at", "outcome") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{missing[0]} is required once the call has ended")
        else:
            for name in ("ended_at", "outcome"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is given but state is not 'ended'")
        end = self.ended_at
        if end is not None and end < self.started_at:
            raise ValueError("ended_at is before started_at")
        if self.answered_at is not None and not (
                self.started_at <= self.answered_at and (end is None or self.answered_at <= end)):
            raise ValueError("answered_at is outside started_at..ended_at")
        return self

    @property
    def occurred_at(self) -> datetime:
        return self.started_at

    @property
    def is_final(self) -> bool:
        return self.state == CallState.ENDED

    @property
    def duration_seconds(self) -> int:
        """Started to ended (0 until the call has ended)."""
        if self.ended_at is None:
            return 0
        return int((self.ended_at - self.started_at).total_seconds())

    @property
    def talk_seconds(self) -> int:
        """Answered to ended, else the whole duration (SPEC §3 Clio time entry)."""
        if self.ended_at is None:
            return 0
        start = self.answered_at or self.started_at
        return int((self.ended_at - start).total_seconds())


class SmsEvent(_EventBase):
    """A text message, sent or received. An outgoing one may arrive before its delivery status."""

    kind: Literal["sms"] = Field(default="sms", description="Always ``sms``.")
    sent_at: AwareDatetime = Field(description="When it was sent, with its UTC offset.")
    body: Text = Field(description="The message's text.")
    status: DeliveryStatus | None = Field(
        default=None,
        description="The delivery status, when the source reports one; ``pending`` is not final.")

    @property
    def occurred_at(self) -> datetime:
        return self.sent_at

    @property
    def is_final(self) -> bool:
        return self.status != DeliveryStatus.PENDING


class FaxDocument(BaseModel):
    """A fax's pages: inline as base64, or a link the host fetches under its address policy."""

    model_config = _STRICT

    content_type: Literal["application/pdf", "image/tiff"] = Field(
        default="application/pdf", description="The document's type.")
    content: Annotated[Base64Bytes, Field(json_schema_extra={
        "maxLength": base64_limit(DOCUMENT_MAX_BYTES)})] | None = Field(
        default=None, description="The document itself, base64; at most 10 MiB once decoded.")
    url: Url | None = Field(
        default=None,
        description="Where the host fetches the document (https; never a private address).")
    filename: Line | None = Field(
        default=None, description="The file name to give the document in the app.")

    @field_validator("content", mode="before")
    @classmethod
    def _content_size(cls, value: Any, info: ValidationInfo) -> Any:
        cap = int((info.context or {}).get("document_max_bytes", DOCUMENT_MAX_BYTES))
        if isinstance(value, str | bytes) and len(value) > base64_limit(cap):
            raise ValueError(f"is larger than {cap // (1024 * 1024)} MiB")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FaxDocument:
        if (self.content is None) == (self.url is None):
            raise ValueError("give exactly one of content (base64) or url")
        return self


class FaxEvent(_EventBase):
    """A fax, sent or received, with its pages inline or by link."""

    kind: Literal["fax"] = Field(default="fax", description="Always ``fax``.")
    sent_at: AwareDatetime = Field(description="When it was sent, with its UTC offset.")
    outcome: FaxOutcome = Field(
        default=FaxOutcome.DELIVERED, description="Whether the pages arrived.")
    page_count: int = Field(ge=0, le=10000, description="How many pages.")
    document: FaxDocument | None = Field(
        default=None, description="The pages, when the source sends them.")
    status: DeliveryStatus | None = Field(
        default=None,
        description="The delivery status, when the source reports one; ``pending`` is not final.")

    @property
    def occurred_at(self) -> datetime:
        return self.sent_at

    @property
    def is_final(self) -> bool:
        return self.status != DeliveryStatus.PENDING


AnyEvent = CallEvent | SmsEvent | FaxEvent
Event = Annotated[AnyEvent, Field(discriminator="kind")]
_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(Event)

def newest(stored: AnyEvent, given: AnyEvent) -> AnyEvent:
    """:func:`merge_revisions` for two events: the event to keep."""
    merged = merge_revisions(json.loads(dump_event(stored)), json.loads(dump_event(given)))
    return stored if merged is None else parse_event(merged)


def parse_event(
    payload: Mapping[str, Any] | str | bytes,
    *,
    region: str | None = None,
    region_for: Callable[[str], str] | None = None,
) -> AnyEvent:
    """Validate one event.

    ``region`` is the default phone region; or ``region_for(tenant)`` finds it
    from the payload's tenant. Raises :class:`EventValidationError`, whatever the
    input (text that is not UTF-8, JSON nested too deeply, huge numbers).
    """
    if isinstance(payload, str | bytes):
        payload = loads(payload)
    if not isinstance(payload, Mapping):
        raise EventValidationError([FieldProblem("(event)", "must be a JSON object")])
    if region is None:
        tenant = payload.get("tenant")
        region = "US"
        if region_for is not None and isinstance(tenant, str):
            try:
                region = region_for(tenant)
            except KeyError:
                raise EventValidationError(
                    [FieldProblem("tenant", "is not a configured tenant")]) from None
    try:
        return _EVENT.validate_python(payload, context={"region": region})
    except ValidationError as exc:
        raise EventValidationError(problems_of(exc)) from None
    except RecursionError:
        raise EventValidationError([FieldProblem("(event)", "nested too deeply")]) from None


def dump_event(event: AnyEvent) -> str:
    """JSON text of an event, as :func:`parse_event` reads it back."""
    return event.model_dump_json(exclude_none=True)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one event (a line of ``callbridge ingest``), built from the models."""
    schema = _EVENT.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "callbridge event"
    schema["description"] = (
        "One call, SMS or fax, as a line of `callbridge ingest` or a webhook body. "
        "Text fields refuse NUL and other control characters (tabs and line breaks are "
        "allowed in multi-line text); unknown keys are refused.")
    return schema
