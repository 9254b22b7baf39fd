"""Sample events for the Smokeball tests: fictional numbers and names only."""

from __future__ import annotations

from typing import Any

from callbridge.events import CallEvent, FaxEvent, SmsEvent, parse_event

STAFF = {"email": "bob@firm.example", "extension": "102", "number": "+12125550100"}
PDF = "JVBERi0xLjQKJSBTbW9rZWJhbGwgc2FtcGxlIGZheAo="  # a tiny fictional PDF


def call(number: str = "+12125550142", *, id: str = "sb-call-1", **over: Any) -> CallEvent:
    data: dict[str, Any] = {
        "kind": "call", "id": id, "tenant": "acme", "direction": "inbound",
        "external": {"number": number}, "internal": STAFF,
        "started_at": "2026-03-02T15:00:00+00:00", "answered_at": "2026-03-02T15:00:06+00:00",
        "ended_at": "2026-03-02T15:04:18+00:00", "outcome": "completed",
        "notes": "Asked when the lease hearing is."} | over
    event = parse_event(data, region="US")
    assert isinstance(event, CallEvent)
    return event


def missed(number: str = "+12125550142", *, id: str = "sb-call-missed", **over: Any) -> CallEvent:
    return call(number, id=id, answered_at=None, outcome="missed", notes=None, **over)


def sms(number: str = "+12125550142", *, id: str = "sb-sms-1", **over: Any) -> SmsEvent:
    data: dict[str, Any] = {
        "kind": "sms", "id": id, "tenant": "acme", "direction": "outbound",
        "external": {"number": number}, "internal": STAFF,
        "sent_at": "2026-03-02T16:30:00+00:00", "body": "Your hearing moved to Friday."} | over
    event = parse_event(data, region="US")
    assert isinstance(event, SmsEvent)
    return event


def fax(number: str = "+12125550142", *, id: str = "sb-fax-1", **over: Any) -> FaxEvent:
    data: dict[str, Any] = {
        "kind": "fax", "id": id, "tenant": "acme", "direction": "inbound",
        "external": {"number": number}, "internal": STAFF,
        "sent_at": "2026-03-02T17:00:00+00:00", "page_count": 2,
        "document": {"content": PDF, "content_type": "application/pdf",
                     "filename": "Lease addendum.pdf"}} | over
    event = parse_event(data, region="US")
    assert isinstance(event, FaxEvent)
    return event
