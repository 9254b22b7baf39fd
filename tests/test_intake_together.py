"""Batches of events stored at the same time by different callers (the server's
requests) go to the ledger in one call; each caller gets its own results, and a batch
the ledger refuses fails its own caller only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.runtime import load

from tests.conftest import Notebook, write_config


def sms(i: int) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


@pytest.fixture
async def engine(tmp_path: Path, notebook: Notebook, secret_key: str) -> AsyncIterator[Engine]:
    made = load(write_config(tmp_path / "callbridge.toml", notebook.url)).engine()
    yield made
    await made.aclose()


def watch(engine: Engine, monkeypatch: pytest.MonkeyPatch,
          refuse: Callable[[list[Any]], bool] = lambda events: False) -> list[list[str]]:
    """The event ids of each call storing events; calls ``refuse`` says yes to fail."""
    calls: list[list[str]] = []
    real = engine.db

    async def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "store_events":
            events = [event for event, _ in args[0]]
            calls.append([event.id for event in events])
            if refuse(events):
                raise RuntimeError("the ledger refused it")
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(engine, "db", db)
    return calls


async def test_batches_stored_at_the_same_time_go_to_the_ledger_in_one_call(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = watch(engine, monkeypatch)
    results = await asyncio.gather(*(engine.ingest_many([sms(i), sms(i + 10)]) for i in range(5)))
    assert calls == [[f"s-{n}" for i in range(5) for n in (i, i + 10)]]
    for i, stored in enumerate(results):  # each caller its own events' results
        assert [s.status for s in stored] == ["new", "new"]
        assert [s.event.id for s in stored if s.event] == [f"s-{i}", f"s-{i + 10}"]
    again = await engine.ingest_many([sms(3)])
    assert again[0].status == "duplicate" and again[0].event_pk == results[3][0].event_pk


async def test_a_batch_the_ledger_refuses_fails_its_own_caller_only(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = watch(engine, monkeypatch, refuse=lambda events: any(e.id == "s-2" for e in events))
    first, second, third = await asyncio.gather(
        engine.ingest_many([sms(1)]), engine.ingest_many([sms(2)]), engine.ingest_many([sms(3)]),
        return_exceptions=True)
    assert isinstance(second, RuntimeError)
    assert isinstance(first, list) and isinstance(third, list)
    assert [first[0].status, third[0].status] == ["new", "new"]
    assert calls == [["s-1", "s-2", "s-3"], ["s-1"], ["s-2"], ["s-3"]]  # then each alone
    assert engine.ledger.find_event("acme", "default", "sms", "s-2") is None
