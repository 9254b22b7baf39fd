"""The three kinds of event, validated at the edge.

``parse_event`` is the one way in: it reads a dict or JSON text, reads every
phone number to E.164 with the tenant's default region, and raises one
:class:`~callbridge.errors.EventValidationError` naming every bad field.
Messages never echo the input (pydantic's own errors keep it in ``errors()``).
"""

from __future__ import annotations

import hashlib
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
from callbridge.phones import UnreadableNumber, caller_name, to_e164


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class PartyKind(StrEnum):
    NUMBER = "number"
    SHORT_CODE = "short_code"
    WITHHELD = "withheld"


class CallOutcome(StrEnum):
    COMPLETED = "completed"
    MISSED = "missed"
    VOICEMAIL = "voicemail"
    BUSY = "busy"
    FAILED = "failed"


class FaxOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


_WITHHELD_TEXT = {"", "anonymous", "withheld", "private", "restricted", "unknown", "blocked"}
_SHORT_CODE = re.compile(r"^\d{3,8}$")

_STRICT = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ExternalParty(BaseModel):
    """The person or number outside the firm.

    ``number`` is read to E.164 with the default region from the validation
    context; a bare 3–8 digit string is a short code; no number (or text such as
    "anonymous") is a withheld caller. ``name`` is the caller-ID name as sent;
    :attr:`display_name` is None when that text names nobody.
    """

    model_config = _STRICT

    kind: PartyKind = PartyKind.NUMBER
    number: str | None = None
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _classify(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        number = data.get("number")
        kind = data.get("kind")
        if kind is None:
            if number is None or (isinstance(number, str) and number.strip().lower() in _WITHHELD_TEXT):
                data["kind"] = PartyKind.WITHHELD
            elif isinstance(number, str) and _SHORT_CODE.match(number.strip()):
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
        return caller_name(self.name, self.number)


class InternalUser(BaseModel):
    """The firm's staff member on the event: email and/or extension."""

    model_config = _STRICT

    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    extension: str | None = Field(default=None, max_length=20, pattern=r"^[0-9*#]{1,20}$")
    number: str | None = None  # the firm number used, when the phone system gives it

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


class _EventBase(BaseModel):
    model_config = _STRICT

    id: _Id
    tenant: _Name
    source: _Name = "default"
    direction: Direction
    external: ExternalParty
    internal: InternalUser = InternalUser()

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
        raise NotImplementedError


class CallEvent(_EventBase):
    kind: Literal["call"] = "call"
    started_at: AwareDatetime
    answered_at: AwareDatetime | None = None
    ended_at: AwareDatetime
    outcome: CallOutcome
    notes: str | None = Field(default=None, max_length=20000)
    recording_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    transcript: str | None = Field(default=None, max_length=200000)
    summary: str | None = Field(default=None, max_length=20000)

    @model_validator(mode="after")
    def _times_in_order(self) -> CallEvent:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        if self.answered_at is not None and not (self.started_at <= self.answered_at <= self.ended_at):
            raise ValueError("answered_at is outside started_at..ended_at")
        return self

    @property
    def occurred_at(self) -> datetime:
        return self.started_at

    @property
    def duration_seconds(self) -> int:
        return int((self.ended_at - self.started_at).total_seconds())

    @property
    def talk_seconds(self) -> int:
        """Answered to ended, else the whole duration (SPEC §3 Clio time entry)."""
        start = self.answered_at or self.started_at
        return int((self.ended_at - start).total_seconds())


class SmsEvent(_EventBase):
    kind: Literal["sms"] = "sms"
    sent_at: AwareDatetime
    body: str = Field(max_length=20000)

    @property
    def occurred_at(self) -> datetime:
        return self.sent_at


class FaxDocument(BaseModel):
    model_config = _STRICT

    content_type: Literal["application/pdf", "image/tiff"] = "application/pdf"
    content: Base64Bytes | None = None
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    filename: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> FaxDocument:
        if (self.content is None) == (self.url is None):
            raise ValueError("give exactly one of content (base64) or url")
        return self


class FaxEvent(_EventBase):
    kind: Literal["fax"] = "fax"
    sent_at: AwareDatetime
    outcome: FaxOutcome = FaxOutcome.DELIVERED
    page_count: int = Field(ge=0, le=10000)
    document: FaxDocument | None = None

    @property
    def occurred_at(self) -> datetime:
        return self.sent_at


Event = Annotated[CallEvent | SmsEvent | FaxEvent, Field(discriminator="kind")]
_EVENT: TypeAdapter[CallEvent | SmsEvent | FaxEvent] = TypeAdapter(Event)

#: Fields whose arrival on a known event makes a revision ("late details").
LATE_DETAIL_FIELDS = ("recording_url", "transcript", "summary", "notes")


def event_marker(tenant: str, source: str, kind: str, event_id: str) -> str:
    digest = hashlib.sha256("\x1f".join((tenant, source, kind, event_id)).encode()).hexdigest()
    return f"cb1-{digest[:32]}"


def problems_of(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Locations and messages of a pydantic error, without the input values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "(event)"
        msg = err["msg"]
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc, msg = prefix + "kind", "must be one of 'call', 'sms', 'fax'"
            out.append(FieldProblem(loc, msg))
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(FieldProblem(prefix + loc, msg))
    return out


def _is_union_tag(part: object) -> bool:
    return part in ("call", "sms", "fax") or (isinstance(part, str) and part.startswith("function-"))


def parse_event(
    payload: Mapping[str, Any] | str | bytes,
    *,
    region: str | None = None,
    region_for: Callable[[str], str] | None = None,
) -> CallEvent | SmsEvent | FaxEvent:
    """Validate one event.

    ``region`` is the default phone region; or ``region_for(tenant)`` finds it
    from the payload's tenant. Raises :class:`EventValidationError`.
    """
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventValidationError(
                [FieldProblem("(json)", f"not valid JSON at column {exc.colno}: {exc.msg}")]) from None
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


def dump_event(event: CallEvent | SmsEvent | FaxEvent) -> str:
    """JSON text of an event, as :func:`parse_event` reads it back."""
    return event.model_dump_json(exclude_none=True)


AnyEvent = CallEvent | SmsEvent | FaxEvent
