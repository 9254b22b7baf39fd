"""Issue 2's crash test: three processes feed the same 1,000 events at once through
a plugin that waits 20–200 ms per call and writes to a server on loopback; one is
killed with SIGKILL midway and restarted; the server holds exactly one record per
event and app."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callbridge_notebook.server import NotebookState, create_app

from tests.conftest import Notebook, write_config

EVENTS = 1000


def events_file(path: Path) -> Path:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    with path.open("w") as fh:
        for i in range(EVENTS):
            t = start + timedelta(minutes=i)
            fh.write(json.dumps({
                "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
                "external": {"number": f"+1 646 555 01{i % 100:02d}"},
                "started_at": t.isoformat(), "ended_at": (t + timedelta(seconds=90)).isoformat(),
                "outcome": "completed"}) + "\n")
    return path


@pytest.fixture
def second_notebook() -> Iterator[Notebook]:
    from callbridge.faults import FaultInjector, serve_in_thread

    state = NotebookState()
    faults = FaultInjector(create_app(state))
    with serve_in_thread(faults) as url:
        yield Notebook(state, faults, url)


@pytest.mark.slow
def test_three_processes_and_a_sigkill_leave_exactly_one_record_per_event_and_app(
        tmp_path: Path, notebook: Notebook, second_notebook: Notebook, secret_key: str) -> None:
    for i in range(100):
        notebook.state.add_contact(f"Client {i}", [f"646-555-01{i:02d}"])
        second_notebook.state.add_contact(f"Client {i}", [f"(646) 555-01{i:02d}"])
    extra = f"""
    [tenants.acme.apps.crm2]
    plugin = "notebook"
    [tenants.acme.apps.crm2.options]
    base_url = "{second_notebook.url}"
    """
    config = write_config(tmp_path / "callbridge.toml", notebook.url, extra=extra)
    notebook.state.delay_ms = second_notebook.state.delay_ms = (20, 200)  # slow apps
    feed = events_file(tmp_path / "events.jsonl")
    env = {**os.environ, "CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_PLUGINS": "notebook",
           "CALLBRIDGE_SECRET_KEY": secret_key}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "callbridge", "ingest", str(feed), "--json",
                                 "--wait-max", "120"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = [start() for _ in range(3)]
    # Kill one once logs are being written, so it dies holding leases mid-call.
    deadline = time.monotonic() + 60
    while len(notebook.state.logs) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    procs.append(start())  # the restart
    for proc in procs[1:]:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 3), err
    from callbridge.ledger import Ledger
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=secret_key)
    unsettled = [(v.app, v.source_id, v.status, v.reason, v.message)
                 for v in ledger.history(limit=10**6) if v.status != "logged"]
    assert unsettled == []
    for app in (notebook, second_notebook):
        markers = collections.Counter(entry["marker"] for entry in app.state.logs.values())
        assert len(markers) == EVENTS
        assert set(markers.values()) == {1}, collections.Counter(markers.values())
        assert len(app.state.contacts) == 100
