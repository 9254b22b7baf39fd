"""The ledger's hash key: apart from the encryption key, made once, kept across
restarts; markers keyed with it (cb2-), the old cb1- marker kept for deliveries
begun before."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.ledger import tables as t
from callbridge.ledger.crypto import Cipher

KEY = Ledger.generate_key()
EVENT = parse_event({"kind": "sms", "id": "+12125550163", "tenant": "acme",
                     "direction": "inbound", "external": {"number": "+12125550163"},
                     "sent_at": "2026-03-02T10:00:00Z", "body": "hi"})


def open_ledger(path: Path, *, migrate: bool = True) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}", secret_key=KEY)
    if migrate:
        ledger.migrate()
    return ledger


def test_a_new_ledger_makes_its_own_hash_key_and_keeps_it(tmp_path: Path) -> None:
    first = open_ledger(tmp_path / "a.db")
    assert first.hash_key is not None
    assert first.hash_key.key != Cipher(KEY).mac_key  # not derived from the encryption key
    marker = first.marker_for(EVENT)
    assert marker.startswith("cb2-") and "2125550163" not in marker
    first.close()
    again = open_ledger(tmp_path / "a.db", migrate=False)  # read when opened, too
    assert again.marker_for(EVENT) == marker
    other = open_ledger(tmp_path / "b.db")  # same encryption key, another ledger
    assert other.marker_for(EVENT) != marker
    assert EVENT.marker.startswith("cb1-")  # the old, unkeyed one is still computed


def test_keyed_lookups_use_the_hash_key(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "a.db")
    ledger.index_put("acme", "crm", "7", ["+12125550163"], updated_at=None, name=None)
    assert [e.contact_id for e in ledger.index_lookup("acme", "crm", "+12125550163")] == ["7"]
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(t.phone_index.c.number_hash)).scalar()
    assert stored != Cipher(KEY).digest("acme", "+12125550163")


def test_a_ledger_from_before_keeps_its_hashes_and_old_markers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    made = open_ledger(path)
    with made.engine.begin() as conn:  # as a ledger made before the hash key existed
        conn.execute(t.kv.delete().where(t.kv.c.tenant == ""))
    made.close()
    old = open_ledger(path, migrate=False)
    assert old.hash_key is None
    old.index_put("acme", "crm", "7", ["+12125550163"], updated_at=None, name=None)  # hashed with the derived key
    old.close()

    upgraded = open_ledger(path)
    assert upgraded.hash_key is not None and upgraded.hash_key.key == Cipher(KEY).mac_key
    assert [e.contact_id for e in upgraded.index_lookup("acme", "crm", "+12125550163")] == ["7"]
    before = upgraded.hash_key.since - timedelta(minutes=5)
    after = upgraded.hash_key.since + timedelta(minutes=5)
    assert upgraded.marker_for(EVENT, before) == EVENT.marker  # a delivery begun before
    assert upgraded.marker_for(EVENT, after).startswith("cb2-")
    assert upgraded.marker_for(EVENT, None).startswith("cb2-")


def test_doctor_fails_a_wrong_key_and_names_the_variable(
        tmp_path: Path, notebook: object, secret_key: str) -> None:
    import json

    from tests.conftest import write_config
    from tests.test_cli import cli

    config = write_config(tmp_path / "callbridge.toml", notebook.url)  # type: ignore[attr-defined]
    env = {"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
           "CALLBRIDGE_SECRET_KEY": secret_key}
    assert cli("history", env=env).returncode == 0  # the ledger made under the first key
    report = json.loads(cli("doctor", "--json", env={
        **env, "CALLBRIDGE_SECRET_KEY": Ledger.generate_key()}).stdout)
    (check,) = [c for c in report["checks"] if c["name"] == "ledger"]
    assert check["status"] == "fail" and "CALLBRIDGE_SECRET_KEY" in check["detail"]
    assert secret_key not in json.dumps(report)


def test_upgrading_a_ledger_under_a_wrong_key_is_refused(tmp_path: Path) -> None:
    import pytest
    from callbridge.errors import ConfigError

    path = tmp_path / "old.db"
    made = open_ledger(path)
    made.store_event(EVENT, apps=["crm"])
    with made.engine.begin() as conn:  # as a ledger made before the hash key existed
        conn.execute(t.kv.delete().where(t.kv.c.tenant == ""))
    made.close()
    wrong = Ledger(f"sqlite:///{path}", secret_key=Ledger.generate_key())
    with pytest.raises(ConfigError, match="CALLBRIDGE_SECRET_KEY"):
        wrong.migrate()
    assert open_ledger(path).hash_key is not None  # the right key still upgrades it
