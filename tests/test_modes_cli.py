"""`callbridge log` (and its alias `resolve`), run as a user runs it, against the
notebook app on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Notebook, write_config
from tests.test_cli import cli


def test_log_resolves_an_unresolved_call_refuses_twice_and_a_contact_the_app_lacks(
        tmp_path: Path, notebook: Notebook, secret_key: str) -> None:
    first = notebook.state.add_contact("Ada Lovelace", ["+1 212 555 0142"])
    second = notebook.state.add_contact("Ada L.", ["(212) 555-0142"])
    env = {"CALLBRIDGE_CONFIG": str(write_config(tmp_path / "callbridge.toml", notebook.url)),
           "CALLBRIDGE_PLUGINS": "notebook", "CALLBRIDGE_SECRET_KEY": secret_key}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({
        "kind": "call", "id": "call-77", "tenant": "acme", "direction": "inbound",
        "external": {"number": "2125550142"}, "started_at": "2026-03-02T10:00:00Z",
        "ended_at": "2026-03-02T10:05:00Z", "outcome": "completed"}) + "\n")
    cli("ingest", str(events), env=env)
    [row] = json.loads(cli("history", "--json", env=env).stdout)
    assert row["status"] == "unresolved" and sorted(row["candidates"]) == sorted([first, second])
    assert row["mode"] == "auto" and row["ledger_event"].startswith("#")

    stranger = cli("log", row["ledger_event"], "--app", "crm", "--contact", "c999", "--json",
                   env=env)
    assert stranger.returncode == 4, stranger.stderr
    assert json.loads(stranger.stdout)["refused"]["field"] == "contact"
    assert "c999" not in stranger.stdout

    # The 1.x form: a delivery id from `callbridge history`, no --app.
    done = cli("resolve", str(row["delivery"]), "--contact", second, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "logged"
    [log] = notebook.state.logs.values()
    assert log["contact_ids"] == [second]

    again = cli("log", "call-77", "--app", "crm", env=env)
    assert again.returncode == 4 and "already logged in crm" in again.stdout
    assert len(notebook.state.logs) == 1


def minutes_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=n)).isoformat()


def test_digest_logs_a_call_whose_contact_was_created_since_and_prints_what_it_did(
        tmp_path: Path, notebook: Notebook, secret_key: str) -> None:
    config = write_config(tmp_path / "callbridge.toml", notebook.url,
                          app="exclusive_contact_association = true")
    env = {"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
           "CALLBRIDGE_SECRET_KEY": secret_key}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({
        "kind": "call", "id": "call-78", "tenant": "acme", "direction": "inbound",
        "external": {"number": "2125550142"}, "started_at": minutes_ago(10),
        "ended_at": minutes_ago(5), "outcome": "completed"}) + "\n")
    cli("ingest", str(events), env=env)
    assert notebook.state.logs == {}
    notebook.state.add_contact("Grace Hopper", ["+1 212 555 0142"])
    done = cli("digest", "--json", env=env)
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    assert (report["tenant"], len(report["requeued"]), report["after"]) == ("acme", 1, {"logged": 1})
    assert len(notebook.state.logs) == 1
    again = cli("digest", env=env)
    assert "0 matched again" in again.stdout and "1 logged" in again.stdout
    unknown = cli("digest", "--tenant", "globex", env=env)
    assert unknown.returncode == 2 and "tenant: is not in the settings" in unknown.stdout
    assert len(notebook.state.logs) == 1
