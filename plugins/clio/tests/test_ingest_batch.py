"""A firm's batch through ``callbridge ingest`` against the Clio sandbox on loopback:
15 completed calls from three known contacts log once each (a communication and a
time entry), with no 429, under Clio's 50 requests a minute. One fake clock drives the
host's rate limiter, its waits and the sandbox's rate-limit windows, so the test runs
the batch's minutes of Clio time without sleeping."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.faults import serve_in_thread
from callbridge.ingesting import run_ingest
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.testing.clock import BusyTransport, FakeClock
from callbridge_clio.sandbox import SandboxState, create_app

START = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
NUMBERS = ["(212) 555-0142", "+1 646 555 0111", "212.555.0150"]


def batch(calls: int = 15, numbers: list[str] = NUMBERS, prefix: str = "b") -> str:
    """``calls`` completed calls, round robin over ``numbers``, a minute apart."""
    lines = []
    for i in range(calls):
        began = START - timedelta(hours=2) + timedelta(minutes=i)
        lines.append(json.dumps({
            "kind": "call", "id": f"{prefix}-{i}", "tenant": "acme", "direction": "inbound",
            "external": {"number": numbers[i % len(numbers)]}, "internal": {"extension": "101"},
            "started_at": began.isoformat(), "answered_at": (began + timedelta(seconds=5)).isoformat(),
            "ended_at": (began + timedelta(minutes=3)).isoformat(), "outcome": "completed"}))
    return "\n".join(lines) + "\n"


class Firm:
    def __init__(self, state: SandboxState, faults: Any, engine: Any, settings: Any,
                 clock: FakeClock, tmp: Path) -> None:
        self.state, self.faults, self.engine, self.settings = state, faults, engine, settings
        self.clock, self.tmp = clock, tmp

    async def ingest(self, text: str, **kwargs: Any) -> int:
        path = self.tmp / "events.jsonl"
        path.write_text(text)
        with path.open("rb") as stream:
            return await run_ingest(self.engine, self.settings, path, stream, rejects=None,
                                    dry_run=False, as_json=True,
                                    wait_max=kwargs.get("wait_max", 600.0),
                                    no_wait=kwargs.get("no_wait", False))


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, ...]]:
    clock = FakeClock(START, autojump=True)
    state = SandboxState(clock=clock)  # Clio's 50 requests a minute per token
    state.add_user("Ann Lee", "ann@acme.example", authorised=True)
    for i, number in enumerate(NUMBERS):
        state.add_contact("Client", f"Number{i}", [number])
    faults = create_app(state, clock=clock)
    with serve_in_thread(faults) as url, serve_in_thread(faults) as storage:
        state.host, state.storage_host = url, storage
        monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
        monkeypatch.setenv("ACME_CLIO_CLIENT_ID", state.client_id)
        monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", state.client_secret)
        monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio")
        path = tmp_path / "callbridge.toml"
        path.write_text(textwrap.dedent(f"""
        [ledger]
        url = "sqlite:///{tmp_path / 'ledger.db'}"

        [tenants.acme]
        extensions = {{ "101" = "ann@acme.example" }}

        [tenants.acme.apps.clio]
        credentials_env = "ACME_CLIO"
        contact_creation = "all"

        [tenants.acme.apps.clio.options]
        api_base_url = "{url}/api/v4"
        """))
        yield state, faults, path, clock


@pytest.fixture
async def firm(served: tuple[Any, ...], tmp_path: Path) -> Any:
    state, faults, path, clock = served
    rt = load(path, strict=True)
    engine = rt.engine(clock=clock, transports={"clio": BusyTransport(httpx2.AsyncHTTPTransport(),
                                                                      clock)})
    engine.ledger.token_set("acme", "clio", state.issue_token())
    yield Firm(state, faults, engine, rt.settings.current(), clock, tmp_path)
    await engine.aclose()


async def test_fifteen_calls_from_three_known_contacts_log_once_each_without_a_429(firm: Firm) -> None:
    code = await firm.ingest(batch())
    assert code == 0
    state, engine = firm.state, firm.engine
    assert len(state.communications) == 15 and len(state.activities) == 15
    linked = sorted(a["communication"]["id"] for a in state.activities.values())
    assert linked == sorted(state.communications)  # each time entry with its communication
    assert firm.faults.count(status=429) == 0
    views = engine.ledger.history(limit=100)
    assert [v.status for v in views] == ["logged"] * 15
    assert all(v.attempts == 1 for v in views)
    # Clio's limit was the pace: more than 50 requests took more than a minute of its time.
    # The figures of the batch (docs/benchmarks.md has the real clock's).
    print(f"batch: {len(state.requests)} requests, 0 429s, "
          f"{(firm.clock.now() - START).total_seconds():.0f} s of Clio's time")


async def test_a_batch_past_clios_limit_is_paced_by_it_without_a_429(firm: Firm) -> None:
    code = await firm.ingest(batch(45))
    assert code == 0
    state = firm.state
    assert len(state.communications) == 45 and len(state.activities) == 45
    assert firm.faults.count(status=429) == 0
    # More than one window of Clio's limit: the host waited for room instead of failing.
    assert len(state.requests) > 100 and firm.clock.now() - START > timedelta(seconds=60)
    assert [v.attempts for v in firm.engine.ledger.history(limit=100)] == [1] * 45


async def test_four_events_from_one_unknown_number_create_one_contact(firm: Firm) -> None:
    before = set(firm.state.contacts)
    code = await firm.ingest(batch(4, ["+1 718 555 0177"], prefix="u"))
    assert code == 0
    created = set(firm.state.contacts) - before
    assert len(created) == 1
    logged_to = {p["id"] for c in firm.state.communications.values()
                 for p in c.get("senders", []) + c.get("receivers", []) if p.get("type") == "Contact"}
    assert logged_to == created
    assert [v.status for v in firm.engine.ledger.history(limit=10)] == ["logged"] * 4


async def test_what_waits_beyond_wait_max_stays_queued_for_the_next_run(firm: Firm) -> None:
    code = await firm.ingest(batch(45), wait_max=0)
    views = firm.engine.ledger.history(limit=100)
    waiting = [v for v in views if v.status == "waiting"]
    assert code == 0 and waiting and all(v.reason == "rate_limit" for v in waiting)
    assert all(v.attempts == 0 for v in waiting)  # a rate limit spends no attempt
    from callbridge.ingesting import run_drain

    assert await run_drain(firm.engine, wait_max=600, as_json=True) == 0
    assert [v.status for v in firm.engine.ledger.history(limit=100)] == ["logged"] * 45
    assert len(firm.state.communications) == 45 and firm.faults.count(status=429) == 0


async def test_two_processes_on_one_ledger_create_one_contact_for_one_number(
        served: tuple[Any, ...], tmp_path: Path) -> None:
    """Two engines (each its own ledger connection, as two processes have) work the
    deliveries of one unknown number at once: the ledger-held lock per number and the
    contacts it remembers creating make one contact."""
    import asyncio

    state, faults, path, clock = served
    rt = load(path, strict=True)
    engines = [rt.engine(clock=clock, transports={
        "clio": BusyTransport(httpx2.AsyncHTTPTransport(), clock)}) for _ in range(2)]
    engines[0].ledger.token_set("acme", "clio", state.issue_token())
    assert engines[0].ledger is not engines[1].ledger
    try:
        from callbridge.events import parse_event

        before = set(state.contacts)
        for line in batch(6, ["+1 718 555 0178"], prefix="p").splitlines():
            await engines[0].ingest(parse_event(line))
        from callbridge.drain import drain

        # Both wait out Clio's limit (the live searches of a cold index fill it).
        await asyncio.gather(*(drain(e, wait_max=600) for e in engines))
        views = engines[1].ledger.history(limit=10)
    finally:
        for engine in engines:
            await engine.aclose()
    assert len(set(state.contacts) - before) == 1
    assert [v.status for v in views] == ["logged"] * 6, [(v.reason, v.message) for v in views]
    assert len(state.communications) == 6 and faults.count(status=429) == 0
