"""callbridge rotate-key: every content re-encrypted under the new key, the hash key
kept (no hash and no marker changes), resumable after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from callbridge import rotation
from callbridge.errors import ConfigError
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.quarantine import Quarantine, Refused

OLD, NEW = Ledger.generate_key(), Ledger.generate_key()


def event(i: int) -> object:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550166"}, "sent_at": "2026-03-02T10:00:00Z",
                        "body": f"message {i}"})


def filled(path: Path) -> tuple[list[int], str]:
    ledger = Ledger(f"sqlite:///{path}", secret_key=OLD)
    ledger.migrate()
    pks = [ledger.store_event(event(i), apps=["crm"]).event_pk for i in range(7)]  # type: ignore[arg-type]
    ledger.index_put("acme", "crm", "7", ["+12125550166"], updated_at=None, name="Dana")
    ledger.kv_set("acme", "crm", "cursor", "abc")
    ledger.token_set("acme", "crm", {"access_token": "t0k3n"})
    Quarantine(ledger).keep([Refused(raw=b"{oops", reason="(json): not valid JSON")])
    marker = ledger.marker_for(event(0))  # type: ignore[arg-type]
    ledger.close()
    return pks, marker


def check_under_new_key(path: Path, pks: list[int], marker: str) -> None:
    ledger = Ledger(f"sqlite:///{path}", secret_key=NEW)
    ledger.migrate()
    assert [ledger.load_event(pk).id for pk in pks] == [f"s-{i}" for i in range(7)]
    assert ledger.marker_for(event(0)) == marker  # type: ignore[arg-type]
    assert [e.name for e in ledger.index_lookup("acme", "crm", "+12125550166")] == ["Dana"]
    assert ledger.kv_get("acme", "crm", "cursor") == "abc"
    assert ledger.token_get("acme", "crm") == {"access_token": "t0k3n"}
    (entry,) = Quarantine(ledger).entries()
    assert Quarantine(ledger).content(entry.id) == b"{oops"
    ledger.close()
    with pytest.raises(ConfigError, match="CALLBRIDGE_SECRET_KEY"):
        Ledger(f"sqlite:///{path}", secret_key=OLD)


def test_every_content_is_readable_under_the_new_key_and_hashes_stay(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    pks, marker = filled(path)
    engine = Ledger(f"sqlite:///{path}", secret_key=OLD).engine
    done = rotation.rotate_key(engine, old_key=OLD, new_key=NEW)
    assert done.rewritten > 10 and done.already_new == 0
    again = rotation.rotate_key(engine, old_key=OLD, new_key=NEW)
    assert again.rewritten == 0 and again.already_new == done.rewritten
    check_under_new_key(path, pks, marker)


def test_a_rotation_stopped_half_way_is_finished_by_running_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    pks, marker = filled(path)
    engine = Ledger(f"sqlite:///{path}", secret_key=OLD).engine
    monkeypatch.setattr(rotation, "BATCH", 2)

    def crash(table: str, rows: int) -> None:
        if table == "events" and rows >= 4:
            raise KeyboardInterrupt  # killed after two batches were committed

    with pytest.raises(KeyboardInterrupt):
        rotation.rotate_key(engine, old_key=OLD, new_key=NEW, progress=crash)
    finished = rotation.rotate_key(engine, old_key=OLD, new_key=NEW)
    assert finished.already_new >= 4 and finished.rewritten > 0
    check_under_new_key(path, pks, marker)


def test_a_value_under_neither_key_is_named_by_column_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    filled(path)
    engine = Ledger(f"sqlite:///{path}", secret_key=OLD).engine
    with pytest.raises(ConfigError, match=r"a value in events\.\w+_enc opens with neither"):
        rotation.rotate_key(engine, old_key=Ledger.generate_key(), new_key=NEW)


def test_the_command_rotates_and_says_what_to_do_next(
        tmp_path: Path, notebook: object, secret_key: str) -> None:
    from tests.conftest import write_config
    from tests.test_cli import cli, events_file

    config = write_config(tmp_path / "callbridge.toml", notebook.url)  # type: ignore[attr-defined]
    env = {"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
           "CALLBRIDGE_SECRET_KEY": secret_key}
    cli("ingest", str(events_file(tmp_path)), env=env)
    result = cli("rotate-key", env={**env, "CALLBRIDGE_NEW_SECRET_KEY": NEW})
    assert result.returncode == 0, result.stderr
    assert "now set CALLBRIDGE_SECRET_KEY" in " ".join(result.stdout.split())
    assert NEW not in result.stdout
    after = cli("history", "--json", env={**env, "CALLBRIDGE_SECRET_KEY": NEW})
    assert after.returncode == 0 and len(__import__("json").loads(after.stdout)) == 2
    missing = cli("rotate-key", env={**env, "CALLBRIDGE_SECRET_KEY": NEW})
    assert missing.returncode == 2 and "CALLBRIDGE_NEW_SECRET_KEY is not set" in missing.stderr
