"""Sample events for the Clio plugin's tests, and a helper to read back one record."""

from __future__ import annotations

from typing import Any

from callbridge.events import parse_event


def call(**over: Any) -> Any:
    """A completed inbound call from Dana Whitfield's number, answered after 12 s."""
    data: dict[str, Any] = {
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "2125550142", "name": "DANA WHITFIELD"},
        "internal": {"extension": "101"},
        "started_at": "2026-03-02T15:00:00Z", "answered_at": "2026-03-02T15:00:12Z",
        "ended_at": "2026-03-02T15:06:12Z", "outcome": "completed", "notes": "Hearing moved."}
    data.update(over)
    return parse_event(data)


def sms(**over: Any) -> Any:
    data: dict[str, Any] = {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "2125550142"}, "sent_at": "2026-03-02T15:00:00Z",
                            "body": "Running late"}
    data.update(over)
    return parse_event(data)


def fax(**over: Any) -> Any:
    data: dict[str, Any] = {"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "2125550142"}, "sent_at": "2026-03-02T15:00:00Z",
                            "page_count": 2, "document": {"content": "JVBERi0xLjQKJSBmYXg="}}
    data.update(over)
    return parse_event(data)


def only(records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The one record of a sandbox table (fails when there are more or none)."""
    assert len(records) == 1, records
    return next(iter(records.values()))


def made_folders(state: Any) -> dict[int, dict[str, Any]]:
    """The folders the plugin made (not the account's, a matter's or a contact's own)."""
    own = {m["folder"]["id"] for m in state.matters.values()}
    own |= {c["folder"]["id"] for c in state.contacts.values()}
    return {fid: f for fid, f in state.folders.items() if not f["root"] and fid not in own}
