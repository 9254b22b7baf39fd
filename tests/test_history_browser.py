"""The call-history page in a real browser (Debian's chromium, driven by Playwright) against
the server's app on loopback with the Clio sandbox behind it: signing in, a manual log,
an unresolved event's contact chosen by keyboard, notes added then cancelled during a
call; then the sandbox's records.

The phone system is another engine on the same ledger file (as a second process
would be); time is a fake clock shared by both, so nothing sleeps. Screenshots of each
state go to a temporary folder, or to docs/images when CALLBRIDGE_DOCS_SCREENSHOTS is
set (how the documentation's pictures are made).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from callbridge.events import parse_event
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import Runtime, load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash
from callbridge.testing.clock import FakeClock

from tests.browser import browser

__all__ = ["browser"]

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "cbo_front-desk-token-for-tests-only"
T = TypeVar("T")


class Loop:
    """An event loop on a thread of its own, for the phone system's engine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def shots_dir(tmp_path: Path) -> Path:
    if os.environ.get("CALLBRIDGE_DOCS_SCREENSHOTS"):
        return ROOT / "docs" / "images"
    return tmp_path


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "callbridge.toml"
    path.write_text(textwrap.dedent(f"""
    [ledger]
    url = "sqlite:///{tmp_path / 'ledger.db'}"

    [operators.front-desk]
    token_sha256 = "{token_hash(TOKEN)}"
    tenants = ["acme"]

    [tenants.acme]
    name = "Whitfield & Park LLP"
    time_zone = "America/New_York"
    default_region = "US"
    own_numbers = ["+1 212 555 0100"]
    extensions = {{ "101" = "ann@acme.example" }}

    [tenants.acme.apps.clio]
    credentials_env = "ACME_CLIO"
    exclusive_contact_association = true

    [tenants.acme.apps.clio.options]
    api_base_url = "{url}/api/v4"
    """))
    return path


def call(cid: str, number: str, *, state: str = "ended", start: str = "14:00:00",
         end: str = "14:06:12", name: str | None = None) -> Any:
    data: dict[str, Any] = {
        "kind": "call", "id": cid, "tenant": "acme", "direction": "inbound",
        "external": {"number": number, **({"name": name} if name else {})},
        "internal": {"extension": "101"}, "state": state,
        "started_at": f"2026-01-05T{start}Z", "answered_at": f"2026-01-05T{start}Z"}
    if state == "ended":
        data.update(ended_at=f"2026-01-05T{end}Z", outcome="completed")
    return parse_event(data)


@pytest.fixture
def firm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The Clio sandbox with a firm in it, the settings, and the server's app on loopback."""
    from callbridge_clio.sandbox import SandboxState, create_app

    sandbox = SandboxState()
    sandbox.rate_limit = None  # its window runs on the wall clock; this test's time is fake
    sandbox.add_user("Ann Lee", "ann@acme.example", authorised=True)
    ids = {"dana": sandbox.add_contact("Dana", "Whitfield", ["(212) 555-0142"]),
           "sam": sandbox.add_contact("Sam", "Ortiz", ["646-555-0111"]),
           "samantha": sandbox.add_contact("Samantha", "Ortiz", ["+1 646 555 0111"])}
    faults = create_app(sandbox)
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_CLIO_CLIENT_ID", sandbox.client_id)
    monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", sandbox.client_secret)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio")
    clock = FakeClock()
    loop = Loop()
    with serve_in_thread(faults) as url, serve_in_thread(faults) as storage:
        sandbox.host, sandbox.storage_host = url, storage
        runtime: Runtime = load(config(tmp_path, url), strict=True)
        phone = runtime.engine(clock=clock)  # the phone system's side
        phone.ledger.token_set("acme", "clio", sandbox.issue_token())
        server = runtime.engine(clock=clock)
        app = build_app(make_state(runtime, engine=server, clock=clock, worker=False))
        with serve_in_thread(app) as base:
            yield SimpleNamespace(sandbox=sandbox, ids=ids, phone=phone, loop=loop, clock=clock,
                                  url=base, ledger=phone.ledger)
            loop.run(server.aclose())
        loop.run(phone.aclose())
    loop.close()


def ingest(firm: Any, event: Any) -> int:
    async def go() -> int:
        stored = await firm.phone.ingest(event)
        await firm.phone.run_until_idle(event_pks=[stored.event_pk])
        return int(stored.event_pk)

    return int(firm.loop.run(go()))


#: Form controls a person could use that have no accessible name from a label.
UNLABELLED = """() => [...document.querySelectorAll('input, textarea, select')]
    .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
    .map(e => e.name)"""


def checked(page: Any) -> Any:
    """The page, after checking that it has one h1 and every control has a label."""
    assert page.get_by_role("heading", level=1).count() == 1
    assert page.evaluate(UNLABELLED) == []
    return page


def outcome(firm: Any, pk: int) -> tuple[str, str]:
    view = firm.ledger.find_delivery("acme", "clio", pk)
    assert view is not None
    return view.status, view.mode


def test_a_firm_logs_by_hand_chooses_a_contact_and_takes_notes_during_a_call(
        firm: Any, browser: Any, tmp_path: Path) -> None:
    shots = shots_dir(tmp_path)
    unknown = ingest(firm, call("call-unknown", "+1 212 555 0177", start="13:00:00",
                                end="13:02:30"))
    two = ingest(firm, call("call-two", "+1 646 555 0111", start="13:30:00", end="13:41:05"))
    ingest(firm, parse_event({"kind": "sms", "id": "sms-1", "tenant": "acme",
                              "direction": "inbound", "external": {"number": "2125550142"},
                              "sent_at": "2026-01-05T14:10:00Z", "body": "Running late."}))
    live = ingest(firm, call("call-live", "(212) 555-0142", state="in_progress",
                             start="14:58:00", name="Dana Whitfield"))
    assert outcome(firm, unknown)[0] == "skipped" and outcome(firm, two)[0] == "unresolved"
    # The contact the first caller turned out to be is added to Clio after the call.
    kim = firm.sandbox.add_contact("Kim", "Novak", ["212.555.0177"])

    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(15_000)
    page.goto(f"{firm.url}/history/")
    page.keyboard.press("Tab")  # the first stop skips to the content
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    checked(page).get_by_label("Operator token").fill(TOKEN)
    page.screenshot(path=str(shots / "history-sign-in.png"))
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Recent calls, SMS and faxes"
    table = checked(page).get_by_role("table", name="Events of Whitfield & Park LLP")
    assert table.get_by_role("columnheader", name="clio").count() == 1
    assert table.get_by_role("row").count() == 5  # the header and four events
    page.screenshot(path=str(shots / "history-list.png"), full_page=True)

    # A manual log: the first call, matched again now that Clio knows the number.
    table.get_by_role("link", name="Inbound call from +1 212-555-0177").click()
    checked(page).get_by_role("button", name="Log to clio").click()
    assert page.get_by_role("status").inner_text() == "Logged in clio by hand."
    page.screenshot(path=str(shots / "history-logged.png"), full_page=True)

    # An unresolved call: the contact chosen among the candidates, by keyboard alone.
    page.get_by_role("link", name="All events").click()
    page.get_by_role("link", name="Inbound call from +1 646-555-0111").click()
    choice = checked(page).get_by_role("group", name="Choose the contact in clio")
    assert choice.get_by_role("radio").count() == 2
    page.screenshot(path=str(shots / "history-unresolved.png"), full_page=True)
    choice.get_by_role("radio", name="Samantha Ortiz").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_role("status").wait_for()
    assert page.get_by_role("status").inner_text() == "Logged in clio by hand."

    # Notes during the call in progress, then cancelled before it ends.
    page.get_by_role("link", name="All events").click()
    page.get_by_role("link", name="Inbound call from Dana Whitfield").click()
    checked(page).get_by_label("Notes").fill("Wants the hearing moved to March.")
    page.get_by_role("checkbox", name="clio").check()
    page.get_by_role("button", name="Add notes").click()
    assert "Notes added" in page.get_by_role("status").inner_text()
    assert outcome(firm, live) == ("waiting", "delayed")  # held until the call ends
    assert page.get_by_label("Your notes").inner_text() == "Wants the hearing moved to March."
    page.screenshot(path=str(shots / "history-notes.png"), full_page=True)
    page.get_by_role("button", name="Cancel the notes").click()
    assert page.get_by_role("status").inner_text() == "Notes cancelled."

    # The call ends: logged automatically, without the cancelled notes.
    firm.loop.run(firm.phone.ingest(call("call-live", "(212) 555-0142", start="14:58:00",
                                         end="15:03:00", name="Dana Whitfield")))
    firm.clock.advance(30)  # past the grace period for notes
    firm.loop.run(firm.phone.run_until_idle(event_pks=[live]))
    page.goto(f"{firm.url}/history/acme/events/{live}")
    page.screenshot(path=str(shots / "history-after-call.png"), full_page=True)
    page.close()

    assert outcome(firm, unknown) == ("logged", "manual")
    assert outcome(firm, two) == ("logged", "manual")
    assert outcome(firm, live) == ("logged", "auto")
    every = sorted(firm.sandbox.communications.values(), key=lambda c: c["id"])
    sms = [c["subject"] for c in every if c["subject"].startswith("SMS")]
    assert sms == ["SMS from Dana Whitfield (+1 212-555-0142)"]
    comms = [c for c in every if not c["subject"].startswith("SMS")]
    senders = [c["senders"][0]["id"] for c in comms]
    assert senders == [kim, firm.ids["samantha"], firm.ids["dana"]]
    assert "Kim Novak" in comms[0]["subject"] and "Samantha Ortiz" in comms[1]["subject"]
    assert "hearing moved" not in comms[2]["body"].lower()
