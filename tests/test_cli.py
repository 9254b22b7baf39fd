"""Issue point 7: the command line, run as a user runs it (the installed script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from callbridge import HOOK_API_VERSION

from tests.conftest import Notebook, write_config

SENTINEL_NUMBER = "+12125550187"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CALLBRIDGE_TRACE", None)
    return subprocess.run([sys.executable, "-m", "callbridge", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def test_plugins_shows_a_broken_plugins_error_beside_a_working_plugin() -> None:
    result = cli("plugins", "--json", env={"CALLBRIDGE_PLUGINS": "notebook,broken_misspelt,broken_import"})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [p["name"] for p in out["plugins"]] == ["notebook"]
    assert out["plugins"][0]["distribution"] == "callbridge-notebook"
    assert "log_call" in out["plugins"][0]["hooks"] and "calls" in out["plugins"][0]["capabilities"]
    errors = {e["entry_point"]: e for e in out["errors"]}
    assert errors["broken_misspelt"]["distribution"] == "callbridge-broken-example"
    assert "log_cal" in errors["broken_misspelt"]["error"]
    assert "ModuleNotFoundError" in errors["broken_import"]["error"]


def test_plugins_table_lists_both_and_hook_filter_narrows() -> None:
    table = cli("plugins", env={"CALLBRIDGE_PLUGINS": "notebook,broken_misspelt"})
    assert "notebook" in table.stdout and "failed to load" in table.stdout
    none = json.loads(cli("plugins", "--json", "--hook", "ensure_activity_code",
                          env={"CALLBRIDGE_PLUGINS": "notebook"}).stdout)
    assert none["plugins"] == []


def test_version_names_the_hook_api() -> None:
    assert f"hook API {HOOK_API_VERSION}" in cli("--version").stdout


def events_file(tmp_path: Path) -> Path:
    good = {"kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
            "external": {"number": "2125550142"}, "started_at": "2026-03-02T10:00:00Z",
            "ended_at": "2026-03-02T10:05:00Z", "outcome": "completed"}
    bad = {**good, "id": "c-2", "direction": "sideways", "external": {"number": SENTINEL_NUMBER + "9"}}
    sms = {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "outbound",
           "external": {"number": "2125550142"}, "sent_at": "2026-03-02T11:00:00Z", "body": "ok"}
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(bad), "{oops", json.dumps(sms)]) + "\n")
    return path


@pytest.fixture
def configured(tmp_path: Path, notebook: Notebook, secret_key: str) -> dict[str, str]:
    config = write_config(tmp_path / "callbridge.toml", notebook.url)
    return {"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
            "CALLBRIDGE_SECRET_KEY": secret_key}


def test_ingest_reports_bad_lines_by_number_keeps_them_and_logs_the_rest(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = events_file(tmp_path)
    result = cli("ingest", str(path), "--json", env=configured)
    assert result.returncode == 2, result.stderr
    assert "line 2" in result.stderr and "direction" in result.stderr and "external.number" in result.stderr
    assert "line 3" in result.stderr and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr and "2125550187" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] == 2 and summary["bad_lines"] == [2, 3]
    assert summary["outcomes"] == [{"app": "crm", "status": "logged", "reason": "", "count": 2}]
    kept = (tmp_path / "events.jsonl.rejected").read_text().splitlines()
    assert len(kept) == 2 and kept[1] == "{oops"
    assert len(notebook.state.logs) == 2


def test_ingest_again_changes_nothing_and_history_shows_outcomes(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = events_file(tmp_path)
    cli("ingest", str(path), env=configured)
    cli("ingest", str(path), env=configured)
    assert len(notebook.state.logs) == 2
    rows: list[dict[str, Any]] = json.loads(cli("history", "--json", "--app", "crm", env=configured).stdout)
    assert sorted(r["event"] for r in rows) == ["c-1", "s-1"]
    assert {r["status"] for r in rows} == {"logged"} and all(r["attempts"] == 1 for r in rows)
    assert json.loads(cli("history", "--json", "--status", "failed", env=configured).stdout) == []


def test_ingest_no_wait_stores_and_drain_logs_the_queued_work(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = events_file(tmp_path)
    stored = cli("ingest", str(path), "--no-wait", "--json", env=configured)
    assert stored.returncode == 2 and json.loads(stored.stdout)["still_open"] == 2
    assert notebook.state.logs == {}
    notebook.faults.fail_next = [503]  # one transient failure: the drain waits out its backoff
    drained = cli("drain", "--json", env=configured)
    assert drained.returncode == 0, drained.stderr
    summary = json.loads(drained.stdout)
    assert summary["queued"] == 2 and summary["still_open"] == 0
    assert summary["outcomes"] == [{"app": "crm", "status": "logged", "reason": "", "count": 2}]
    assert len(notebook.state.logs) == 2


def test_ingest_leaves_what_waits_past_wait_max_queued_and_says_so(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = events_file(tmp_path)
    notebook.faults.error_rate, notebook.faults.error_statuses = 1.0, (503,)  # the app is down
    result = cli("ingest", str(path), "--wait-max", "0", env=configured)
    assert result.returncode == 2, result.stderr  # the bad lines
    assert "still queued" in result.stdout and "callbridge drain" in result.stdout
    rows = json.loads(cli("history", "--json", "--status", "waiting", env=configured).stdout)
    assert [(r["reason"], r["next_attempt_at"] is not None) for r in rows] == [("backoff", True)] * 2
    assert notebook.state.logs == {}


def test_an_invalid_settings_file_is_a_message_not_a_traceback(tmp_path: Path,
                                                                configured: dict[str, str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[tenants.acme]\ntime_zone = 'Nowhere/Land'\n")
    result = cli("history", env={**configured, "CALLBRIDGE_CONFIG": str(bad)})
    assert result.returncode == 2
    assert "tenants.acme.time_zone" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_dump_redacts_numbers_and_secrets(tmp_path: Path, notebook: Notebook,
                                                 configured: dict[str, str]) -> None:
    result = cli("doctor", "--json", env=configured)
    text = result.stdout
    report = json.loads(text)
    assert report["dump"]["tenants"]["acme"]["own_numbers"] == ["+*******0100"]
    assert "2125550100" not in text and configured["CALLBRIDGE_SECRET_KEY"] not in text
    assert any(c["name"] == "plugin notebook" and c["status"] == "ok" for c in report["checks"])


def test_python_dash_m_works_like_the_script() -> None:
    assert cli("--help").returncode == 0


def test_erase_removes_a_persons_event_contents_and_keeps_outcomes(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = events_file(tmp_path)
    cli("ingest", str(path), env=configured)
    result = cli("erase", "acme", "(212) 555-0142", env=configured)
    assert result.returncode == 0, result.stderr
    assert "erased the contents of 2 event(s) of +*******0142" in result.stdout
    rows = json.loads(cli("history", "--json", env=configured).stdout)
    assert {r["status"] for r in rows} == {"logged"} and len(rows) == 2
    bad = cli("erase", "acme", "555-01", env=configured)
    assert bad.returncode == 2 and "cannot be read" in bad.stderr
