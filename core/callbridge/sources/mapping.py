"""What the vendor adapters share: reading a vendor's fields into an event, and saying
which of the vendor's fields was wrong when the event does not validate.

An adapter builds the event as callbridge's JSON format has it and keeps, for each of
the event's fields, the vendor's name for the field it came from (``From``,
``data.raw_digits``...). :func:`validated` then runs :func:`callbridge.events.parse_event`
and turns its problems into a :class:`~callbridge.sources.base.SourceRefused` naming the
vendor's fields, so a sender reads an error in its own terms. Problems never carry a
value received (a phone number, a name).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callbridge.errors import EventValidationError
from callbridge.events import AnyEvent, parse_event
from callbridge.settings import TenantSettings
from callbridge.sources.base import SourceRefused

__all__ = ["Fields", "from_unix", "text", "validated"]


class Fields:
    """The event being built, with the vendor's name of each field's origin."""

    def __init__(self) -> None:
        self.event: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def put(self, path: str, value: Any, origin: str) -> None:
        """Set the event's field ``path`` (dotted: ``external.number``) from ``origin``."""
        if value is None:
            return
        *parents, name = path.split(".")
        target = self.event
        for part in parents:
            target = target.setdefault(part, {})
        target[name] = value
        self.origin[path] = origin

    def vendor_name(self, location: str) -> str:
        """The vendor's field for an event field's problem (its nearest known origin)."""
        parts = location.split(".")
        while parts:
            name = self.origin.get(".".join(parts))
            if name is not None:
                return name
            parts.pop()
        return location


def validated(fields: Fields, tenant_settings: TenantSettings) -> AnyEvent:
    """The event, validated as every event is; 422 naming the vendor's field otherwise."""
    try:
        return parse_event(fields.event, region=tenant_settings.default_region)
    except EventValidationError as exc:
        problems = [(fields.vendor_name(p.location), p.problem) for p in exc.problems]
        raise SourceRefused(422, *problems[0], problems=problems) from None


def from_unix(value: Any, origin: str) -> datetime | None:
    """A Unix time in seconds (an integer, as JSON gives it) as an aware UTC time."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**35:
        raise SourceRefused(422, origin, "must be a Unix time in seconds")
    return datetime.fromtimestamp(value, UTC)


def text(payload: Mapping[str, Any], name: str, origin: str, *,
         required: bool = False) -> str | None:
    """``payload[name]`` as text: None when absent (422 when ``required``), 422 when not text."""
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise SourceRefused(422, origin, "is required")
        return None
    if not isinstance(value, str):
        raise SourceRefused(422, origin, "must be text")
    return value
