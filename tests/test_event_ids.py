"""The source's event id: a keyed hash for lookups, encrypted for display and shown
masked, since phone systems do use numbers as ids; older ledgers are converted."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.ledger import tables as t

KEY = Ledger.generate_key()
NUMBER_ID = "+12125550167"


def sms(event_id: str = NUMBER_ID, body: str = "hi") -> object:
    return parse_event({"kind": "sms", "id": event_id, "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550100"}, "sent_at": "2026-03-02T10:00:00Z",
                        "body": body})


def open_ledger(path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}", secret_key=KEY)
    ledger.migrate()
    return ledger


def file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_an_id_that_is_a_number_is_kept_hashed_found_and_shown_masked(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = open_ledger(path)
    first = ledger.store_event(sms(), apps=["crm"])  # type: ignore[arg-type]
    again = ledger.store_event(sms(), apps=["crm"])  # type: ignore[arg-type]
    assert again.status == "duplicate" and again.event_pk == first.event_pk
    assert ledger.find_event("acme", "default", "sms", NUMBER_ID) == first.event_pk
    (view,) = ledger.history()
    assert view.source_id == NUMBER_ID and view.masked_id == "********0167"
    ledger.close()
    assert b"2125550167" not in file_bytes(path)


def test_an_erased_events_id_is_no_longer_shown(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "ledger.db")
    ledger.store_event(sms(), apps=["crm"])  # type: ignore[arg-type]
    ledger.erase_person("acme", "+12125550100")
    (view,) = ledger.history()
    assert view.source_id == "" and view.masked_id == "(erased)"
    assert ledger.find_event("acme", "default", "sms", NUMBER_ID) is not None


def test_a_ledger_from_before_has_its_ids_hashed_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = open_ledger(path)
    kept = ledger.store_event(sms(), apps=["crm"])  # type: ignore[arg-type]
    with ledger.engine.begin() as conn:  # as the ledger held it before: the id in plain
        conn.execute(t.events.update().values(source_id=NUMBER_ID, source_id_enc=None))
        conn.execute(t.kv.delete().where(t.kv.c.key == "ledger:event_ids_hashed"))
    ledger.close()
    upgraded = open_ledger(path)
    with upgraded.engine.connect() as conn:
        stored = conn.execute(sa.select(t.events.c.source_id)).scalar()
    assert stored != NUMBER_ID and len(stored) == 64
    assert upgraded.find_event("acme", "default", "sms", NUMBER_ID) == kept.event_pk
    assert upgraded.store_event(sms(), apps=["crm"]).status == "duplicate"  # type: ignore[arg-type]
    upgraded.migrate()  # again: nothing hashed twice
    assert upgraded.find_event("acme", "default", "sms", NUMBER_ID) == kept.event_pk
