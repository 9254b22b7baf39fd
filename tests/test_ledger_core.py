"""The ledger on a real database: SQLite and PostgreSQL (``ledger_url``)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callbridge.errors import ConfigError
from callbridge.events import parse_event
from callbridge.ledger import ContentErased, LeaseLost, Ledger
from callbridge.models import Contact, Outcome, OutcomeStatus, Record

from tests.conftest import stored_bytes

NUMBER = "+12125550177"
TEXT = "sentinel-text-4471 about the settlement"


def sms(i: int = 1, body: str = TEXT, **over: Any) -> Any:
    data = {"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
            "external": {"number": NUMBER}, "sent_at": "2026-03-02T10:00:00Z", "body": body}
    data.update(over)
    return parse_event(data)


LOGGED = Outcome(status=OutcomeStatus.LOGGED, records=(Record(kind="log", id="1"),))


def test_migrate_works_on_a_fresh_file_and_twice(ledger: Ledger) -> None:
    ledger.migrate()
    assert ledger.counts() == {}


def test_the_migrated_schema_matches_the_tables(ledger: Ledger) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from callbridge.ledger.tables import metadata
    def made_here(obj: Any, name: Any, kind: str, reflected: bool, compare_to: Any) -> bool:
        # An index made on some databases only (``info["dialects"]``) is left out elsewhere.
        dialects = getattr(obj, "info", {}).get("dialects")
        return dialects is None or ledger.engine.dialect.name in dialects

    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"include_object": made_here}), metadata)
    assert diff == []


def test_a_missing_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLBRIDGE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"CALLBRIDGE_SECRET_KEY is not set.*callbridge keygen"):
        Ledger(f"sqlite:///{tmp_path / 'x.db'}")


def test_same_payload_is_a_duplicate_and_richer_one_a_revision(ledger: Ledger) -> None:
    first = ledger.store_event(sms(), apps=["crm"])
    again = ledger.store_event(sms(), apps=["crm"])
    richer = ledger.store_event(sms(body=TEXT + " (edited)"), apps=["crm"])
    assert (first.status, again.status, richer.status) == ("new", "duplicate", "revision")
    assert first.event_pk == again.event_pk == richer.event_pk and richer.revision == 2
    assert ledger.load_event(first.event_pk).body.endswith("(edited)")  # type: ignore[union-attr]


def test_one_delivery_per_tenant_app_and_event(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm", "clio"])
    ledger.store_event(sms(), apps=["crm", "clio", "hubspot"])
    assert sorted(v.app for v in ledger.history()) == ["clio", "crm", "hubspot"]


def test_a_revision_of_a_logged_event_asks_for_an_update(ledger: Ledger) -> None:
    stored = ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=10, lease_seconds=30)
    ledger.finish(claim, LOGGED)
    assert ledger.claim(owner="a", limit=10, lease_seconds=30) == []
    ledger.store_event(sms(body="more"), apps=["crm"])
    (update,) = ledger.claim(owner="a", limit=10, lease_seconds=30)
    assert update.needs_update and update.records == (Record(kind="log", id="1"),)
    assert update.event_pk == stored.event_pk


def test_an_expired_lease_passes_to_another_owner_and_fences_the_old_one(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    now = datetime.now(UTC)
    (old,) = ledger.claim(owner="a", limit=1, lease_seconds=5, now=now)
    assert ledger.claim(owner="b", limit=1, lease_seconds=5, now=now + timedelta(seconds=1)) == []
    (new,) = ledger.claim(owner="b", limit=1, lease_seconds=5, now=now + timedelta(seconds=6))
    assert new.fence == old.fence + 1 and new.attempt == 2
    with pytest.raises(LeaseLost):
        ledger.remember(old, Record(kind="log", id="x"))
    with pytest.raises(LeaseLost):
        ledger.finish(old, LOGGED)
    with pytest.raises(LeaseLost):
        ledger.renew(old, 5)
    ledger.finish(new, LOGGED)
    assert ledger.history()[0].status == "logged"


def test_renewing_keeps_the_lease(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=0.2)
    ledger.renew(claim, 60)
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert ledger.claim(owner="b", limit=1, lease_seconds=5, now=later) == []


def test_records_survive_a_retry_and_attempts_are_appended(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    soon = datetime.now(UTC)
    for i in range(2):
        (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=soon)
        if i == 0:
            ledger.remember(claim, Record(kind="communication", id="77", step="communication"))
        ledger.finish(claim, Outcome(status=OutcomeStatus.FAILED, reason="transient",
                                     retryable=True, next_attempt_at=soon))
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=soon + timedelta(seconds=1))
    assert claim.records == (Record(kind="communication", id="77", step="communication"),)
    ledger.finish(claim, LOGGED)
    view = ledger.history()[0]
    assert [a.status for a in ledger.attempts(view.delivery_id)] == ["waiting", "waiting", "logged"]
    assert view.attempts == 3


def _claim_loop(url: str, key: str, owner: str, out: Any) -> None:
    ledger = Ledger(url, secret_key=key)
    got = []
    while True:
        claims = ledger.claim(owner=owner, limit=5, lease_seconds=60)
        if not claims:
            break
        for claim in claims:
            got.append(claim.delivery_id)
            ledger.finish(claim, LOGGED)
    out.put(got)


def test_two_processes_never_claim_the_same_delivery(ledger: Ledger, key: str) -> None:
    for i in range(200):
        ledger.store_event(sms(i), apps=["crm"])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_loop, args=(ledger.url, key, f"p{i}", out))
             for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    claimed = results[0] + results[1]
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_contents_are_encrypted_in_the_database(ledger: Ledger) -> None:
    stored = ledger.store_event(sms(), apps=["crm"])
    ledger.index_put("acme", "crm", "c1", [NUMBER], updated_at=None, name="Dana Whitfield")
    ledger.kv_set("acme", "crm", "k", TEXT)
    ledger.token_set("acme", "crm", {"access_token": "sentinel-token-abcdef0123456789"})
    raw = stored_bytes(ledger)
    for secret in (NUMBER.encode(), b"2125550177", TEXT.encode(), b"Dana Whitfield",
                   b"sentinel-token"):
        assert secret not in raw
    assert stored.event_pk == 1


def test_purge_erases_contents_past_retention_but_keeps_outcomes(ledger: Ledger) -> None:
    stored = ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(claim, LOGGED)
    assert ledger.purge({"acme": 30}, now=datetime(2026, 3, 20, tzinfo=UTC)) == 0
    assert ledger.purge({"acme": 30}, now=datetime(2026, 6, 1, tzinfo=UTC)) == 1
    with pytest.raises(ContentErased):
        ledger.load_event(stored.event_pk)
    view = ledger.history()[0]
    assert view.status == "logged" and view.records == (Record(kind="log", id="1"),)


def test_erasing_a_person_removes_their_events_and_index_rows(ledger: Ledger) -> None:
    mine = ledger.store_event(sms(1), apps=["crm"])
    other = ledger.store_event(sms(2, external={"number": "+12125550188"}), apps=["crm"])
    ledger.index_put("acme", "crm", "c1", [NUMBER], updated_at=None, name="Dana")
    assert ledger.erase_person("acme", NUMBER) == 1
    with pytest.raises(ContentErased):
        ledger.load_event(mine.event_pk)
    assert ledger.load_event(other.event_pk).external.number == "+12125550188"
    assert ledger.index_lookup("acme", "crm", NUMBER) == []


def test_the_index_finds_a_contact_by_number_per_tenant_and_app(ledger: Ledger) -> None:
    ledger.index_put("acme", "crm", "c1", [NUMBER, "+12125550188"], updated_at=None, name="Dana")
    (entry,) = ledger.index_lookup("acme", "crm", NUMBER)
    assert (entry.contact_id, entry.name) == ("c1", "Dana") and entry.checked_at is not None
    assert ledger.index_lookup("other", "crm", NUMBER) == []
    assert ledger.index_lookup("acme", "clio", NUMBER) == []
    ledger.index_put("acme", "crm", "c1", ["+12125550188"], updated_at=None, name="Dana")
    assert ledger.index_lookup("acme", "crm", NUMBER) == []


def test_unresolved_candidates_round_trip_and_a_choice_makes_it_due(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(claim, Outcome(status=OutcomeStatus.UNRESOLVED, reason="several_contacts",
                                 candidates=(Contact(id="1", name="A"), Contact(id="2", name="B"))))
    view = ledger.history()[0]
    assert [c.id for c in view.candidates] == ["1", "2"]
    ledger.choose(view.delivery_id, ["2"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    assert claim.chosen_contact_ids == ("2",) and claim.mode == "manual"


def _hold_lock(url: str, key: str, q: Any) -> None:
    ledger = Ledger(url, secret_key=key)
    with ledger.lock("oauth:acme:crm", ttl=30):
        q.put("held")
        q.get(timeout=30)


def test_the_named_lock_excludes_another_process(ledger: Ledger, key: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    holder = ctx.Process(target=_hold_lock, args=(ledger.url, key, q))
    holder.start()
    assert q.get(timeout=60) == "held"
    with pytest.raises(TimeoutError, match="lock is held by another process"):
        ledger.acquire_lock("oauth:acme:crm", wait=0.3)
    q.put("release")
    holder.join(timeout=30)
    with ledger.lock("oauth:acme:crm", wait=5):
        pass


# --- races: many threads at once (PostgreSQL's concurrent writers; SQLite's one writer) ----

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


def test_the_same_new_event_stored_at_once_by_many_threads_is_stored_once(ledger: Ledger) -> None:
    results: list[str] = []
    at_once(8, lambda i: results.append(ledger.store_event(sms(), apps=["crm"]).status))
    assert sorted(results) == ["duplicate"] * 7 + ["new"]
    assert len(ledger.history()) == 1


def test_upserts_and_locks_hold_under_concurrent_first_writes(ledger: Ledger) -> None:
    at_once(8, lambda i: ledger.kv_set("acme", "crm", "k", str(i)))
    at_once(8, lambda i: ledger.token_set("acme", "crm", {"n": i}))
    at_once(8, lambda i: ledger.cache_put("acme", "crm", "k", str(i), 60))
    winners: list[int] = []
    at_once(8, lambda i: winners.append(i) if ledger.try_lock("job", ttl=30) else None)
    assert ledger.kv_get("acme", "crm", "k") is not None and len(winners) == 1
    assert ledger.cache_get("acme", "crm", "k") is not None
