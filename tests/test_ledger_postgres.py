"""The ledger on PostgreSQL: the same API by URL, and the races SQLite's single
writer hides. Runs when CALLBRIDGE_TEST_POSTGRES_URL names an empty database that
may be wiped (for example postgresql+psycopg://user@127.0.0.1:5432/callbridge_test),
and skips otherwise."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import LeaseLost, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record

URL = os.environ.get("CALLBRIDGE_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="CALLBRIDGE_TEST_POSTGRES_URL is not set")

NUMBER = "+12125550177"
LOGGED = Outcome(status=OutcomeStatus.LOGGED, records=(Record(kind="log", id="1"),))


def sms(i: int = 1, body: str = "hello") -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": NUMBER}, "sent_at": "2026-03-02T10:00:00Z",
                        "body": body})


@pytest.fixture
def key() -> str:
    return Ledger.generate_key()


@pytest.fixture
def ledger(key: str) -> Iterator[Ledger]:
    engine = sa.create_engine(URL)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    led = Ledger(URL, secret_key=key)
    led.migrate()
    yield led
    led.close()


def at_once(n: int, fn: Callable[[int], None]) -> None:
    """Run ``fn(i)`` on ``n`` threads released together."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_migrate_twice_and_the_schema_matches_the_tables(ledger: Ledger) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from callbridge.ledger.tables import metadata

    ledger.migrate()
    with ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_duplicates_revisions_and_one_delivery_per_app(ledger: Ledger) -> None:
    first = ledger.store_event(sms(), apps=["crm"])
    again = ledger.store_event(sms(), apps=["crm", "clio"])
    revised = ledger.store_event(sms(body="more"), apps=["crm"])
    assert (first.status, again.status, revised.status) == ("new", "duplicate", "revision")
    assert sorted(v.app for v in ledger.history()) == ["clio", "crm"]


def test_the_same_new_event_stored_at_once_by_many_threads_is_stored_once(ledger: Ledger) -> None:
    results: list[str] = []
    at_once(8, lambda i: results.append(ledger.store_event(sms(), apps=["crm"]).status))
    assert sorted(results) == ["duplicate"] * 7 + ["new"]
    assert len(ledger.history()) == 1


def test_a_fenced_lease_passes_to_another_owner(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    now = datetime.now(UTC)
    (old,) = ledger.claim(owner="a", limit=1, lease_seconds=5, now=now)
    (new,) = ledger.claim(owner="b", limit=1, lease_seconds=5, now=now + timedelta(seconds=6))
    with pytest.raises(LeaseLost):
        ledger.finish(old, LOGGED)
    ledger.finish(new, LOGGED)
    assert ledger.history()[0].status == "logged"


def test_a_revision_during_a_log_asks_for_an_update(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.store_event(sms(body="more"), apps=["crm"])
    ledger.finish(claim, LOGGED)
    (update,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    assert update.needs_update and update.revision == 2
    ledger.finish(update, LOGGED)
    assert ledger.claim(owner="a", limit=1, lease_seconds=30) == []


def test_upserts_and_locks_hold_under_concurrent_first_writes(ledger: Ledger) -> None:
    at_once(8, lambda i: ledger.kv_set("acme", "crm", "k", str(i)))
    at_once(8, lambda i: ledger.token_set("acme", "crm", {"n": i}))
    winners: list[int] = []
    at_once(8, lambda i: winners.append(i) if ledger.try_lock("job", ttl=30) else None)
    assert ledger.kv_get("acme", "crm", "k") is not None and len(winners) == 1


def _claim_loop(url: str, key: str, owner: str, out: Any) -> None:
    ledger = Ledger(url, secret_key=key)
    got = []
    while claims := ledger.claim(owner=owner, limit=5, lease_seconds=60):
        for claim in claims:
            got.append(claim.delivery_id)
            ledger.finish(claim, LOGGED)
    out.put(got)


def test_two_processes_never_claim_the_same_delivery(ledger: Ledger, key: str) -> None:
    for i in range(200):
        ledger.store_event(sms(i), apps=["crm"])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_loop, args=(URL, key, f"p{i}", out)) for i in range(2)]
    for p in procs:
        p.start()
    claimed = [d for _ in procs for d in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    assert len(claimed) == 200 and len(set(claimed)) == 200
