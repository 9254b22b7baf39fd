"""Two OS processes on one ledger, SQLite and PostgreSQL, against one Clio sandbox on
loopback: each runs ``callbridge ingest`` with the same settings, and both start
working at the same moment. They never create two contacts for one number, two
Faxes folders for one matter, or two activity descriptions.

Each process reads its events from a named pipe: it opens the pipe (and waits there)
once it has loaded its settings. When both are waiting, the first process gets its
events; the second gets its own as soon as the first has claimed its deliveries (its
first request of a delivery reaches the sandbox), so each works its own deliveries
(a process works any due delivery, and one that stored first could otherwise take
them all) and their work overlaps. Before they start, the phone index is synced, as a
running server keeps it: on PostgreSQL the two processes share Clio's 50 requests a
minute, and a delivery that finds its contact in the index spends no live search, so
their requests stay well within the minute whichever process goes first. The sandbox takes
``SLOW_CREATE`` seconds before it makes a contact, a folder or an activity
description, so whatever keeps the second process from making another must hold
for that long: without a lock across processes, both would make one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.testing.postgres import ledger_url, postgres_server  # noqa: F401
from callbridge_clio.sandbox import SandboxState, create_app

from plugins.clio.tests.samples import made_folders

NUMBER = "+1 212 555 0177"  # nobody's in the sandbox
KNOWN = "(212) 555-0142"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
#: How long the sandbox takes before it makes a record only one of may exist: longer than
#: the two processes can drift apart, so their creations overlap unless kept apart.
SLOW_CREATE = 1.0
SLOW_PATHS = {"/api/v4/contacts.json", "/api/v4/folders.json", "/api/v4/activity_descriptions.json"}
#: How long each process waits for deliveries that wait: longer than Clio's one-minute
#: window, so a process that must wait for room in it logs them rather than leaving them
#: queued (the two processes share the window on PostgreSQL).
WAIT_MAX = 90
#: A process that has not finished by then has hung (each takes a few seconds).
TIMEOUT = 180.0

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (POSIX)")


@dataclass
class Firm:
    state: SandboxState
    faults: Any
    config: Path
    ledger_url: str
    key: str
    tmp: Path
    working: threading.Event  # a delivery's request reached the sandbox

    def race(self, *batches: list[dict[str, Any]]) -> None:
        """One ``callbridge ingest`` process per batch, the second released as soon as
        the first is working; every one must end with exit code 0, nothing left queued."""
        asyncio.run(self.sync_index())
        procs, pipes = [], []
        for i, events in enumerate(batches):
            pipe = self.tmp / f"events-{i}.jsonl"
            os.mkfifo(pipe)
            pipes.append((pipe, "".join(json.dumps(e) + "\n" for e in events)))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "callbridge", "ingest", str(pipe), "--config",
                 str(self.config), "--json", "--wait-max", str(WAIT_MAX)],
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

    async def sync_index(self) -> None:
        """The phone index of the firm's contacts, synced as a running server keeps it."""
        engine = load(self.config, strict=True).engine()
        try:
            await engine.scheduler.sync_indexes(tenants=["acme"])
        finally:
            await engine.aclose()

    def statuses(self) -> list[str]:
        ledger = Ledger(self.ledger_url, secret_key=self.key)
        try:
            return [v.status for v in ledger.history(limit=100)]
        finally:
            ledger.close()


def watched(app: Any, working: threading.Event) -> Any:
    """``app``, taking ``SLOW_CREATE`` seconds before it handles a create of ``SLOW_PATHS``;
    ``working`` is set by the first request other than the phone index's sync (reads of
    contacts without a ``query``), which only a claimed delivery makes."""
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not (scope["path"] == "/api/v4/contacts.json" and scope["method"] == "GET"
                    and b"query=" not in scope["query_string"]):
                working.set()
            if scope["method"] == "POST" and scope["path"] in SLOW_PATHS:
                await asyncio.sleep(SLOW_CREATE)
        await app(scope, receive, send)
    return slow


@pytest.fixture
def firm(ledger_url: str, tmp_path: Path,  # noqa: F811
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Firm]:
    # The sandbox enforces no limit; the host keeps Clio's own (each process its own on
    # SQLite, the two together on PostgreSQL: see Firm.race).
    state = SandboxState(rate_limit=None)
    state.add_user("Ann Lee", "ann@acme.example", authorised=True)
    faults = create_app(state)
    key = Ledger.generate_key()
    working = threading.Event()
    with serve_in_thread(watched(faults, working)) as url, serve_in_thread(faults) as storage:
        state.host, state.storage_host = url, storage
        for name, value in {"CALLBRIDGE_SECRET_KEY": key, "CALLBRIDGE_PLUGINS": "clio",
                            "ACME_CLIO_CLIENT_ID": state.client_id,
                            "ACME_CLIO_CLIENT_SECRET": state.client_secret}.items():
            monkeypatch.setenv(name, value)
        config = tmp_path / "callbridge.toml"
        config.write_text(textwrap.dedent(f"""
        [ledger]
        url = "{ledger_url}"

        [tenants.acme]
        default_region = "US"
        extensions = {{ "101" = "ann@acme.example" }}

        [tenants.acme.apps.clio]
        credentials_env = "ACME_CLIO"
        contact_creation = "all"

        [tenants.acme.apps.clio.options]
        api_base_url = "{url}/api/v4"
        """))
        ledger = Ledger(ledger_url, secret_key=key)
        ledger.migrate()
        ledger.token_set("acme", "clio", state.issue_token())
        ledger.close()
        yield Firm(state, faults, config, ledger_url, key, tmp_path, working)


def call(event_id: str, number: str, minute: int) -> dict[str, Any]:
    began = START + timedelta(minutes=minute)
    return {"kind": "call", "id": event_id, "tenant": "acme", "direction": "inbound",
            "external": {"number": number}, "internal": {"extension": "101"},
            "started_at": began.isoformat(), "answered_at": (began + timedelta(seconds=5)).isoformat(),
            "ended_at": (began + timedelta(minutes=3)).isoformat(), "outcome": "completed"}


def fax(event_id: str, number: str, minute: int) -> dict[str, Any]:
    return {"kind": "fax", "id": event_id, "tenant": "acme", "direction": "inbound",
            "external": {"number": number}, "page_count": 1,
            "sent_at": (START + timedelta(minutes=minute)).isoformat(),
            "document": {"content": "JVBERi0xLjQKJSBmYXg=", "content_type": "application/pdf"}}


def contacts_logged_to(state: SandboxState) -> set[int]:
    return {p["id"] for c in state.communications.values()
            for p in c.get("senders", []) + c.get("receivers", []) if p.get("type") == "Contact"}


def test_two_processes_create_one_contact_for_one_unknown_number(firm: Firm) -> None:
    firm.race([call("a-0", NUMBER, 0), call("a-1", NUMBER, 10)],
              [call("b-0", NUMBER, 5), call("b-1", NUMBER, 15)])
    state = firm.state
    assert len(state.contacts) == 1, [c["name"] for c in state.contacts.values()]
    assert contacts_logged_to(state) == set(state.contacts)
    assert len(state.communications) == 4 and len(state.activities) == 4  # each logged once
    assert len(state.activity_descriptions) == 1
    assert firm.statuses() == ["logged"] * 4


def test_two_processes_filing_faxes_for_one_matter_make_one_faxes_folder(firm: Firm) -> None:
    state = firm.state
    dana = state.add_contact("Dana", "Whitfield", [KNOWN])
    matter = state.add_matter(dana, "Lease dispute")
    firm.race([fax("fa-0", KNOWN, 0), fax("fa-1", KNOWN, 10)],
              [fax("fb-0", KNOWN, 5), fax("fb-1", KNOWN, 15)])
    (folder_id, folder), = made_folders(state).items()
    assert folder["name"] == "Faxes"
    assert folder["parent"]["id"] == state.matters[matter]["folder"]["id"]
    assert len(state.documents) == 4
    assert {d["parent"]["id"] for d in state.documents.values()} == {folder_id}
    assert len(state.contacts) == 1 and firm.statuses() == ["logged"] * 4


def test_two_processes_ensure_one_activity_description(firm: Firm) -> None:
    state = firm.state
    state.add_contact("Dana", "Whitfield", [KNOWN])
    firm.race([call("ca-0", KNOWN, 0)], [call("cb-0", KNOWN, 5)])
    (description,) = state.activity_descriptions.values()
    assert {a["activity_description"]["id"] for a in state.activities.values()} == {description["id"]}
    assert len(state.activities) == 2 and firm.statuses() == ["logged"] * 2
