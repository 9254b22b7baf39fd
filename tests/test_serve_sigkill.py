"""`callbridge serve` killed (SIGKILL) in the middle of a burst, then restarted: every
acknowledged event ends in exactly one outcome per app, logged once in each app."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
from callbridge.ledger import Ledger

from tests.conftest import Notebook, write_config
from tests.serving import KEY, OLD_KEY, SOURCES, signed, start_server

EVENTS = 200
SENDERS = 16


def event(i: int) -> dict[str, object]:
    return {"kind": "call", "id": f"burst-{i}", "direction": "inbound",
            "external": {"number": f"+1 646 555 01{i % 100:02d}"},
            "started_at": "2026-03-02T09:00:00+00:00", "ended_at": "2026-03-02T09:02:00+00:00",
            "outcome": "completed"}


async def burst(url: str, todo: list[int], acked: set[int], stop_after: int | None,
                proc: subprocess.Popen[str]) -> None:
    """Send ``todo`` with SENDERS at once; with ``stop_after``, SIGKILL the server once that
    many are acknowledged. Each request is signed when sent (a retry is signed afresh)."""
    queue = list(todo)

    async def sender(client: httpx2.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            raw, headers = signed(event(i))
            try:
                answer = await client.post("/v1/sources/acme/pbx", content=raw, headers=headers)
            except httpx2.TransportError:
                continue  # not acknowledged: the sender tries again later
            assert answer.status_code == 200, answer.text
            acked.add(i)
            if stop_after is not None and len(acked) >= stop_after and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)

    async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))


@pytest.mark.slow
def test_every_acknowledged_event_survives_a_sigkill_and_is_logged_once(
        tmp_path: Path, notebook: Notebook, secret_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PBX_KEY", KEY)
    monkeypatch.setenv("TEST_PBX_OLD_KEY", OLD_KEY)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    for i in range(100):
        notebook.state.add_contact(f"Client {i}", [f"646-555-01{i:02d}"])
    notebook.state.delay_ms = (5, 20)  # a slow app: the kill finds deliveries mid-call
    config = write_config(tmp_path / "callbridge.toml", notebook.url, extra=SOURCES)
    # A short lease: the killed process's claims lapse soon after the restart.
    config.write_text(config.read_text().replace("lease_seconds = 5", "lease_seconds = 2"))
    acked: set[int] = set()
    proc, url = start_server(config)
    try:
        asyncio.run(burst(url, list(range(EVENTS)), acked, EVENTS // 3, proc))
        assert proc.wait(timeout=10) == -signal.SIGKILL
        first_life = set(acked)
        assert EVENTS // 3 <= len(first_life) < EVENTS
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=secret_key)
        for i in first_life:  # every acknowledgement survived the kill
            assert ledger.find_event("acme", "pbx", "call", f"burst-{i}") is not None
        proc, url = start_server(config)  # the restart; the sender resends what was not acked
        asyncio.run(burst(url, sorted(set(range(EVENTS)) - acked), acked, None, proc))
        assert acked == set(range(EVENTS))
        deadline = time.monotonic() + 60
        while True:  # the server is another process: poll the ledger until all is done
            views = ledger.history(limit=10**6)
            if len(views) == EVENTS and all(v.status == "logged" for v in views):
                break
            assert time.monotonic() < deadline, collections.Counter(v.status for v in views)
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert sorted(v.source_id for v in views) == sorted(f"burst-{i}" for i in range(EVENTS))
    markers = collections.Counter(entry["marker"] for entry in notebook.state.logs.values())
    assert len(markers) == EVENTS and set(markers.values()) == {1}
