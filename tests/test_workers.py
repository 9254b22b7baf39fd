"""`callbridge worker` processes sharing one PostgreSQL ledger through the task queue:
a batch logged once by two of them, and a worker killed (SIGKILL) mid-batch whose work
another finishes, with exactly one record per event and app."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.testing.postgres import create_database

from tests.conftest import Notebook, write_config

pytest.importorskip("procrastinate")

TENANTS = ("acme", "bolt", "cove", "dune")
QUEUE = """
[workers]
queue = "procrastinate"
heartbeat_seconds = 0.5
stalled_after_seconds = 2
slice_seconds = 2
"""


def tenant(name: str, url: str) -> str:
    return f"""
[tenants.{name}]
default_region = "US"
own_numbers = ["+1 212 555 0100"]
[tenants.{name}.apps.crm]
plugin = "notebook"
[tenants.{name}.apps.crm.options]
base_url = "{url}"
"""


def settings(tmp_path: Path, postgres_server: str, notebook: Notebook) -> Path:
    """Four firms on the notebook app, a ledger in a new PostgreSQL database."""
    database = create_database(postgres_server, f"workers_{uuid.uuid4().hex[:12]}")
    path = write_config(tmp_path / "callbridge.toml", notebook.url,
                        extra=QUEUE + "".join(tenant(n, notebook.url) for n in TENANTS[1:]))
    text = path.read_text().replace(f'url = "sqlite:///{tmp_path / "ledger.db"}"',
                                    f'url = "{database}"').replace("lease_seconds = 5",
                                                                  "lease_seconds = 2")
    path.write_text(text)
    return path


def ingest(config: Path, count: int) -> Ledger:
    """Store ``count`` calls spread over the firms (as `serve --no-worker` would)."""
    engine = load(config).engine()
    events = [parse_event({
        "tenant": TENANTS[i % len(TENANTS)], "source": "pbx", "kind": "call", "id": f"c-{i}",
        "direction": "inbound", "external": {"number": f"+1 646 555 01{i % 100:02d}"},
        "started_at": "2026-03-02T09:00:00+00:00", "ended_at": "2026-03-02T09:02:00+00:00",
        "outcome": "completed"}) for i in range(count)]
    asyncio.run(engine.ingest_many(events))
    return engine.ledger


def start_worker(config: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "callbridge", "worker", "--config", str(config),
         "--concurrency", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CALLBRIDGE_PLUGINS": "notebook"})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if "started (work from the task queue)" not in first:
        proc.kill()
        raise AssertionError(f"worker did not start: {first!r} {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    return proc


def wait_until(test: object, seconds: float, ledger: Ledger) -> None:
    deadline = time.monotonic() + seconds
    while not test():  # type: ignore[operator]
        views = ledger.history(limit=10**6)
        assert time.monotonic() < deadline, collections.Counter(v.status for v in views)
        time.sleep(0.1)  # other processes do the work: poll the ledger


def all_logged(ledger: Ledger, count: int) -> bool:
    views = ledger.history(limit=10**6)
    return len(views) == count and all(v.status == "logged" for v in views)


def once_each(notebook: Notebook, count: int) -> None:
    markers = collections.Counter(entry["marker"] for entry in notebook.state.logs.values())
    assert len(markers) == count, len(markers)
    assert set(markers.values()) == {1}, [m for m, n in markers.items() if n > 1]


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_two_workers_log_a_batch_once(tmp_path: Path, notebook: Notebook, secret_key: str,
                                      postgres_server: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    config = settings(tmp_path, postgres_server, notebook)
    notebook.state.delay_ms = (2, 8)
    ledger = ingest(config, 80)
    workers = [start_worker(config), start_worker(config)]
    try:
        wait_until(lambda: all_logged(ledger, 80), 60, ledger)
    finally:
        stop(*workers)
    assert [w.returncode for w in workers] == [0, 0]  # a graceful stop on SIGTERM
    once_each(notebook, 80)


@pytest.mark.slow
def test_a_killed_workers_batch_is_finished_by_another_once(
        tmp_path: Path, notebook: Notebook, secret_key: str, postgres_server: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    config = settings(tmp_path, postgres_server, notebook)
    notebook.state.delay_ms = (20, 60)  # a slow app: the kill finds deliveries mid-call
    ledger = ingest(config, 80)
    first = start_worker(config)
    second = None
    try:
        wait_until(lambda: len(notebook.state.logs) >= 10, 60, ledger)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert not all_logged(ledger, 80)
        second = start_worker(config)
        wait_until(lambda: all_logged(ledger, 80), 90, ledger)
    finally:
        stop(*[p for p in (first, second) if p is not None])
    once_each(notebook, 80)
    records = collections.Counter(v.event_pk for v in ledger.history(limit=10**6) for _ in v.records)
    assert len(records) == 80 and set(records.values()) == {1}


def test_the_sqlite_default_keeps_its_in_process_scheduler(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from callbridge.errors import ConfigError
    from callbridge.scheduler import InProcessScheduler
    from callbridge.workers import scheduler_for, uses_queue

    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    engine = load(write_config(tmp_path / "callbridge.toml", notebook.url)).engine()
    assert not uses_queue(engine)
    assert type(scheduler_for(engine)) is InProcessScheduler
    asked = load(write_config(tmp_path / "queue.toml", notebook.url,
                              extra='[workers]\nqueue = "procrastinate"\n')).engine()
    with pytest.raises(ConfigError, match=r"workers\.queue: procrastinate needs a PostgreSQL"):
        uses_queue(asked)
