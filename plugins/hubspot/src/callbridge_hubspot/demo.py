"""The HubSpot demo behind `callbridge demo hubspot`: fully offline.

A HubSpot sandbox on loopback (seeded with owners and contacts whose numbers are
stored as people type them), one firm whose HubSpot app creates contacts for missed
calls, a day of calls, SMS and a fax, and a table of what was written in the portal.
Then the same events again: nothing changes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from callbridge.events import parse_event
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.phones import mask_number
from callbridge.runtime import load
from rich.console import Console
from rich.table import Table

from callbridge_hubspot.portal import Portal
from callbridge_hubspot.sandbox import create_app

TOKEN = "pat-na1-demo-0000"
PDF = base64.b64encode(b"%PDF-1.4\n% a one-page fax\n").decode()
STAFF = {"extension": "101", "number": "+12125550100"}


def events() -> list[dict[str, Any]]:
    def call(i: int, number: str, direction: str, outcome: str, **more: Any) -> dict[str, Any]:
        start = f"2026-03-02T{9 + i:02d}:00:00+00:00"
        data = {"kind": "call", "id": f"demo-call-{i}", "tenant": "acme", "direction": direction,
                "external": {"number": number}, "internal": STAFF, "started_at": start,
                "ended_at": f"2026-03-02T{9 + i:02d}:04:30+00:00", "outcome": outcome, **more}
        if outcome == "completed":
            data["answered_at"] = f"2026-03-02T{9 + i:02d}:00:05+00:00"
        return data

    return [
        call(1, "(212) 555-0142", "inbound", "completed", notes="Asked about the renewal."),
        call(2, "+1 646 555 0112", "outbound", "completed", internal={"extension": "102"}),
        call(3, "+1 718 555 0130", "inbound", "missed"),
        call(4, "+1 718 555 0131", "inbound", "completed"),
        call(5, "withheld", "inbound", "voicemail"),
        {"kind": "sms", "id": "demo-sms-1", "tenant": "acme", "direction": "inbound",
         "external": {"number": "212-555-0142"}, "internal": STAFF,
         "sent_at": "2026-03-02T15:00:00+00:00", "body": "Running ten minutes late."},
        {"kind": "fax", "id": "demo-fax-1", "tenant": "acme", "direction": "inbound",
         "external": {"number": "+1 212 555 0142"}, "internal": STAFF,
         "sent_at": "2026-03-02T16:00:00+00:00", "page_count": 1,
         "document": {"content": PDF, "content_type": "application/pdf"}},
    ]


def portal() -> Portal:
    p = Portal(tokens={TOKEN})
    p.add_owner("Ann", "Lee", "ann@acme.example")
    p.add_owner("Bob", "Stone", "bob@acme.example")
    p.add_contact("Dana", "Whitfield", "(212) 555-0142", email="dana@example.com")
    p.add_contact("Sam", "Ortiz", "+1 646 555 0111", "646.555.0112")
    return p


def _records(p: Portal, view: Any) -> str:
    out = []
    for record in view.records:
        object_type = {"call": "calls", "communication": "communications", "note": "notes"}.get(
            record.kind)
        linked = [f"contact {to}" for _, to, _ in p.associated(object_type, record.id)] \
            if object_type else []
        owner = p.objects.get(object_type or "", {}).get(record.id, {}).get(
            "properties", {}).get("hubspot_owner_id")
        out.append(" ".join([f"{record.kind} {record.id}", *([f"→ {', '.join(linked)}"] if linked
                                                             else []),
                             *([f"(owner {owner})"] if owner else [])]))
    return "; ".join(out)


async def run(console: Console) -> int:
    p = portal()
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(p)) as url:
        os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
        os.environ["DEMO_HUBSPOT_TOKEN"] = TOKEN
        os.environ["CALLBRIDGE_PLUGINS"] = "hubspot"  # this demo needs no other plugin
        config = Path(tmp) / "callbridge.toml"
        config.write_text(textwrap.dedent(f"""
            [ledger]
            url = "sqlite:///{Path(tmp) / 'ledger.db'}"
            [tenants.acme]
            default_region = "US"
            own_numbers = ["+1 212 555 0100"]
            extensions = {{ "101" = "ann@acme.example", "102" = "bob@acme.example" }}
            [tenants.acme.apps.hubspot]
            credentials_env = "DEMO_HUBSPOT"
            contact_creation = ["missed"]
            [tenants.acme.apps.hubspot.options]
            api_base_url = "{url}"
            portal_time_zone = "America/New_York"
            search_settle_seconds = 0
            """))
        engine = load(config, strict=True).engine()
        try:
            parsed = [parse_event(e, region="US") for e in events()]
            stored = [await engine.ingest(e) for e in parsed]
            await engine.run_until_idle()
            table = Table(title="HubSpot portal (sandbox): what was logged")
            for column in ("event", "party", "outcome", "in HubSpot"):
                table.add_column(column)
            for event, s in zip(parsed, stored, strict=True):
                view = engine.ledger.find_delivery("acme", "hubspot", s.event_pk)
                assert view is not None
                party = mask_number(event.external.number) if event.external.number else "withheld"
                table.add_row(f"{event.kind} {event.id}", party,
                              view.status + (f" ({view.reason})" if view.reason else ""),
                              _records(p, view))
            console.print(table)
            before = {t: len(rows) for t, rows in p.objects.items()}
            for e in parsed:
                await engine.ingest(e)
            await engine.run_until_idle()
            after = {t: len(rows) for t, rows in p.objects.items()}
            console.print(f"fed again: {'nothing changed' if before == after else 'CHANGED'} "
                          f"({after['calls']} calls, {after['communications']} SMS, "
                          f"{after['notes']} notes, {after['contacts']} contacts); "
                          f"{len(p.requests)} HubSpot requests in all")
            return 0 if before == after else 1
        finally:
            await engine.aclose()


def main() -> int:
    return asyncio.run(run(Console()))
