"""The engine's leases: work stops before its lease can lapse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from callbridge.capabilities import Capability, Declaration
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Claim, Ledger
from callbridge.models import LogResult, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource


class Slow:
    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="slow", version="1", hook_api_version="1.0",
                           capabilities=frozenset({Capability.CALLS, Capability.LOG_WITHOUT_CONTACT}))

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        self.started += 1
        await asyncio.sleep(3)
        self.finished += 1
        return LogResult(records=(Record(kind="log", id="1"),))


class StuckRenewals(Ledger):
    def renew(self, claim: Claim, lease_seconds: float) -> None:
        time.sleep(5)  # the database is too busy to confirm the lease in time


@pytest.mark.usefixtures("secret_key")
async def test_work_stops_when_its_lease_cannot_be_renewed_in_time(tmp_path: Path) -> None:
    plugin = Slow()
    registry = Registry()
    registry.add(plugin)
    settings = Settings.model_validate({"ledger": {"lease_seconds": 1.0},
                                        "tenants": {"acme": {"apps": {"slow": {}}}}})
    ledger = StuckRenewals(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry, ledger=ledger)
    try:
        stored = await engine.ingest(parse_event({
            "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
            "external": {"number": "anonymous"}, "started_at": "2026-03-02T15:00:00Z",
            "ended_at": "2026-03-02T15:01:00Z", "outcome": "missed"}))
        await engine.run_until_idle()
    finally:
        await engine.aclose()
    view = ledger.find_delivery("acme", "slow", stored.event_pk)
    assert plugin.started == 1 and plugin.finished == 0
    assert view is not None and view.status == "pending" and view.attempts == 0
