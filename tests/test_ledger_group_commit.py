"""Group commit on a SQLite file (callbridge.ledger.hot): the writes that reach the
ledger in the same turn of the event loop are committed together, each caller
resumes with its own result, one failing write is rolled back alone, and a
database locked by another writer sends the group to the writer thread, which
waits for the lock instead of the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import LeaseLost, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record


def sms(i: int) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


@pytest.fixture
def led(tmp_path: Path, key: str) -> Any:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=key)
    ledger.migrate()
    assert ledger._hot is not None
    yield ledger
    ledger.close()


def test_writes_of_one_turn_commit_together_and_a_failing_one_alone_is_undone(led: Any) -> None:
    for i in range(3):
        led.store_event(sms(i), apps=["crm"])
    a, b, c = led.claim(owner="w", limit=3, lease_seconds=60)
    stale = dataclasses.replace(b, fence=b.fence - 1)  # a lease another worker has since taken
    writer = led._hot
    before = writer.groups

    async def together() -> list[Any]:
        gw = led.gateway
        return await asyncio.gather(
            gw.run(led.finish, a, Outcome(status=OutcomeStatus.LOGGED,
                                          records=(Record(kind="log", id="1"),))),
            gw.run(led.remember, stale, Record(kind="log", id="2")),
            gw.run(led.remember, c, Record(kind="log", id="3")),
            return_exceptions=True)

    first, second, third = asyncio.run(together())
    assert first is None and third is None
    assert isinstance(second, LeaseLost)
    assert writer.groups == before + 1  # one transaction, one commit for the three
    views = {v.delivery_id: v for v in led.history()}
    assert views[a.delivery_id].status == "logged"
    assert [r.id for r in views[a.delivery_id].records] == ["1"]
    assert views[b.delivery_id].records == ()  # the stale write left nothing behind
    assert [r.id for r in views[c.delivery_id].records] == ["3"]


def test_a_database_locked_by_another_writer_is_waited_for_off_the_event_loop(
        led: Any, tmp_path: Path) -> None:
    led.store_event(sms(1), apps=["crm"])
    (claim,) = led.claim(owner="w", limit=1, lease_seconds=60)
    other = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock

    async def scenario() -> None:
        write = asyncio.ensure_future(led.gateway.run(led.remember, claim,
                                                      Record(kind="log", id="9")))
        for _ in range(100):  # the loop keeps turning: the write did not block it
            await asyncio.sleep(0)
            if led._hot.handed_over:
                break
        assert led._hot.handed_over == 1
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    [view] = led.history()
    assert [r.id for r in view.records] == ["9"]


_SECRET_COLUMNS = {"source_id", "source_id_enc", "content_hash", "party_hash", "content_enc",
                   "notes_enc", "candidates_enc"}


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the hot tables as the file holds it, keyed columns (each ledger's own
    key) left out."""
    db = sqlite3.connect(path)
    try:
        out = {}
        for table in ("events", "deliveries", "records", "steps", "attempts"):
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")
                       if c[1] not in _SECRET_COLUMNS]
            out[table] = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2").fetchall()
        return out
    finally:
        db.close()


def _work(ledger: Any) -> None:
    from callbridge.ledger import DuplicateRecord

    for i in range(3):
        ledger.store_event(sms(i), apps=["crm", "books"])
    ledger.store_event(sms(1), apps=["crm", "books"])  # a duplicate
    claims = ledger.claim(owner="w", limit=6, lease_seconds=60)
    first, second, third = claims[:3]
    ledger.begin_step(first, "communication", "log")
    ledger.remember(first, Record(kind="communication", id="c1", step="log"))
    with pytest.raises(DuplicateRecord):
        ledger.remember(first, Record(kind="communication", id="c2", step="log"))
    ledger.finish(first, Outcome(status=OutcomeStatus.LOGGED,
                                 records=(Record(kind="communication", id="c1", step="log"),
                                          Record(kind="note", id="n1", step="note"))))
    ledger.finish(second, Outcome(status=OutcomeStatus.WAITING, reason="rate_limit",
                                  next_attempt_at=ledger.clock.now()))
    ledger.finish(third, Outcome(status=OutcomeStatus.FAILED, reason="bad_request",
                                 message="the app refused it"))
    ledger.claim(owner="w2", limit=6, lease_seconds=60)


def test_group_commit_writes_the_rows_the_sqlalchemy_path_writes(
        tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same work through both paths leaves the same rows: the same values, times in
    the same text, so either path reads what the other wrote."""
    from callbridge.testing.clock import FakeClock

    kept = {}
    for name, group_commit in (("hot", "1"), ("plain", "0")):
        monkeypatch.setenv("CALLBRIDGE_LEDGER_GROUP_COMMIT", group_commit)
        path = tmp_path / f"{name}.db"
        ledger = Ledger(f"sqlite:///{path}", secret_key=key, clock=FakeClock())
        try:
            ledger.migrate()
            assert (ledger._hot is not None) == (group_commit == "1")
            _work(ledger)
        finally:
            ledger.close()
        kept[name] = _rows(path)
    for table in kept["hot"]:
        assert kept["hot"][table] == kept["plain"][table], table
    assert len(kept["hot"]["attempts"]) == 3


def test_the_write_ahead_log_is_copied_back_and_stays_bounded(tmp_path: Path) -> None:
    """An intake-only server commits every group on the event loop's connection, which
    never checkpoints: without the writer thread's checkpoints the WAL grows for ever."""
    import threading

    from callbridge.ledger import hot

    path = str(tmp_path / "wal.db")
    writer = hot.GroupWriter(path, threading.Lock())
    writer.run(lambda cur: cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)"))
    body = bytes(4096)
    written = 12_000  # about 48 MiB of rows, 3x what the WAL may reach

    async def fill() -> None:
        for _ in range(written // 40):  # groups of 40 writes, each committed on the loop
            await writer.write_many([
                lambda cur: cur.execute("INSERT INTO t (body) VALUES (?)", (body,))
                for _ in range(40)])

    try:
        asyncio.run(fill())
        writer.run(lambda cur: None)  # the thread has run what was queued before this
        assert writer.checkpoints > 0
        assert (tmp_path / "wal.db-wal").stat().st_size <= hot.WAL_LIMIT_BYTES
        count = writer.run(lambda cur: cur.execute("SELECT count(*) FROM t").fetchone()[0])
        assert count == written
    finally:
        writer.close()
    with sqlite3.connect(path) as conn:  # and it is all in the database
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == written
