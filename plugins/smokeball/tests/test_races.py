"""Races and 429 storms against the Smokeball sandbox on loopback.

Two OS processes on one ledger (SQLite and PostgreSQL), each running
``callbridge ingest`` with the same settings, make one activity code between them:
the sandbox takes ``SLOW_CREATE`` seconds before it makes a code, so without a lock
across processes both would make one. Each process reads its events from a named
pipe; the second gets its events once the first process is working (its first
request of a delivery reached the sandbox), so their work overlaps.

The storm: the sandbox's partner bucket (5 per second, burst 5) and a stretch in
which every request is answered 429, while the engine (on a fake clock driving the
sandbox, the injector and the host's limiter together) logs twenty calls, and the
first fees written after it are refused with 429 as well. Every call ends with one
fee, nothing fails, and the deliveries that met a 429 waited (waiting/rate_limit,
their attempt count unchanged).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from callbridge.drain import drain
from callbridge.engine import Engine
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.testing.clock import BusyTransport, FakeClock
from callbridge.testing.postgres import ledger_url, postgres_server  # noqa: F401
from callbridge_smokeball.sandbox import SandboxState, create_app

from plugins.smokeball.tests.conftest import FIRM, START, write_config
from plugins.smokeball.tests.samples import call

KNOWN = "+12125550142"  # Dana Whitfield: one open matter ("Lease dispute")
LABEL = "CB-CALL"
#: How long the sandbox takes before it makes an activity code: longer than the two
#: processes can drift apart, so their creations overlap unless kept apart.
SLOW_CREATE = 1.0
#: A process that has not finished by then has hung (each takes a few seconds).
TIMEOUT = 120.0


def event(event_id: str, minute: int) -> dict[str, Any]:
    began = START + timedelta(minutes=minute)
    return {"kind": "call", "id": event_id, "tenant": "acme", "direction": "inbound",
            "external": {"number": KNOWN}, "internal": {"extension": "102"},
            "started_at": began.isoformat(),
            "answered_at": (began + timedelta(seconds=6)).isoformat(),
            "ended_at": (began + timedelta(minutes=4)).isoformat(), "outcome": "completed"}


def watched(app: Any, working: threading.Event) -> Any:
    """``app``, taking ``SLOW_CREATE`` seconds before it creates an activity code;
    ``working`` is set by the first request other than the token endpoint and the
    phone index's sync (reads of contacts without a search), which only a claimed
    delivery makes."""
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, query = scope["path"], scope["query_string"].lower()
            if not (path.startswith("/oauth2/") or (
                    path == "/contacts" and scope["method"] == "GET" and b"search=" not in query)):
                working.set()
            if scope["method"] == "POST" and path == "/activitycodes":
                await asyncio.sleep(SLOW_CREATE)
        await app(scope, receive, send)
    return slow


@dataclass
class Racers:
    state: SandboxState
    config: Path
    ledger_url: str
    key: str
    tmp: Path
    working: threading.Event

    def race(self, *batches: list[dict[str, Any]]) -> None:
        """One ``callbridge ingest`` process per batch, the second released as soon as
        the first is working; every one must end with exit code 0, nothing left queued."""
        procs, pipes = [], []
        for i, events in enumerate(batches):
            pipe = self.tmp / f"events-{i}.jsonl"
            os.mkfifo(pipe)
            pipes.append((pipe, "".join(json.dumps(e) + "\n" for e in events)))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "callbridge", "ingest", str(pipe), "--config",
                 str(self.config), "--json", "--wait-max", "60"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        start = threading.Barrier(len(pipes))

        def feed(pipe: Path, text: str, first: bool) -> None:
            with pipe.open("w") as stream:  # returns once the process has opened it
                start.wait(TIMEOUT)
                if not first:
                    self.working.wait(TIMEOUT)
                stream.write(text)

        feeders = [threading.Thread(target=feed, args=(*p, i == 0), daemon=True)
                   for i, p in enumerate(pipes)]
        for feeder in feeders:
            feeder.start()
        results = []
        for proc in procs:
            try:
                results.append(proc.communicate(timeout=TIMEOUT))
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise
        for (pipe, _), proc in zip(pipes, procs, strict=True):
            if proc.returncode != 0:  # a process that never opened its pipe: free its feeder
                start.abort()
                os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))
        for feeder in feeders:
            feeder.join(TIMEOUT)
        for proc, (out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
            assert json.loads(out)["still_open"] == 0, f"left queued\n{out}\n{err}"

    def statuses(self) -> list[str]:
        ledger = Ledger(self.ledger_url, secret_key=self.key)
        try:
            return [v.status for v in ledger.history(limit=100)]
        finally:
            ledger.close()


@pytest.fixture
def racers(ledger_url: str, tmp_path: Path,  # noqa: F811
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Racers]:
    if not hasattr(os, "mkfifo"):
        pytest.skip("named pipes (POSIX)")
    # The sandbox's bucket is off; the host keeps Smokeball's own (each process its own
    # on SQLite, the two together on PostgreSQL: room comes within its one-second window).
    state = SandboxState(rate_limited=False)
    state.seed(FIRM)
    key = Ledger.generate_key()
    working = threading.Event()
    with serve_in_thread(watched(create_app(state), working)) as url:
        state.host = url
        state.storage_host = url.replace("127.0.0.1", "localhost")
        for name, value in {"CALLBRIDGE_SECRET_KEY": key, "CALLBRIDGE_PLUGINS": "smokeball",
                            "ACME_SMOKEBALL_CLIENT_ID": state.client_id,
                            "ACME_SMOKEBALL_CLIENT_SECRET": state.client_secret,
                            "ACME_SMOKEBALL_API_KEY": state.api_key}.items():
            monkeypatch.setenv(name, value)
        config = tmp_path / "callbridge.toml"
        config.write_text(textwrap.dedent(f"""
        [ledger]
        url = "{ledger_url}"

        [tenants.acme]
        default_region = "US"
        time_zone = "America/New_York"
        own_numbers = ["+1 212 555 0100"]
        extensions = {{ "101" = "ann@firm.example", "102" = "bob@firm.example" }}

        [tenants.acme.apps.smokeball]
        credentials_env = "ACME_SMOKEBALL"

        [tenants.acme.apps.smokeball.options]
        api_base_url = "{url}"
        auth_base_url = "{url}"
        """))
        ledger = Ledger(ledger_url, secret_key=key)
        ledger.migrate()
        ledger.token_set("acme", "smokeball", state.issue_token())
        ledger.close()
        yield Racers(state, config, ledger_url, key, tmp_path, working)


def test_two_processes_create_one_activity_code(racers: Racers) -> None:
    state = racers.state
    assert not [c for c in state.rows("activitycodes") if c["code"] == LABEL]
    racers.race([event("ra-0", 0)], [event("rb-0", 5)])
    codes = [c for c in state.data["activitycodes"].values()
             if (c.get("code") or "").casefold() == LABEL.casefold()]
    assert len(codes) == 1, codes
    assert len([r for r in state.requests
                if r["method"] == "POST" and r["path"] == "/activitycodes"]) == 1
    fees = state.rows("fees")
    assert len(fees) == 2 and {f["activityCode"] for f in fees} == {codes[0]["code"]}
    assert sorted(racers.statuses()) == ["accepted"] * 2


# --- a 429 storm through the engine --------------------------------------------------------

CALLS = 20


@dataclass
class Stormy:
    state: SandboxState
    faults: FaultInjector
    clock: FakeClock
    engine: Engine
    ids: dict[str, str]


@pytest.fixture
async def stormy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stormy]:
    clock = FakeClock(START + timedelta(minutes=10), autojump=True)
    state = SandboxState(clock=clock)  # the partner bucket: 5 per second, burst 5
    ids = state.seed(FIRM)
    faults = FaultInjector(create_app(state), clock=clock)
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_ID", state.client_id)
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_SECRET", state.client_secret)
    monkeypatch.setenv("ACME_SMOKEBALL_API_KEY", state.api_key)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "smokeball")
    with serve_in_thread(faults) as url:
        state.host = url
        state.storage_host = url.replace("127.0.0.1", "localhost")
        rt = load(write_config(tmp_path / "callbridge.toml", url), strict=True)
        engine = rt.engine(clock=clock, transports={
            "smokeball": BusyTransport(httpx2.AsyncHTTPTransport(), clock)})
        engine.ledger.token_set("acme", "smokeball", state.issue_token())
        try:
            yield Stormy(state, faults, clock, engine, ids)
        finally:
            await engine.aclose()


async def test_a_429_storm_delays_calls_but_logs_each_once(stormy: Stormy) -> None:
    events = [call(id=f"sb-storm-{i:02d}",
                   started_at=(START + timedelta(minutes=i)).isoformat(),
                   answered_at=(START + timedelta(minutes=i, seconds=6)).isoformat(),
                   ended_at=(START + timedelta(minutes=i, seconds=50)).isoformat())
              for i in range(CALLS)]
    pks = [(await stormy.engine.ingest(e)).event_pk for e in events]
    # Every request is answered 429 for the next 2 minutes, with a Retry-After (60 s)
    # longer than a client waits inline; the sandbox's partner bucket stays on.
    stormy.faults.storm_until = stormy.clock.monotonic() + 120.0
    stormy.faults.storm_retry_after = 60.0
    # ... and the first five fees written after it are answered 429 too, with no fee made.
    fees_path = f"/matters/{stormy.ids['lease']}/fees"
    stormy.faults.fail_on[("POST", fees_path)] = [(429, 60.0)] * 5
    await drain(stormy.engine, event_pks=pks, wait_max=3600)
    views = [stormy.engine.ledger.find_delivery("acme", "smokeball", pk) for pk in pks]
    assert all(v is not None for v in views)
    statuses = {v.status for v in views if v is not None}
    assert statuses <= {"accepted", "logged"}, [(v.status, v.reason, v.message)
                                                 for v in views if v is not None]
    assert stormy.faults.count(status=429) > 0
    # One fee per call, none twice.
    fees = stormy.state.data["fees"].values()
    assert len(fees) == CALLS
    assert all(len(v.records) == 1 and v.records[0].kind == "fee" for v in views if v)
    assert len({v.records[0].id for v in views if v}) == CALLS
    # A 429 is not a failed attempt: the deliveries that met one waited for the limit
    # (waiting/rate_limit, the attempt count unchanged) and none failed.
    histories = [stormy.engine.ledger.attempts(v.delivery_id) for v in views if v]
    for history in histories:
        assert {a.attempt for a in history} == {1}, history
        assert history[-1].status in {"accepted", "logged"}
        assert all((a.status, a.reason) == ("waiting", "rate_limit") for a in history[:-1]), history
    assert {v.attempts for v in views if v} == {1}
    assert any(len(h) > 1 for h in histories)
    assert stormy.faults.count(method="POST", path=fees_path, status=429) == 5
    # The five fees refused with 429 were never made; every call made exactly one fee.
    assert len([r for r in stormy.state.requests
                if r["method"] == "POST" and r["path"] == fees_path]) == CALLS
    # Between storms the host kept within the partner bucket: the sandbox refused nothing.
    assert not [r for r in stormy.state.requests if r["status"] == 429]
