"""The demo behind `callbridge demo` (and `nox -s demo`): fully offline.

It starts a Clio sandbox on loopback for each of three firms, seeds each with
users, contacts (numbers stored in mixed formats) and matters, feeds the same
day of calls, SMS and faxes to every firm, and prints what was logged where and
why anything was skipped or unresolved. The firms differ only in their
settings: contact creation policy, exclusive contact association and the
several-matches policy. Then it feeds the same events again and shows that
nothing changed in Clio.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import textwrap
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callbridge.engine import Engine
from callbridge.events import AnyEvent, parse_event
from callbridge.ledger import Ledger
from callbridge.phones import mask_number
from callbridge.runtime import load
from rich.console import Console
from rich.table import Table

from callbridge_clio.sandbox import SandboxState
from callbridge_clio.sandbox.serve import serving

FIRMS = {
    "whitfield-law": {"contact_creation": '["missed"]', "exclusive": "false", "several": "ask",
                      "about": "creates contacts for missed calls; logs without a contact; asks on several matches"},
    "ortiz-legal": {"contact_creation": '"all"', "exclusive": "true", "several": "most_recent",
                    "about": "creates contacts for every call and SMS; exclusive association; most recent contact"},
    "park-partners": {"contact_creation": '"none"', "exclusive": "true", "several": "all",
                      "about": "never creates contacts; exclusive association; links every matching contact"},
}
PDF = base64.b64encode(b"%PDF-1.4\n% a one-page fax\n").decode()


def seed(st: SandboxState) -> None:
    st.add_user("Ann Lee", "ann@firm.example", authorised=True)
    st.add_user("Bob Stone", "bob@firm.example")
    dana = st.add_contact("Dana", "Whitfield", ["(212) 555-0142"], ["dana@example.com"])
    sam = st.add_contact("Sam", "Ortiz", ["+1 646-555-0111"])
    lee = st.add_contact("Lee", "Park", ["212.555.0150"])
    st.add_contact("Jo", "Kim", ["1-212-555-0177"])  # Jo and Max share one number
    st.add_contact("Max", "Kim", ["2125550177"])
    st.add_contact("Jane", "Roe", ["437-555-0142 (Jane's Number)"])  # unreadable: reported, not matched
    st.add_matter(dana, "Lease dispute")
    st.add_matter(dana, "Old lease", status="Closed")
    st.add_matter(sam, "Estate")
    st.add_matter(sam, "Trust", status="Pending")
    del lee  # a client with no matter


def day(tenant: str) -> list[AnyEvent]:
    start = datetime(2026, 3, 2, 14, tzinfo=UTC)

    def at(minutes: int) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    def call(i: str, m: int, number: str | None, outcome: str, *, name: str | None = None,
             direction: str = "inbound", talk: int = 240, **extra: Any) -> dict[str, Any]:
        answered = outcome == "completed"
        return {"kind": "call", "id": i, "tenant": tenant, "direction": direction,
                "external": {"number": number, "name": name}, "internal": {"extension": "101"},
                "started_at": at(m), "answered_at": at(m) if answered else None,
                "ended_at": (start + timedelta(minutes=m, seconds=talk if answered else 25)).isoformat(),
                "outcome": outcome, **extra}

    raw = [
        call("call-01", 0, "212-555-0142", "completed", name="DANA WHITFIELD", notes="Hearing moved to Friday."),
        call("call-02", 20, "+1 646 555 0111", "completed", direction="outbound"),
        call("call-03", 40, "2125550150", "missed"),
        call("call-04", 60, "+1 718 555 0101", "missed", name="Rae Quinn"),
        call("call-05", 80, "+1 718 555 0102", "completed", name="WIRELESS CALLER"),
        call("call-06", 100, "+1 718 555 0103", "busy", direction="outbound"),
        call("call-07", 120, None, "voicemail", recording_url="https://pbx.example.com/rec/7.mp3"),
        call("call-08", 140, "2125550177", "completed", name="KIM"),
        call("call-09", 160, "+1 212 555 0100", "completed"),  # the firm's own number
        {"kind": "sms", "id": "sms-01", "tenant": tenant, "direction": "inbound",
         "external": {"number": "(212) 555-0142"}, "sent_at": at(180), "body": "Running 10 minutes late."},
        {"kind": "sms", "id": "sms-02", "tenant": tenant, "direction": "inbound",
         "external": {"number": "72345"}, "sent_at": at(190), "body": "Your code is 4410"},
        {"kind": "sms", "id": "sms-03", "tenant": tenant, "direction": "outbound",
         "external": {"number": "+1 718 555 0104"}, "sent_at": at(200), "body": "Thanks for calling."},
        {"kind": "fax", "id": "fax-01", "tenant": tenant, "direction": "inbound",
         "external": {"number": "212 555 0142"}, "sent_at": at(220), "page_count": 1,
         "document": {"content": PDF}},
        {"kind": "fax", "id": "fax-02", "tenant": tenant, "direction": "inbound",
         "external": {"number": "+1 718 555 0105"}, "sent_at": at(240), "page_count": 3,
         "document": {"content": PDF}},
    ]
    return [parse_event(e) for e in raw]


def config(folder: Path, urls: dict[str, str]) -> Path:
    parts = [f'[ledger]\nurl = "sqlite:///{folder / "demo.db"}"\n']
    for firm, s in FIRMS.items():
        env = firm.upper().replace("-", "_")
        parts.append(textwrap.dedent(f"""
        [tenants.{firm}]
        time_zone = "America/New_York"
        default_region = "US"
        own_numbers = ["+1 212 555 0100"]
        extensions = {{ "101" = "ann@firm.example" }}

        [tenants.{firm}.apps.clio]
        contact_creation = {s['contact_creation']}
        exclusive_contact_association = {s['exclusive']}
        several_matches = "{s['several']}"
        credentials_env = "{env}_CLIO"

        [tenants.{firm}.apps.clio.options]
        api_base_url = "{urls[firm]}/api/v4"
        """))
    path = folder / "callbridge.toml"
    path.write_text("".join(parts))
    return path


def counts(states: dict[str, SandboxState]) -> dict[str, tuple[int, int, int, int]]:
    return {f: (len(s.contacts), len(s.communications), len(s.activities), len(s.documents))
            for f, s in states.items()}


async def settle(engine: Engine, console: Console, *, limit: float = 240) -> None:
    """Work until nothing is due; deliveries waiting for Clio's rate limit are waited for."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        await engine.run_until_idle()
        waiting = engine.ledger.history(status="waiting", limit=10**6)
        if not waiting or asyncio.get_running_loop().time() > deadline:
            return
        due = min(v.next_attempt_at for v in waiting if v.next_attempt_at)
        pause = max(0.2, (due - datetime.now(UTC)).total_seconds())
        console.print(f"  … {len(waiting)} delivery(ies) wait {pause:.0f} s for Clio's rate limit "
                      "(50 requests a minute per connection)")
        await asyncio.sleep(pause)


def describe(event: AnyEvent) -> str:
    number = event.external.number
    who = mask_number(number) if number and number.startswith("+") else (number or "withheld")
    detail = getattr(event, "outcome", None)
    what = f"{event.kind} {event.direction.value[:3]}"
    return f"{what} {detail.value if detail else ''} {who}".replace("  ", " ")


async def run(console: Console) -> int:
    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    os.environ["CALLBRIDGE_PLUGINS"] = "clio"
    states = {firm: SandboxState() for firm in FIRMS}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        urls = {}
        for firm, st in states.items():
            seed(st)
            urls[firm] = stack.enter_context(serving(st))  # the API and its storage
            env = firm.upper().replace("-", "_")
            os.environ[f"{env}_CLIO_CLIENT_ID"] = st.client_id
            os.environ[f"{env}_CLIO_CLIENT_SECRET"] = st.client_secret
        runtime = load(config(Path(tmp), urls), strict=True)
        engine: Engine = runtime.engine()
        for firm, st in states.items():
            engine.ledger.token_set(firm, "clio", st.issue_token())
        console.print("[bold]callbridge demo[/bold]: three firms, one Clio sandbox each on loopback, "
                      "the same day of events for every firm.")
        for firm, s in FIRMS.items():
            console.print(f"  [cyan]{firm}[/cyan]: {s['about']}")
        events = {firm: day(firm) for firm in FIRMS}
        try:
            await engine.sync_indexes()  # the phone index: known numbers then cost no search
            for batch in events.values():
                for event in batch:
                    await engine.ingest(event)
            await settle(engine, console)
            table = Table(title="What was logged where, and why not", show_lines=False)
            table.add_column("event")
            for firm in FIRMS:
                table.add_column(firm)
            history = {(v.tenant, v.source_id): v for v in engine.ledger.history(limit=10**6)}
            tally: Counter[str] = Counter()
            for i, event in enumerate(events["whitfield-law"]):
                row = [f"{event.id}: {describe(event)}"]
                for firm in FIRMS:
                    view = history[(firm, events[firm][i].id)]
                    tally[view.status] += 1
                    kinds = Counter(r.kind for r in view.records)
                    if view.status in ("logged", "accepted"):
                        cell = "[green]logged[/green] " + ", ".join(
                            k.replace("_", " ") for k in kinds if k in ("communication", "time_entry", "document"))
                        if "contact" in kinds:
                            cell += " (+ new contact)"
                        if view.reason:
                            cell += f" [yellow]{view.reason.replace('_', ' ')}[/yellow]"
                    elif view.status == "unresolved":
                        cell = f"[magenta]unresolved[/magenta]: {len(view.candidates)} contacts share the number"
                    else:
                        cell = f"[yellow]{view.status}[/yellow]: {view.reason}"
                    row.append(cell)
                table.add_row(*row)
            console.print(table)
            console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
            before = counts(states)
            for batch in events.values():
                for event in batch:
                    await engine.ingest(event)
            await settle(engine, console)
            after = counts(states)
            again = Table(title="The same events fed again")
            for col in ("firm", "contacts", "communications", "time entries", "documents", "changed"):
                again.add_column(col)
            for firm in FIRMS:
                again.add_row(firm, *(str(n) for n in after[firm]),
                              "[green]nothing[/green]" if after[firm] == before[firm] else "[red]yes[/red]")
            console.print(again)
            return 0 if after == before else 1
        finally:
            await engine.aclose()


def main() -> int:
    return asyncio.run(run(Console()))
