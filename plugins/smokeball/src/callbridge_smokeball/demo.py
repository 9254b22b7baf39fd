"""`callbridge demo smokeball`: a Smokeball firm's day, fully offline.

It starts the Smokeball sandbox on loopback (the API on 127.0.0.1, the upload's
storage on localhost), seeds a firm (staff, contacts with numbers typed as people
type them, open, pending and closed matters), feeds a day of calls, SMS and faxes
through the host, and prints what was written in Smokeball: a Fee where the contact
has one open matter, a Task otherwise, a Memo or a Task for an SMS, the fax file on
the matter or a skip with its reason. Then it feeds the same events again and shows
that nothing changed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callbridge.engine import Engine
from callbridge.events import AnyEvent, parse_event
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from rich.console import Console
from rich.table import Table

from callbridge_smokeball.sandbox import SandboxState, create_app

FIRM = "stone-legal"
PDF = base64.b64encode(b"%PDF-1.4\n% a one-page fax\n").decode()
SEED: dict[str, Any] = {
    "staff": {"ann": {"firstName": "Ann", "lastName": "Lee", "email": "ann@firm.example"},
              "bob": {"firstName": "Bob", "lastName": "Stone", "email": "bob@firm.example"},
              "cy": {"firstName": "Cy", "lastName": "Adams", "email": "cy@firm.example",
                     "former": True, "enabled": False}},
    "contacts": {
        "dana": {"firstName": "Dana", "lastName": "Whitfield", "phone": ["212", "555-0142"]},
        "sam": {"firstName": "Sam", "lastName": "Ortiz", "cell": ["", "+1 646 555 0111"]},
        "lee": {"firstName": "Lee", "lastName": "Park", "phone2": ["212", "555 0150"]}},
    "matters": {"lease": {"title": "Lease dispute", "clients": ["dana"]},
                "old": {"title": "Old lease", "clients": ["dana"], "status": "Closed"},
                "estate": {"title": "Estate", "clients": ["sam"]},
                "trust": {"title": "Trust", "clients": ["sam"], "status": "Pending"}},
}


def day() -> list[AnyEvent]:
    start = datetime(2026, 3, 2, 14, tzinfo=UTC)

    def at(minutes: int, seconds: int = 0) -> str:
        return (start + timedelta(minutes=minutes, seconds=seconds)).isoformat()

    def call(i: str, m: int, number: str, outcome: str, ext: str = "102",
             **extra: Any) -> dict[str, Any]:
        answered = outcome == "completed"
        return {"kind": "call", "id": i, "tenant": FIRM, "direction": "inbound",
                "external": {"number": number}, "internal": {"extension": ext},
                "started_at": at(m), "answered_at": at(m, 5) if answered else None,
                "ended_at": at(m + 4 if answered else m, 17 if answered else 25),
                "outcome": outcome, **extra}

    raw = [
        call("call-01", 0, "(212) 555-0142", "completed", notes="Hearing moved to Friday."),
        call("call-02", 20, "212 555 0142", "missed"),
        call("call-03", 40, "+1 646 555 0111", "completed"),
        call("call-04", 60, "212.555.0150", "completed", ext="199"),
        call("call-05", 80, "+1 718 555 0101", "missed"),
        {"kind": "sms", "id": "sms-01", "tenant": FIRM, "direction": "inbound",
         "external": {"number": "2125550142"}, "sent_at": at(100), "body": "Running late."},
        {"kind": "sms", "id": "sms-02", "tenant": FIRM, "direction": "outbound",
         "external": {"number": "+16465550111"}, "internal": {"extension": "101"},
         "sent_at": at(110), "body": "Papers are ready."},
        {"kind": "fax", "id": "fax-01", "tenant": FIRM, "direction": "inbound",
         "external": {"number": "212 555 0142"}, "sent_at": at(120), "page_count": 1,
         "document": {"content": PDF, "filename": "Lease addendum.pdf"}},
        {"kind": "fax", "id": "fax-02", "tenant": FIRM, "direction": "inbound",
         "external": {"number": "+1 646 555 0111"}, "sent_at": at(130), "page_count": 2,
         "document": {"content": PDF}},
        {"kind": "fax", "id": "fax-03", "tenant": FIRM, "direction": "inbound",
         "external": {"number": "+1 718 555 0105"}, "sent_at": at(140), "page_count": 3,
         "document": {"content": PDF}},
    ]
    return [parse_event(e) for e in raw]


def config(folder: Path, url: str) -> Path:
    path = folder / "callbridge.toml"
    path.write_text(textwrap.dedent(f"""
    [ledger]
    url = "sqlite:///{folder / 'demo.db'}"

    [tenants.{FIRM}]
    time_zone = "America/New_York"
    default_region = "US"
    own_numbers = ["+1 212 555 0100"]
    extensions = {{ "101" = "ann@firm.example", "102" = "bob@firm.example" }}

    [tenants.{FIRM}.apps.smokeball]
    credentials_env = "STONE_SMOKEBALL"
    contact_creation = ["missed"]

    [tenants.{FIRM}.apps.smokeball.options]
    api_base_url = "{url}"
    auth_base_url = "{url}"
    """))
    return path


def written(st: SandboxState, kind: str, record_id: str) -> str:
    """What a record says in Smokeball, in a few words."""
    own = record_id.split("/")[-1]
    row = st.data.get({"fee": "fees", "task": "tasks", "memo": "memos",
                       "document": "files", "contact": "contacts"}[kind], {}).get(own, {})
    if kind == "fee":
        return f"Fee {row.get('duration')} min ({row.get('activityCode')})"
    if kind == "task":
        staff = st.data["staff"].get((row.get("assignees") or [{}])[0].get("id", ""), {})
        return f"Task for {staff.get('firstName', '?')} {staff.get('lastName', '')}".rstrip()
    if kind == "memo":
        return "Memo"
    if kind == "document":
        return f"File {row.get('name')}" + (" (uploaded)" if row.get("isUploaded") else "")
    return "new contact"


def counts(st: SandboxState) -> tuple[int, ...]:
    return tuple(len(st.data[k]) for k in ("contacts", "fees", "tasks", "memos", "files"))


async def settle(engine: Engine) -> None:
    for _ in range(60):
        await engine.run_until_idle()
        waiting = engine.ledger.history(status="waiting", limit=10**6)
        if not waiting:
            return
        await asyncio.sleep(0.5)


async def run(console: Console) -> int:
    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    os.environ["CALLBRIDGE_PLUGINS"] = "smokeball"
    st = SandboxState()
    st.seed(SEED)
    for name, value in (("CLIENT_ID", st.client_id), ("CLIENT_SECRET", st.client_secret),
                        ("API_KEY", st.api_key)):
        os.environ[f"STONE_SMOKEBALL_{name}"] = value
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_app(st)) as url:
        st.host, st.storage_host = url, url.replace("127.0.0.1", "localhost")
        engine: Engine = load(config(Path(tmp), url), strict=True).engine()
        engine.ledger.token_set(FIRM, "smokeball", st.issue_token())
        console.print(f"[bold]callbridge demo smokeball[/bold]: the firm [cyan]{FIRM}[/cyan] on "
                      "the Smokeball sandbox (loopback); contacts are created for missed calls.")
        try:
            await engine.sync_indexes()
            events = day()
            for event in events:
                await engine.ingest(event)
            await settle(engine)
            history = {v.source_id: v for v in engine.ledger.history(limit=10**6)}
            table = Table(title="What Smokeball holds, and why not")
            for col in ("event", "outcome", "written"):
                table.add_column(col)
            tally: Counter[str] = Counter()
            for event in events:
                view = history[event.id]
                tally[view.status] += 1
                what = ", ".join(written(st, r.kind, r.id) for r in view.records
                                 if r.step != "uploaded")
                outcome = view.status + (f": {view.reason}" if view.reason else "")
                table.add_row(event.id, outcome, what)
            console.print(table)
            console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
            before = counts(st)
            for event in events:
                await engine.ingest(event)
            await settle(engine)
            same = counts(st) == before
            console.print("the same events fed again: " + ("[green]nothing changed[/green]"
                                                           if same else "[red]changes[/red]"))
            return 0 if same else 1
        finally:
            await engine.aclose()


def main() -> int:
    return asyncio.run(run(Console()))
