"""The closed-matter sync end to end: the Clio sandbox and a signed-webhook receiver, both
on loopback, the real plugins through their entry points, a ledger file, one fake clock.

A fixture firm: five clients with mixed opt-out values, their matters with mixed opt-in
values, the opt-in field missing from Clio at first (a configuration error that holds
everything), a source that fails in the middle of a walk and a process that restarts
there, and a receiver that fails twice before it accepts. The exact set of clients the
receiver holds at the end is checked, and that none came twice.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from callbridge.closing import schedule as closing_schedule
from callbridge.closing.command import run_sync_closed
from callbridge.closing.sync import sync_firm
from callbridge.engine import Engine
from callbridge.errors import AppEventRefused
from callbridge.faults import serve_in_thread
from callbridge.http import RetryPolicy
from callbridge.ledger import Ledger
from callbridge.models import AppRequest
from callbridge.runtime import load
from callbridge.testing.addresses import allow_sandbox
from callbridge.testing.clock import FakeClock
from callbridge_clio.sandbox import SandboxState, create_app
from callbridge_webhook_out.sandbox import PATH, ReceiverState
from callbridge_webhook_out.sandbox import create_app as receiver_app

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
SECRET = "e2e-webhook-secret"
#: Each client: (first name, opt-out value on the contact, opt-in value on the matter);
#: None is a field never set.
FIRM = {"ana": ("Ana", "false", "true"), "ben": ("Ben", "true", "true"),
        "cal": ("Cal", None, "false"), "dee": ("Dee", None, None),
        "eve": ("Eve", "false", "true")}
#: Sent: opted in and not opted out (Ben is opted out; Cal not opted in; Dee unset).
EXPECTED = {"ana@example.com", "eve@example.com"}


class Firm:
    """The Clio sandbox and the receiver on loopback, and engines made on one ledger file."""

    def __init__(self, tmp_path: Path, clio: SandboxState, clio_url: str,
                 receiver: ReceiverState, receiver_url: str, clock: FakeClock) -> None:
        self.clio, self.receiver, self.clock = clio, receiver, clock
        self.receiver_url = receiver_url
        self.faults: Any = None
        self.config = tmp_path / "callbridge.toml"
        self.config.write_text(textwrap.dedent(f"""
            [ledger]
            url = "sqlite:///{tmp_path / 'ledger.db'}"

            [tenants.acme]
            default_region = "US"

            [tenants.acme.apps.clio]
            credentials_env = "ACME_CLIO"
            [tenants.acme.apps.clio.options]
            api_base_url = "{clio_url}/api/v4"

            [tenants.acme.apps.review]
            plugin = "webhook_out"
            [tenants.acme.apps.review.options]
            url = "{receiver_url}{PATH}"
            secret_env = "ACME_REVIEW_SECRET"

            [tenants.acme.closed_matters]
            source = "clio"
            destination = "review"
            opt_out = {{ enabled = true, field = "BroadlyOptOut" }}
            opt_in = {{ enabled = true, field = "SendBroadlyThankYou" }}
            since = "{START.isoformat()}"
            """))
        self.engines: list[Engine] = []

    def engine(self) -> Engine:
        """A new process's engine (a restart): the same settings and ledger file."""
        engine = load(self.config, strict=True).engine(
            clock=self.clock, retry=RetryPolicy(enabled=False))
        if engine.ledger.token_get("acme", "clio") is None:
            engine.ledger.token_set("acme", "clio", self.clio.issue_token())
        self.engines.append(engine)
        return engine

    async def close(self) -> None:
        for engine in self.engines:
            await engine.aclose()


@pytest.fixture
def firm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Firm]:
    clock = FakeClock(START)
    clio = SandboxState(clock=clock, rate_limit=None, max_page_size=2)
    receiver = ReceiverState(secret=SECRET, clock=clock)
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_CLIO_CLIENT_ID", clio.client_id)
    monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", clio.client_secret)
    monkeypatch.setenv("ACME_REVIEW_SECRET", SECRET)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio,webhook_out")
    faults = create_app(clio)
    with serve_in_thread(faults) as clio_url, serve_in_thread(receiver_app(receiver)) as hooks, \
            allow_sandbox(hooks):
        clio.host = clio_url
        made = Firm(tmp_path, clio, clio_url, receiver, hooks, clock)
        made.faults = faults
        yield made


def seed(st: SandboxState) -> dict[str, int]:
    """The firm's clients (opt-out set where given) and one open matter each."""
    st.add_user("Ann Lee", "ann@acme.example", authorised=True)
    opt_out = st.add_custom_field("BroadlyOptOut", "Contact")
    matters = {}
    for key, (first, out, _) in FIRM.items():
        contact = st.add_contact(first, "Client", [f"(212) 555-01{60 + len(matters)}"],
                                 [f"{key}@example.com"],
                                 custom_fields={opt_out: out} if out is not None else None)
        matters[key] = st.add_matter(contact, f"{first}'s matter")
    return matters


def sent_emails(receiver: ReceiverState) -> set[str]:
    return {body["client"]["email"] for body in receiver.received.values()}


async def test_the_exact_clients_are_sent_once_through_errors_a_restart_and_failures(
        firm: Firm) -> None:
    st, clock = firm.clio, firm.clock
    matters = seed(st)
    try:
        # 1. The opt-in field is missing from Clio: a configuration error holds everything.
        clock.advance(60)
        st.close_matter(matters["ana"], on="2026-03-02")
        engine = firm.engine()
        assert await run_sync_closed(engine) == 1
        report = await sync_firm(engine, "acme")
        assert report.problems == [
            "the matter custom field 'SendBroadlyThankYou' does not exist in clio (names are "
            "matched exactly, case included)"]
        assert report.held == 1 and firm.receiver.requests == 0

        # 2. Fixed in Clio; the rest close. The receiver fails its next two requests and
        #    Clio fails the second page of the walk: this process stops there.
        opt_in = st.add_custom_field("SendBroadlyThankYou", "Matter")
        clock.advance(60)
        for key, (_, _, value) in FIRM.items():
            if value is not None:
                st.set_field(st.matters, matters[key], opt_in, value)
            if key != "ana":
                st.close_matter(matters[key], on="2026-03-02")
        firm.receiver.fail_next = 2
        firm.faults.fail_on[("GET", "/api/v4/matters.json")] = ["pass", 503]
        report = await sync_firm(engine, "acme")
        assert report.error and not report.problems
        assert {x.fate for x in report.lines} <= {"waiting", "skipped"}
        await engine.aclose()

        # 3. A new process: the walk goes on from its position; a retry and a new send.
        clock.advance(60)
        engine = firm.engine()
        before = len(st.requests)
        await sync_firm(engine, "acme")
        walk = [r for r in st.requests[before:] if r["path"] == "/api/v4/matters.json"]
        assert "page_token" in walk[0]["query"]  # from the kept position, not the start
        clock.advance(600)
        report = await sync_firm(engine, "acme")
        assert sent_emails(firm.receiver) == EXPECTED
        assert firm.receiver.duplicates == 0 and firm.receiver.refused == 0
        assert firm.receiver.requests == len(EXPECTED) + 2  # two refusals, then one each

        # 4. Later runs, a matter changed after it was sent, a re-opened and re-closed
        #    matter: nothing more is sent, and `sync-closed` has nothing to say.
        st.touch(st.matters, matters["eve"], description="Eve's matter (archived)")
        st.reopen_matter(matters["ana"])
        clock.advance(86400)
        st.close_matter(matters["ana"], on="2026-03-03")
        clock.advance(900)
        report = await sync_firm(engine, "acme")
        assert report.lines == [] and not report.problems
        assert await run_sync_closed(engine) == 0
        assert firm.receiver.requests == len(EXPECTED) + 2
        assert sent_emails(firm.receiver) == EXPECTED
    finally:
        await firm.close()


def callbridge(firm: Firm, *args: str) -> Any:
    """The command, run in this process (its own engine, on the system clock)."""
    from callbridge.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [*args, "--config", str(firm.config)])


def test_a_field_that_is_not_a_checkbox_is_named_by_check_doctor_and_sync_closed(
        firm: Firm) -> None:
    matters = seed(firm.clio)
    firm.clio.add_custom_field("SendBroadlyThankYou", "Matter", "text_line")
    firm.clio.close_matter(matters["ana"], on="2026-03-02")
    ledger = load(firm.config, strict=True).ledger()
    ledger.token_set("acme", "clio", firm.clio.issue_token())
    ledger.close()
    problem = "the matter custom field 'SendBroadlyThankYou' in clio is a text_line field, " \
              "not a checkbox"
    check = callbridge(firm, "check", "acme", "clio")
    assert check.exit_code == 1 and problem in " ".join(check.output.split())
    synced = callbridge(firm, "sync-closed", "--json")
    assert synced.exit_code == 1
    (report,) = json.loads(synced.stdout)
    assert report["problems"] == [problem] and report["held"] == 1
    doctor = callbridge(firm, "doctor", "--json")
    details = [c["detail"] for c in json.loads(doctor.stdout)["checks"]
               if c["name"] == "acme closed-matter sync"]
    assert details and problem in details[0]
    assert firm.receiver.requests == 0


def app_request(delivery: Any, now: datetime) -> AppRequest:
    return AppRequest(headers=dict(delivery.headers), body=delivery.body, url=delivery.url,
                      received_at=now)


async def test_clios_webhooks_bring_a_closed_matter_at_once_and_the_poll_catches_a_lost_one(
        firm: Firm) -> None:
    st, clock = firm.clio, firm.clock
    matters = seed(st)
    opt_in = st.add_custom_field("SendBroadlyThankYou", "Matter")
    for key, (_, _, value) in FIRM.items():
        if value is not None:
            st.set_field(st.matters, matters[key], opt_in, value)
    engine = firm.engine()
    try:
        # Subscribed when the server knows its public URL; Clio's handshake is accepted.
        engine.app_events.base_url = "https://callbridge.firm.example"
        assert await engine.app_events.run_due(force=True) == 1
        (hook,) = st.webhooks.values()
        assert hook["status"] == "enabled" and hook["model"] == "matter"
        assert hook["url"] == "https://callbridge.firm.example/v1/apps/acme/clio/events"
        (handshake,) = st.outbox
        assert (await engine.app_events.receive("acme", "clio", app_request(
            handshake, clock.now()))).matters == 0
        st.outbox.clear()
        assert await closing_schedule.run_due(engine) == 1  # the first poll: nothing closed

        # A matter closes: its webhook, delivered twice, sends the client once, now.
        clock.advance(60)
        st.close_matter(matters["ana"], on="2026-03-02")
        (closed,) = st.outbox
        for _ in range(2):
            received = await engine.app_events.receive("acme", "clio",
                                                       app_request(closed, clock.now()))
            assert received.matters == 1
        assert await closing_schedule.run_due(engine) == 1
        assert sent_emails(firm.receiver) == {"ana@example.com"}

        # A forged delivery is refused; a lost one is caught by the next poll.
        forged = app_request(closed, clock.now()).model_copy(
            update={"body": closed.body.replace(b"Closed", b"Open")})
        with pytest.raises(AppEventRefused):
            await engine.app_events.receive("acme", "clio", forged)
        st.outbox.clear()
        clock.advance(60)
        st.close_matter(matters["eve"], on="2026-03-02")
        st.outbox.clear()  # the webhook is lost
        assert await closing_schedule.run_due(engine) == 0  # not due: no notice came
        clock.advance(15 * 60)
        assert await closing_schedule.run_due(engine) == 1
        assert sent_emails(firm.receiver) == EXPECTED
        assert firm.receiver.requests == 2 and firm.receiver.duplicates == 0

        # Renewed before it expires (Clio keeps a webhook 31 days at most).
        expires = hook["expires_at"]
        clock.advance(27 * 86400 + 60)
        assert await engine.app_events.run_due() == 1
        assert hook["expires_at"] > expires
    finally:
        await firm.close()


def test_check_refuses_a_webhook_url_on_a_private_address(firm: Firm) -> None:
    text = firm.config.read_text()
    firm.config.write_text(text.replace(f'url = "{firm.receiver_url}{PATH}"',
                                        'url = "https://10.1.2.3/hooks"'))
    refused = callbridge(firm, "check", "acme", "review")
    assert refused.exit_code == 1
    assert "the app's URL is refused" in refused.output and "10.1.2.3" not in refused.output
