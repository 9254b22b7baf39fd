"""`callbridge ingest` over hostile lines, run as a user runs it: every good line is
stored and logged, every bad one refused by number, no traceback, nothing echoed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Notebook, write_config
from tests.test_cli import cli


def call(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
        "external": {"number": "2125550142", "name": "Dana [bold]Whitfield[/bold]"},
        "started_at": "2026-03-02T10:00:00Z", "ended_at": "2026-03-02T10:05:00Z",
        "outcome": "completed", "notes": "moved\u2028to Friday\x85ok"}
    base.update(over)
    return base


HOSTILE = [
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps(call(90)).replace('"outcome"', '"sequence": ' + "7" * 5000 + ', "outcome"').encode(),
    json.dumps(call(91)).encode()[:-2] + b'\xfe"}',
    json.dumps(call(92, **{"[/yellow]": 1, "+12125550163": 2})).encode(),
    b'{"kind": "call", "\x1b[2J": 1}',
]


@pytest.fixture
def configured(tmp_path: Path, notebook: Notebook, secret_key: str) -> dict[str, str]:
    config = write_config(tmp_path / "callbridge.toml", notebook.url)
    return {"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
            "CALLBRIDGE_SECRET_KEY": secret_key}


def test_hostile_lines_are_refused_and_the_good_ones_around_them_logged(
        tmp_path: Path, notebook: Notebook, configured: dict[str, str]) -> None:
    path = tmp_path / "events.jsonl"
    good = [json.dumps(call(1), ensure_ascii=False).encode(), json.dumps(call(2)).encode()]
    path.write_bytes(b"\n".join([good[0], *HOSTILE, good[1]]) + b"\n")
    result = cli("ingest", str(path), "--json", env=configured)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    for leak in ("2125550163", "[/yellow]", "\x1b", "7777777"):
        assert leak not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] == 2 and summary["bad_lines"] == [2, 3, 4, 5, 6]
    assert len(notebook.state.logs) == 2
    for number, why in [(2, "nested too deeply"), (3, "more than 20 digits"),
                        (4, "not UTF-8 text"), (5, "(unknown field)"), (6, "not valid JSON")]:
        assert f"line {number}: " in result.stderr and why in result.stderr

    rejected = tmp_path / "events.jsonl.rejected"
    assert rejected.read_bytes() == b"\n".join(HOSTILE) + b"\n"
    reasons = [json.loads(x) for x in (tmp_path / "events.jsonl.rejected.reasons")
               .read_text().splitlines()]
    assert [r["line"] for r in reasons] == [2, 3, 4, 5, 6]

    listed = json.loads(cli("quarantine", "--json", env=configured).stdout)
    assert sorted(e["line"] for e in listed) == [2, 3, 4, 5, 6]
    assert {e["tenant"] for e in listed} == {None, "acme"}
    entry = next(e for e in listed if e["line"] == 6)
    raw = cli("quarantine", "--entry", str(entry["id"]), "--raw", env=configured)
    assert raw.stdout.encode() == HOSTILE[4]
    shown = cli("quarantine", "--entry", str(entry["id"]), env=configured)
    assert "\x1b" not in shown.stdout and "\\x1b[2J" in shown.stdout

    history = cli("history", env=configured)
    assert history.returncode == 0 and "Traceback" not in history.stderr

    # The run again, with the bad lines fixed: the old rejects files go.
    path.write_bytes(b"\n".join(good) + b"\n")
    assert cli("ingest", str(path), env=configured).returncode == 0
    assert not rejected.exists()


def test_markup_and_escapes_in_a_users_arguments_are_printed_as_text(
        configured: dict[str, str]) -> None:
    result = cli("erase", "[/red]\x1b[2J", "2125550142", env=configured)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "[/red]" in result.stderr and "\x1b" not in result.stderr
