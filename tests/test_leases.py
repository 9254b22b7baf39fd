"""Leases kept while deliveries run (callbridge.leases): renewed for long work, and
nothing left running once no delivery holds one."""

from __future__ import annotations

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
from callbridge.testing.clock import FakeClock


class Long:
    """Logs after ``minutes`` on the host's clock (a slow app, without sleeping for real)."""

    def __init__(self, minutes: float) -> None:
        self.minutes = minutes

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="long", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CALLS}),
                           without_contact=frozenset({"call"}))

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        await ctx.clock.sleep(self.minutes * 60)
        return LogResult(records=(Record(kind="log", id=event.id),))


class CountedRenewals(Ledger):
    renewals: list[tuple[int, float]]

    def renew(self, claim: Claim, lease_seconds: float) -> None:
        self.renewals.append((claim.delivery_id, lease_seconds))
        super().renew(claim, lease_seconds)


def _event(i: int) -> Any:
    return parse_event({
        "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
        "external": {"number": "anonymous"}, "started_at": "2026-03-02T15:00:00Z",
        "ended_at": "2026-03-02T15:01:00Z", "outcome": "missed"})


async def _run(tmp_path: Path, minutes: float, events: int) -> tuple[Engine, CountedRenewals]:
    registry = Registry()
    registry.add(Long(minutes))
    settings = Settings.model_validate({"ledger": {"lease_seconds": 60.0},
                                        "tenants": {"acme": {"apps": {"long": {}}}}})
    ledger = CountedRenewals(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.renewals = []
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry,
                    ledger=ledger, clock=FakeClock(autojump=True))
    try:
        await engine.ingest_many([_event(i) for i in range(events)])
        await engine.run_until_idle()
    finally:
        await engine.aclose()
    return engine, ledger


@pytest.mark.usefixtures("secret_key")
async def test_work_longer_than_its_lease_keeps_it_and_is_logged(tmp_path: Path) -> None:
    engine, ledger = await _run(tmp_path, minutes=5, events=2)
    assert ledger.counts() == {("long", "logged"): 2}
    per_delivery: dict[int, int] = {}
    for delivery_id, seconds in ledger.renewals:
        assert seconds == 60.0
        per_delivery[delivery_id] = per_delivery.get(delivery_id, 0) + 1
    # Five minutes of work under a 60 s lease: renewed every 15 to 22.5 s.
    assert len(per_delivery) == 2 and all(13 <= n <= 20 for n in per_delivery.values())
    assert engine.worker.leases.held == 0 and not engine.worker.leases.keeping


@pytest.mark.usefixtures("secret_key")
async def test_quick_work_renews_nothing_and_leaves_no_keeper(tmp_path: Path) -> None:
    engine, ledger = await _run(tmp_path, minutes=0, events=3)
    assert ledger.counts() == {("long", "logged"): 3}
    assert ledger.renewals == []
    assert engine.worker.leases.held == 0 and not engine.worker.leases.keeping
