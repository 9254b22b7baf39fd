"""The batch work unit: due deliveries of one connection go to ``log_batch`` together,
each keeping its own lease, records and outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callbridge.capabilities import Capability, Declaration
from callbridge.engine import Engine
from callbridge.errors import TransientError
from callbridge.events import parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import BatchResult, LogResult, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock


class Batching:
    def __init__(self, size: int) -> None:
        self.size = size
        self.batches: list[list[str]] = []
        self.single = 0
        self.written = 0

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="batching", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CALLS, Capability.BATCH_WRITES}),
                           without_contact=frozenset({"call"}), batch_size=self.size)

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        self.single += 1
        return LogResult(records=(Record(kind="log", id="single"),))

    @hookimpl
    async def log_batch(self, ctx: Any, kind: str, items: list[Any]) -> list[BatchResult]:
        assert ctx.delivery is None  # each item carries its own
        self.batches.append([item.event.id for item in items])
        out = []
        for item in items:
            if item.event.id == "c-bad":
                out.append(BatchResult(error=TransientError("the app refused this item for now")))
                continue
            self.written += 1

            async def create(n: int = self.written) -> str:
                return f"w{n}"
            record = await item.delivery.step("log", "log", create=create)
            out.append(BatchResult(ok=LogResult(records=(record,))))
        return out


async def run(tmp_path: Path, plugin: Batching, ids: list[str], clock: FakeClock) -> Ledger:
    registry = Registry()
    registry.add(plugin)
    settings = Settings.model_validate({"tenants": {"acme": {"apps": {"batching": {}}}}})
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry,
                    ledger=ledger, clock=clock)
    try:
        for i in ids:
            await engine.ingest(parse_event({
                "kind": "call", "id": i, "tenant": "acme", "direction": "inbound",
                "external": {"number": "anonymous"}, "started_at": "2026-01-05T14:00:00Z",
                "ended_at": "2026-01-05T14:01:00Z", "outcome": "missed"}))
        await engine.run_until_idle()
    finally:
        await engine.aclose()
    return ledger


@pytest.mark.usefixtures("secret_key")
async def test_five_due_deliveries_are_one_batch_each_with_its_own_outcome(tmp_path: Path) -> None:
    plugin = Batching(size=5)
    ids = ["c-1", "c-2", "c-bad", "c-4", "c-5"]
    ledger = await run(tmp_path, plugin, ids, FakeClock())  # the batch fills: no fill wait
    assert [sorted(b) for b in plugin.batches] == [sorted(ids)] and plugin.single == 0
    views = {v.source_id: v for v in ledger.history(limit=10)}
    assert {i: views[i].status for i in ids} == {**dict.fromkeys(ids, "logged"), "c-bad": "waiting"}
    assert views["c-bad"].reason == "backoff" and "refused this item" in (views["c-bad"].message or "")
    assert sorted(r.id for i in ids if i != "c-bad" for r in views[i].records) == \
        ["w1", "w2", "w3", "w4"]


@pytest.mark.usefixtures("secret_key")
async def test_a_batch_not_full_is_sent_after_its_fill_wait(tmp_path: Path) -> None:
    plugin = Batching(size=3)
    clock = FakeClock(autojump=True)
    ledger = await run(tmp_path, plugin, [f"c-{i}" for i in range(5)], clock)
    assert sorted(len(b) for b in plugin.batches) == [2, 3]
    assert {v.status for v in ledger.history(limit=10)} == {"logged"}
