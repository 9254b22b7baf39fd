"""Issue 3's measure: against a server answering with latency, 429s with Retry-After,
5xx and dropped connections, every event ends logged or failed with a reason, and no
record is created twice (waiting deliveries are put back without waiting out their time)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from callbridge.events import parse_event
from callbridge.runtime import load

from tests.conftest import Notebook, write_config

EVENTS = 150


@pytest.mark.usefixtures("secret_key")
async def test_faults_end_every_event_logged_or_failed_with_reason_and_never_twice(
        tmp_path: Path, notebook: Notebook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "notebook")
    for i in range(50):
        notebook.state.add_contact(f"Client {i}", [f"646-555-01{i:02d}"])
    engine = load(write_config(tmp_path / "callbridge.toml", notebook.url), strict=True).engine()
    faults = notebook.faults
    faults.latency = 0.01
    faults.error_rate, faults.error_statuses = 0.15, (500, 502, 503, 504)
    faults.fail_next = [(429, 0.2), "drop", "drop_after", 503, "drop_after", (429, 0.1)] * 5
    faults.fail_on[("POST", "/logs")] = ["drop_after"] * 20
    try:
        for i in range(EVENTS):
            await engine.ingest(parse_event({
                "kind": "call", "id": f"c-{i}", "tenant": "acme", "direction": "inbound",
                "external": {"number": f"+1 646 555 01{i % 60:02d}"},
                "started_at": "2026-03-02T15:00:00Z", "ended_at": "2026-03-02T15:01:00Z",
                "outcome": "missed"}))
        for _ in range(30):  # the host's retries, without waiting out each backoff
            await engine.run_until_idle()
            waiting = engine.ledger.history(status="waiting", limit=10**6)
            if not waiting:
                break
            for view in waiting:
                engine.ledger.requeue(view.delivery_id, mode="auto")
        views = engine.ledger.history(limit=10**6)
    finally:
        await engine.aclose()
    assert len(views) == EVENTS
    for view in views:
        assert view.status == "logged" or (view.status == "failed" and view.reason and view.message)
    markers = collections.Counter(entry["marker"] for entry in notebook.state.logs.values())
    assert markers and max(markers.values()) == 1
    logged = sum(v.status == "logged" for v in views)
    assert logged == len(markers) == EVENTS
    assert faults.count(status=0) > 0 and faults.count(status=429) > 0  # the faults did happen
