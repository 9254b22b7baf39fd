"""The ledger's stores beside the events: key-value rows, tokens, locks, the phone
index; delayed and filtered claims; what purge erases. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from callbridge.context import KeyValueStore
from callbridge.errors import ConfigError
from callbridge.events import parse_event
from callbridge.ledger import ContentErased, Ledger, LedgerStore, LedgerTokenStore
from callbridge.ledger import tables as t
from callbridge.models import Contact, Outcome, OutcomeStatus, Record

from tests.conftest import only_sqlite, stored_bytes

NUMBER = "+12125550177"
LOGGED = Outcome(status=OutcomeStatus.LOGGED, records=(Record(kind="log", id="1"),))


def sms(i: int = 1, tenant: str = "acme", sent_at: str = "2026-03-02T10:00:00Z",
        **over: Any) -> Any:
    data = {"kind": "sms", "id": f"s-{i}", "tenant": tenant, "direction": "inbound",
            "external": {"number": NUMBER}, "sent_at": sent_at, "body": f"text {i}"}
    data.update(over)
    return parse_event(data)


# --- key-value rows and tokens -------------------------------------------------------------

def test_kv_values_round_trip_per_tenant_and_app(ledger: Ledger) -> None:
    ledger.kv_set("acme", "crm", "cursor", "abc")
    ledger.kv_set("acme", "crm", "cursor", "def")
    assert ledger.kv_get("acme", "crm", "cursor") == "def"
    assert ledger.kv_get("acme", "clio", "cursor") is None
    ledger.kv_delete("acme", "crm", "cursor")
    assert ledger.kv_get("acme", "crm", "cursor") is None


def test_kv_values_and_tokens_are_ciphertext_in_the_database(ledger: Ledger) -> None:
    ledger.kv_set("acme", "crm", "k", "kv-sentinel-5521")
    ledger.token_set("acme", "crm", {"access_token": "tok-sentinel-9034", "expires_at": 1})
    assert ledger.token_get("acme", "crm") == {"access_token": "tok-sentinel-9034", "expires_at": 1}
    raw = stored_bytes(ledger)
    assert b"kv-sentinel-5521" not in raw and b"tok-sentinel-9034" not in raw


def test_a_token_is_replaced_not_added(ledger: Ledger) -> None:
    ledger.token_set("acme", "crm", {"access_token": "one"})
    ledger.token_set("acme", "crm", {"access_token": "two"})
    assert ledger.token_get("acme", "crm") == {"access_token": "two"}
    assert ledger.token_get("acme", "clio") is None


async def test_the_async_store_is_a_key_value_store_for_one_tenant_and_app(ledger: Ledger) -> None:
    store: KeyValueStore = LedgerStore(ledger, "acme", "crm")
    await store.set("k", "v")
    assert await store.get("k") == "v"
    assert ledger.kv_get("acme", "crm", "k") == "v"
    await store.delete("k")
    assert await store.get("k") is None


async def test_the_token_store_round_trips_and_its_refresh_lock_excludes(ledger: Ledger) -> None:
    tokens = LedgerTokenStore(ledger)
    await tokens.save("acme", "crm", {"access_token": "a"})
    assert await tokens.load("acme", "crm") == {"access_token": "a"}
    inside, most = 0, 0

    async def refresh() -> None:
        nonlocal inside, most
        async with tokens.refresh_lock("acme", "crm"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(refresh() for _ in range(4)))
    assert most == 1


# --- locks ---------------------------------------------------------------------------------

def test_a_held_lock_times_out_naming_it(ledger: Ledger) -> None:
    with ledger.lock("oauth:acme:crm"), pytest.raises(TimeoutError, match="lock is held"):
        ledger.acquire_lock("oauth:acme:crm", wait=0.1)


def test_an_expired_lock_may_be_taken_over(ledger: Ledger) -> None:
    ledger.acquire_lock("job", ttl=0.05)  # never released: its holder "crashed"
    held = ledger.acquire_lock("job", ttl=30, wait=5)
    with pytest.raises(TimeoutError):
        ledger.acquire_lock("job", wait=0.1)
    ledger.release_lock(held)


def test_releasing_a_lock_taken_over_leaves_the_new_holder_alone(ledger: Ledger) -> None:
    first = ledger.acquire_lock("job", ttl=0.05)
    ledger.acquire_lock("job", ttl=30, wait=5)
    ledger.release_lock(first)
    with pytest.raises(TimeoutError):
        ledger.acquire_lock("job", wait=0.1)


# --- the phone index -----------------------------------------------------------------------

def test_index_rows_are_replaced_removed_and_marked_checked(ledger: Ledger) -> None:
    seen = datetime(2026, 3, 1, tzinfo=UTC)
    ledger.index_put("acme", "crm", "c1", [NUMBER, NUMBER], updated_at=seen, name="Dana", now=seen)
    (entry,) = ledger.index_lookup("acme", "crm", NUMBER)
    assert (entry.updated_at, entry.checked_at) == (seen, seen)
    later = seen + timedelta(hours=1)
    ledger.index_mark_checked("acme", "crm", "c1", now=later)
    assert ledger.index_lookup("acme", "crm", NUMBER)[0].checked_at == later
    ledger.index_remove("acme", "crm", "c1")
    assert ledger.index_lookup("acme", "crm", NUMBER) == []


def test_several_contacts_may_share_a_number(ledger: Ledger) -> None:
    ledger.index_put("acme", "crm", "c1", [NUMBER], updated_at=None, name="A")
    ledger.index_put("acme", "crm", "c2", [NUMBER], updated_at=None, name=None)
    assert [(e.contact_id, e.name) for e in ledger.index_lookup("acme", "crm", NUMBER)] == [
        ("c1", "A"), ("c2", None)]


def test_the_index_state_round_trips(ledger: Ledger) -> None:
    assert ledger.index_state("acme", "crm") == (None, None)
    mark, synced = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    ledger.set_index_state("acme", "crm", high_water=mark, synced_at=synced)
    ledger.set_index_state("acme", "crm", high_water=mark, synced_at=synced + timedelta(hours=1))
    assert ledger.index_state("acme", "crm") == (mark, synced + timedelta(hours=1))


def test_the_index_holds_hashes_not_numbers(ledger: Ledger) -> None:
    ledger.index_put("acme", "crm", "c1", [NUMBER], updated_at=None, name="Dana Whitfield")
    raw = stored_bytes(ledger)
    assert NUMBER.encode() not in raw and b"2125550177" not in raw and b"Whitfield" not in raw


# --- claims --------------------------------------------------------------------------------

def test_a_scheduled_delivery_waits_until_its_time(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    (view,) = ledger.history()
    now = datetime.now(UTC)
    ledger.schedule(view.delivery_id, now + timedelta(minutes=5))
    assert ledger.claim(owner="a", limit=5, lease_seconds=30, now=now) == []
    (claim,) = ledger.claim(owner="a", limit=5, lease_seconds=30, now=now + timedelta(minutes=6))
    assert claim.delivery_id == view.delivery_id


def test_claims_filter_by_tenant_app_event_and_mode(ledger: Ledger) -> None:
    a = ledger.store_event(sms(1), apps=["crm", "clio"])
    ledger.store_event(sms(2, tenant="other"), apps=["crm"])
    manual = ledger.add_delivery(a.event_pk, "hubspot", mode="manual")
    assert [c.tenant for c in ledger.claim(owner="x", limit=9, lease_seconds=30,
                                           tenant="other")] == ["other"]
    assert [c.app for c in ledger.claim(owner="x", limit=9, lease_seconds=30,
                                        apps=["clio"])] == ["clio"]
    assert [c.delivery_id for c in ledger.claim(owner="x", limit=9, lease_seconds=30,
                                                modes=["manual"])] == [manual]
    assert [c.app for c in ledger.claim(owner="x", limit=9, lease_seconds=30,
                                        event_pks=[a.event_pk])] == ["crm"]


def test_claims_come_oldest_first_up_to_the_limit(ledger: Ledger) -> None:
    ledger.store_event(sms(1, sent_at="2026-03-02T12:00:00Z"), apps=["crm"])
    ledger.store_event(sms(2, sent_at="2026-03-02T09:00:00Z"), apps=["crm"])
    ledger.store_event(sms(3, sent_at="2026-03-02T10:00:00Z"), apps=["crm"])
    claims = ledger.claim(owner="a", limit=2, lease_seconds=30)
    assert [ledger.load_event(c.event_pk).id for c in claims] == ["s-2", "s-3"]


def test_a_released_claim_is_due_again_at_once(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=300)
    ledger.release(claim)
    (again,) = ledger.claim(owner="b", limit=1, lease_seconds=300)
    assert again.fence == claim.fence + 1 and ledger.attempts(claim.delivery_id) == []


def test_adding_a_delivery_is_idempotent_and_keeps_the_notes(ledger: Ledger) -> None:
    stored = ledger.store_event(sms(), apps=[])
    first = ledger.add_delivery(stored.event_pk, "crm", mode="delayed", notes="notes-sentinel-31",
                                chosen_contact_ids=["c9"])
    assert ledger.add_delivery(stored.event_pk, "crm", notes="other") == first
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    assert (claim.notes, claim.chosen_contact_ids, claim.mode) == ("notes-sentinel-31", ("c9",),
                                                                  "delayed")
    assert b"notes-sentinel-31" not in stored_bytes(ledger)


def test_counts_are_by_app_and_status(ledger: Ledger) -> None:
    ledger.store_event(sms(1), apps=["crm", "clio"])
    ledger.store_event(sms(2, tenant="other"), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30, apps=["clio"])
    ledger.finish(claim, LOGGED)
    assert ledger.counts() == {("crm", "pending"): 2, ("clio", "logged"): 1}
    assert ledger.counts(tenant="acme") == {("crm", "pending"): 1, ("clio", "logged"): 1}


def test_times_come_back_timezone_aware_utc(ledger: Ledger) -> None:
    ledger.store_event(sms(sent_at="2026-03-02T11:00:00+01:00"), apps=["crm"])
    (view,) = ledger.history()
    assert view.occurred_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert view.occurred_at.tzinfo == UTC and view.updated_at.tzinfo == UTC


def test_threads_sharing_one_ledger_claim_each_delivery_once(ledger: Ledger) -> None:
    for i in range(60):
        ledger.store_event(sms(i), apps=["crm"])
    claimed: list[int] = []

    def work(owner: str) -> None:
        while claims := ledger.claim(owner=owner, limit=3, lease_seconds=60):
            for claim in claims:
                ledger.remember(claim, Record(kind="log", id=str(claim.delivery_id)))
                ledger.finish(claim, LOGGED)
                claimed.append(claim.delivery_id)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60


# --- retention -----------------------------------------------------------------------------

def test_purge_erases_revisions_notes_and_candidate_names(ledger: Ledger) -> None:
    ledger.store_event(sms(body="first-sentinel"), apps=["crm"])
    stored = ledger.store_event(sms(body="second-sentinel"), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(claim, Outcome(status=OutcomeStatus.UNRESOLVED, reason="several_contacts",
                                 candidates=(Contact(id="1", name="Cand-Sentinel"),)))
    ledger.choose(claim.delivery_id, ["1"], notes="note-sentinel")
    assert ledger.purge({"acme": 30}, now=datetime(2026, 6, 1, tzinfo=UTC)) == 1
    with pytest.raises(ContentErased):
        ledger.load_event(stored.event_pk)
    view = ledger.delivery(claim.delivery_id)
    assert view.candidates == () and view.reason == "several_contacts"
    with ledger.engine.connect() as conn:
        for table, column in ((t.events, "content_enc"), (t.event_revisions, "content_enc"),
                              (t.deliveries, "notes_enc"), (t.deliveries, "candidates_enc")):
            assert set(conn.execute(sa.select(table.c[column])).scalars()) == {None}


def test_purge_keeps_tenants_apart_and_skips_erased_events(ledger: Ledger) -> None:
    ledger.store_event(sms(1), apps=["crm"])
    kept = ledger.store_event(sms(2, tenant="other"), apps=["crm"])
    june = datetime(2026, 6, 1, tzinfo=UTC)
    assert ledger.purge({"acme": 30, "other": 365}, now=june) == 1
    assert ledger.purge({"acme": 30}, now=june) == 0
    assert ledger.load_event(kept.event_pk).tenant == "other"


def test_erasing_a_person_is_per_tenant(ledger: Ledger) -> None:
    ledger.store_event(sms(1), apps=["crm"])
    other = ledger.store_event(sms(2, tenant="other"), apps=["crm"])
    ledger.index_put("other", "crm", "c1", [NUMBER], updated_at=None, name="Dana")
    assert ledger.erase_person("acme", NUMBER) == 1
    assert ledger.load_event(other.event_pk).external.number == NUMBER
    assert [e.contact_id for e in ledger.index_lookup("other", "crm", NUMBER)] == ["c1"]


# --- where the ledger lives ----------------------------------------------------------------

def test_an_in_memory_ledger_works_across_threads() -> None:
    ledger = Ledger("sqlite://", secret_key=Ledger.generate_key())
    ledger.migrate()
    stored = ledger.store_event(sms(), apps=["crm"])
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(ledger.load_event(stored.event_pk)))
    thread.start()
    thread.join()
    assert result[0].body == "text 1"


def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'a' / 'b' / 'ledger.db'}",
                    secret_key=Ledger.generate_key())
    ledger.migrate()
    assert (tmp_path / "a" / "b" / "ledger.db").exists()


def test_the_sqlite_file_runs_in_wal_mode_with_a_long_busy_timeout(ledger: Ledger) -> None:
    only_sqlite(ledger)
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_wrong_key_is_a_clear_error(ledger: Ledger) -> None:
    stored = ledger.store_event(sms(), apps=["crm"])
    # Refused when the ledger is opened: its hash key cannot be read with another key.
    with pytest.raises(ConfigError, match="cannot be decrypted with this CALLBRIDGE_SECRET_KEY"):
        Ledger(ledger.url, secret_key=Ledger.generate_key()).load_event(stored.event_pk)
