"""The intake: only a final revision makes deliveries, whatever order the revisions
of a call arrive in; exactly one automatic log."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from callbridge.capabilities import Capability, Declaration
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import LogResult, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock


class Counting:
    def __init__(self) -> None:
        self.logged: list[Any] = []

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="counting", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CALLS}),
                           without_contact=frozenset({"call"}))

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        self.logged.append(event)
        return LogResult(records=(Record(kind="log", id=str(len(self.logged))),))


BASE = {"kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "anonymous"}, "started_at": "2026-01-05T14:00:00Z"}
RINGING = {**BASE, "state": "ringing", "sequence": 1}
IN_PROGRESS = {**BASE, "state": "in_progress", "sequence": 2, "answered_at": "2026-01-05T14:00:09Z"}
ENDED = {**BASE, "state": "ended", "sequence": 3, "answered_at": "2026-01-05T14:00:09Z",
         "ended_at": "2026-01-05T14:04:00Z", "outcome": "completed"}


@pytest.mark.usefixtures("secret_key")
@pytest.mark.parametrize("order", list(permutations([RINGING, IN_PROGRESS, ENDED])),
                         ids=lambda o: "-".join(e["state"] for e in o))
async def test_a_call_logs_once_when_it_has_ended_whatever_order_its_revisions_arrive_in(
        tmp_path: Path, order: tuple[dict[str, Any], ...]) -> None:
    plugin = Counting()
    registry = Registry()
    registry.add(plugin)
    settings = Settings.model_validate({"tenants": {"acme": {"apps": {"counting": {}}}}})
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry,
                    ledger=ledger, clock=FakeClock())
    try:
        seen_final = False
        for revision in order:
            await engine.ingest(parse_event(revision))
            await engine.run_until_idle()
            seen_final = seen_final or revision["state"] == "ended"
            # Nothing is logged before the ended revision has arrived.
            assert len(plugin.logged) == (1 if seen_final else 0)
    finally:
        await engine.aclose()
    [view] = ledger.history(limit=10)
    assert view.status == "logged" and view.attempts == 1
    assert plugin.logged[0].outcome is not None  # the ended copy was logged
