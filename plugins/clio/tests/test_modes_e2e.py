"""The logging modes end to end over `callbridge serve`'s app on loopback: a day of calls
sent by a phone system (signed webhooks), notes added during calls and cancelled
before and after their end, manual logs and their refusals, an unresolved call
resolved by hand, contacts created in the Clio sandbox between a call and the digest,
two digests and an overlapping pair; every call's outcome in Clio checked against the
expected table. Time is a FakeClock shared by the host and the sandbox; the worker
and the digest run as the scheduler runs them, at the times the test sets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from callbridge.engine import Engine
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.modes.digest import run_digest
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash
from callbridge.serve.server import bind
from callbridge.sources.native import sign
from callbridge.testing.clock import BusyTransport, FakeClock
from callbridge_notebook.server import NotebookState
from callbridge_notebook.server import create_app as notebook_app

from plugins.clio.tests.conftest import write_config

TOKEN = "cbo_modes-e2e-operator-token-0123456789ab"
KEY = "source-signing-key-for-the-modes-day"
EXTRA = f"""
[modes]
notes_grace_seconds = 20

[operators.desk]
token_sha256 = "{token_hash(TOKEN)}"
tenants = ["acme"]

[tenants.acme.sources.default]
secret_env = "ACME_SOURCE_KEY"
"""
NUMBERS = {"dana": "2125550142", "lee": "2125550150", "sam": "+1 646 555 0111",
           "uma": "2125550171", "nia": "2125550181", "zed": "2125550182"}


class Day:
    def __init__(self, client: httpx2.AsyncClient, engine: Engine, clock: FakeClock,
                 sandbox: Any, notebook: NotebookState) -> None:
        self.client, self.engine, self.clock, self.sandbox = client, engine, clock, sandbox
        self.notebook = notebook
        self.start = clock.now()

    def call(self, cid: str, who: str, *, ended: bool, **over: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": "call", "id": cid, "direction": "inbound",
                                "external": {"number": NUMBERS[who]},
                                "internal": {"extension": "101"},
                                "started_at": self.start.isoformat(), **over}
        if ended:
            data.update(state="ended", answered_at=(self.start + timedelta(seconds=5)).isoformat(),
                        ended_at=(self.start + timedelta(minutes=3)).isoformat(),
                        outcome="completed", sequence=3)
        else:
            data.update(state="in_progress", sequence=2)
        return data

    async def send(self, *events: dict[str, Any]) -> None:
        body = json.dumps(list(events)).encode()
        stamp = int(self.clock.now().timestamp())
        answer = await self.client.post("/v1/sources/acme/default", content=body, headers={
            "Callbridge-Signature": sign(body, KEY, stamp), "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text

    async def api(self, method: str, path: str, body: Any = None) -> httpx2.Response:
        return await self.client.request(method, f"/v1/events/{path}", json=body,
                                         headers={"Authorization": f"Bearer {TOKEN}"})

    async def work(self) -> None:
        """What the scheduler does when it wakes: every due delivery."""
        await self.engine.run_until_idle()

    def at(self, seconds: float) -> None:
        self.clock.advance((self.start + timedelta(seconds=seconds) - self.clock.now())
                           .total_seconds())

    def outcome(self, cid: str, app: str = "clio") -> tuple[str, str | None, str] | None:
        pk = self.engine.ledger.find_event("acme", "default", "call", cid)
        view = self.engine.ledger.find_delivery("acme", app, pk) if pk else None
        return None if view is None else (view.status, view.reason, view.mode)


@pytest.fixture
async def day(tmp_path: Path, sandbox: Any, firm: dict[str, int],
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Day]:
    for name, value in (("CALLBRIDGE_SECRET_KEY", Ledger.generate_key()),
                        ("ACME_CLIO_CLIENT_ID", sandbox.state.client_id),
                        ("ACME_CLIO_CLIENT_SECRET", sandbox.state.client_secret),
                        ("CALLBRIDGE_PLUGINS", "clio,notebook"), ("ACME_SOURCE_KEY", KEY)):
        monkeypatch.setenv(name, value)
    clock = FakeClock(autojump=True)
    sandbox.state.clock = clock
    notebook = NotebookState(clock=clock)
    notebook.add_contact("Dana Whitfield", ["+1 212 555 0142"])
    stack = ExitStack()
    notebook_url = stack.enter_context(serve_in_thread(notebook_app(notebook)))
    path = write_config(tmp_path / "callbridge.toml", sandbox.url,
                        app="exclusive_contact_association = true")
    path.write_text(path.read_text() + EXTRA + f"""
[tenants.acme.apps.crm]
plugin = "notebook"
[tenants.acme.apps.crm.options]
base_url = "{notebook_url}"
""")
    runtime = load(path, strict=True)
    engine = runtime.engine(clock=clock, transports={
        name: BusyTransport(httpx2.AsyncHTTPTransport(), clock) for name in ("clio", "notebook")})
    engine.ledger.token_set("acme", "clio", sandbox.state.issue_token())
    state = make_state(runtime, engine=engine, clock=clock, worker=False)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(state), lifespan="on", log_level="warning",
                                           access_log=False))
    # The socket listens already: requests wait in its backlog until the server is up.
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        yield Day(client, engine, clock, sandbox, notebook)
    server.should_exit = True
    await task
    await engine.aclose()
    stack.close()


@pytest.mark.slow
async def test_a_day_of_logging_modes_over_serve(day: Day, firm: dict[str, int]) -> None:
    st = day.sandbox.state
    uma_one = st.add_contact("Uma", "One", ["212-555-0171"])
    uma_two = st.add_contact("Uma", "Two", ["(212) 555-0171"])

    assert await day.engine.scheduler.digests() == 0  # the digest's first run: an hour on
    # 15:00 — three calls in progress; notes on each; one cancelled before the end.
    await day.send(day.call("kept", "dana", ended=False), day.call("before", "lee", ended=False),
                   day.call("after", "sam", ended=False), day.call("live", "dana", ended=False))
    for cid, who in (("kept", "dana"), ("before", "lee"), ("after", "sam")):
        added = await day.api("POST", f"{cid}/notes", {
            "apps": {"clio": [str(firm[who])]}, "text": f"Notes on {cid}: settlement figures",
            "started_at": day.clock.now().isoformat()})
        assert added.status_code == 200 and added.json()["apps"] == {"clio": "delayed"}
    assert (await day.api("DELETE", "before/notes")).status_code == 200
    refused = await day.api("POST", "live/log", {"app": "clio"})
    assert refused.status_code == 409 and "not ended" in refused.json()["error"]["problem"]

    # 15:03 — they end; more calls arrive ended.
    day.at(180)
    await day.send(*(day.call(c, w, ended=True) for c, w in (
        ("kept", "dana"), ("before", "lee"), ("after", "sam"), ("auto", "dana"),
        ("unresolved", "uma"), ("found", "nia"), ("nobody", "zed"))))
    await day.work()
    assert day.outcome("before") == ("pending", None, "auto")  # the grace period for notes
    assert day.outcome("after") == ("waiting", "delay", "delayed")
    assert (await day.api("DELETE", "after/notes")).json()["changed"] == 1  # after the end
    day.at(201)
    await day.work()
    assert day.outcome("before") == ("logged", None, "auto")

    # 15:04:30 (Clio's 50 requests a minute have room again) — a user resolves the
    # unresolved call, and is refused what cannot be done.
    day.at(270)
    bad = await day.api("POST", "unresolved/contact", {"app": "clio", "contact": "999999"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "contact"
    chosen = await day.api("POST", "unresolved/contact", {"app": "clio", "contact": str(uma_two)})
    assert chosen.status_code == 200 and chosen.json()["status"] == "logged", chosen.json()
    for path in ("auto/log", "unresolved/log"):
        twice = await day.api("POST", path, {"app": "clio"})
        assert twice.status_code == 409 and "already logged" in twice.json()["error"]["problem"]
    late = await day.api("POST", "auto/notes", {"apps": ["clio"], "text": "Called back",
                                               "started_at": day.clock.now().isoformat()})
    assert late.json()["apps"] == {"clio": "late_detail"}

    # 15:09 — the delayed logs fall due, five minutes after the end.
    day.at(6 * 60 - 1)
    await day.work()
    assert day.outcome("kept") == ("waiting", "delay", "delayed")
    day.at(9 * 60)
    await day.work()

    # Nia becomes a contact in Clio; at 16:00 the scheduler's digest matches the skipped
    # calls again; a digest by hand, then an overlapping pair.
    st.add_contact("Nia", "Cole", ["212 555 0181"])
    day.at(60 * 60)
    assert await day.engine.scheduler.digests() == 1
    await day.work()
    assert day.outcome("found") == ("logged", None, "digest")
    assert day.outcome("nobody") == ("skipped", "no_contact", "digest")
    first = await run_digest(day.engine, "acme", day.clock.now(), work=True)
    assert (len(first.requeued), dict(first.after)) == (1, {"skipped": 1})
    second = await run_digest(day.engine, "acme", day.clock.now(), work=True)
    assert len(second.requeued) == 1 and second.left["logged"] == 6 + 7  # Clio's and crm's
    pair = await asyncio.gather(*(run_digest(day.engine, "acme", day.clock.now(), work=True)
                                  for _ in range(2)))
    assert sorted(r.ran for r in pair) == [False, True]

    expected = {
        "kept": ("logged", None, "delayed"), "before": ("logged", None, "auto"),
        "after": ("logged", None, "delayed"), "auto": ("logged", None, "auto"),
        "unresolved": ("logged", None, "manual"), "found": ("logged", None, "digest"),
        "nobody": ("skipped", "no_contact", "digest"), "live": None}
    assert {cid: day.outcome(cid) for cid in expected} == expected
    # The notebook app: not named by any notes, so everything ended logged automatically.
    automatic = ("logged", None, "auto")
    assert {cid: day.outcome(cid, "crm") for cid in expected} == {
        cid: None if cid == "live" else automatic for cid in expected}
    assert len(day.notebook.logs) == 7  # once each
    comms = list(st.communications.values())
    assert len(comms) == 6  # one per logged call: never twice
    kept = [c for c in comms if "Notes on kept" in c["body"]]
    assert len(kept) == 1 and kept[0]["senders"] == [{"id": firm["dana"], "type": "Contact"}]
    assert not any("Notes on after" in c["body"] or "Notes on before" in c["body"] for c in comms)
    assert sum(c["senders"] == [{"id": uma_two, "type": "Contact"}] for c in comms) == 1
    assert not any(c["senders"] == [{"id": uma_one, "type": "Contact"}] for c in comms)
    assert any(c["subject"].endswith("from Uma Two (+1 212-555-0171)") for c in comms)
