"""Stopping gracefully: once stopped, the worker claims nothing more; a delivery stopped
mid-work gives its lease back, so it is due again at once (not after the lease)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.runtime import load

from tests.conftest import Notebook, write_config


def sms(i: int) -> object:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+1 212 555 0142"}, "body": "hello",
                        "sent_at": "2026-03-02T09:00:00+00:00"})


@pytest.fixture
async def engine(tmp_path: Path, notebook: Notebook, secret_key: str) -> AsyncIterator[Engine]:
    engine = load(write_config(tmp_path / "callbridge.toml", notebook.url)).engine()
    yield engine
    await engine.aclose()


async def test_once_stopped_the_worker_claims_nothing_more(engine: Engine) -> None:
    for i in range(3):
        await engine.ingest(sms(i))  # type: ignore[arg-type]
    stop = asyncio.Event()
    stop.set()
    assert await engine.worker.run_until_idle(stop=stop) == 0
    assert [v.status for v in engine.ledger.history()] == ["pending"] * 3
    assert await engine.worker.run_until_idle() == 3  # not stopped: all worked


async def test_a_delivery_stopped_mid_work_gives_its_lease_back(engine: Engine) -> None:
    await engine.ingest(sms(1))  # type: ignore[arg-type]
    (claim,) = engine.ledger.claim(owner=engine.owner, limit=1, lease_seconds=60)
    assert engine.ledger.claim(owner="another", limit=1, lease_seconds=60) == []  # leased
    work = asyncio.create_task(engine.worker.work(claim))
    await asyncio.sleep(0)  # it has started
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    (again,) = engine.ledger.claim(owner="another", limit=1, lease_seconds=60)
    assert again.delivery_id == claim.delivery_id and again.fence > claim.fence


@pytest.mark.parametrize("worker", [True, False])
async def test_the_lifespan_runs_the_worker_unless_intake_only(
        tmp_path: Path, notebook: Notebook, secret_key: str, worker: bool) -> None:
    from callbridge.serve.app import lifespan, make_state

    state = make_state(load(write_config(tmp_path / "callbridge.toml", notebook.url)),
                       worker=worker)
    async with lifespan(state):
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "callbridge-settings" in names
        assert ("callbridge-worker" in names) is worker
        assert not state.extra.get("stopping")
    assert state.extra["stopping"] is True and state.extra["stop"].is_set()
    names = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    assert not names & {"callbridge-settings", "callbridge-worker"}
