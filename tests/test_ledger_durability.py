"""What the ledger has acknowledged survives the process being killed.

A child process stores an event (and says so once ``ingest`` has returned), then
works its delivery through a plugin that remembers its record (and says so once
``remember`` has returned) and then hangs, as if its app never answered. The test
kills the child with SIGKILL at that moment and opens the ledger afresh: the event
and the record are there. On a SQLite file the writes go through the group
commit (callbridge.ledger.hot); the same test without it guards the other path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from callbridge.ledger import Ledger

pytestmark = pytest.mark.slow

CHILD = r'''
import asyncio, json, sys
from typing import Any
from callbridge.capabilities import Capability, Connection, Declaration
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import AppUser, Contact, Matter, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource


class Hangs:
    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="hangs", version="1", hook_api_version="2.0", capabilities=frozenset({
            Capability.CALLS, Capability.CONTACT_SEARCH_PHONE, Capability.USERS}))

    @hookimpl
    def connection(self, options: Any) -> Connection:
        return Connection(base_url="http://hangs.invalid")

    @hookimpl
    async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
        return [Contact(id="1", phones=(party.e164,))]

    @hookimpl
    async def find_user(self, ctx: Any, email: Any, extension: Any) -> AppUser | None:
        return AppUser(id="u1")

    @hookimpl
    async def pick_default_user(self, ctx: Any) -> AppUser | None:
        return AppUser(id="u1")

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> Any:
        await ctx.delivery.remember(Record(kind="communication", id="app-77"))
        print("remembered", flush=True)
        await asyncio.Event().wait()  # the app never answers the rest


async def main() -> None:
    registry = Registry()
    registry.add(Hangs())
    settings = Settings.model_validate({"tenants": {"acme": {"apps": {"hangs": {}}}}})
    ledger = Ledger(sys.argv[1])
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry,
                    ledger=ledger)
    event = parse_event(json.dumps({
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+1 212 555 0101"}, "started_at": "2026-03-02T09:00:00+00:00",
        "ended_at": "2026-03-02T09:01:00+00:00", "outcome": "completed"}))
    stored = await engine.ingest(event)
    print("acknowledged", stored.event_pk, flush=True)
    await engine.run_until_idle()

asyncio.run(main())
'''


@pytest.mark.parametrize("group_commit", ["1", "0"])
def test_an_acknowledged_event_and_a_remembered_record_survive_sigkill(
        tmp_path: Path, key: str, group_commit: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {**os.environ, "CALLBRIDGE_SECRET_KEY": key,
           "CALLBRIDGE_LEDGER_GROUP_COMMIT": group_commit}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        acknowledged = child.stdout.readline().split()
        assert acknowledged[:1] == ["acknowledged"], child.stderr.read() if child.stderr else ""
        said = child.stdout.readline().strip()
        assert said == "remembered", child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    ledger = Ledger(url, secret_key=key)
    try:
        event = ledger.load_event(int(acknowledged[1]))
        assert event.id == "c-1"
        [view] = ledger.history()
        assert [(r.kind, r.id) for r in view.records] == [("communication", "app-77")]
        assert view.status == "pending"  # the attempt never finished: it is claimed again
    finally:
        ledger.close()
