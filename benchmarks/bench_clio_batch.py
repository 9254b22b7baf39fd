"""The 15-call batch of a firm's day: 15 completed calls from three known Clio contacts,
fed through ``callbridge ingest``'s code path to the Clio sandbox on loopback, on the
real clock, under the sandbox's rate limit (Clio's 50 requests a minute per token).

Reported: wall time, requests the sandbox saw, 429s, and the outcomes. The same
batch runs on a fake clock in plugins/clio/tests/test_ingest_batch.py.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NUMBERS = ["(212) 555-0142", "+1 646 555 0111", "212.555.0150"]


def _batch(calls: int) -> str:
    start = datetime.now(UTC) - timedelta(hours=2)
    lines = []
    for i in range(calls):
        began = start + timedelta(minutes=i)
        lines.append(json.dumps({
            "kind": "call", "id": f"b-{i}", "tenant": "acme", "direction": "inbound",
            "external": {"number": NUMBERS[i % len(NUMBERS)]}, "internal": {"extension": "101"},
            "started_at": began.isoformat(), "answered_at": (began + timedelta(seconds=5)).isoformat(),
            "ended_at": (began + timedelta(minutes=3)).isoformat(), "outcome": "completed"}))
    return "\n".join(lines) + "\n"


def bench_clio_batch(calls: int = 15) -> dict[str, Any]:
    from callbridge.faults import serve_in_thread
    from callbridge.ingesting import run_ingest
    from callbridge.ledger import Ledger
    from callbridge.runtime import load
    from callbridge_clio.sandbox import SandboxState, create_app

    state = SandboxState()
    state.add_user("Ann Lee", "ann@acme.example", authorised=True)
    for i, number in enumerate(NUMBERS):
        state.add_contact("Client", f"Number{i}", [number])
    faults = create_app(state)
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(faults) as url, \
            serve_in_thread(faults) as storage:
        state.host, state.storage_host = url, storage
        folder = Path(tmp)
        os.environ.update({"CALLBRIDGE_SECRET_KEY": Ledger.generate_key(),
                           "ACME_CLIO_CLIENT_ID": state.client_id,
                           "ACME_CLIO_CLIENT_SECRET": state.client_secret,
                           "CALLBRIDGE_PLUGINS": "clio"})
        config = folder / "callbridge.toml"
        config.write_text(textwrap.dedent(f"""
        [ledger]
        url = "sqlite:///{folder / 'ledger.db'}"
        [tenants.acme]
        extensions = {{ "101" = "ann@acme.example" }}
        [tenants.acme.apps.clio]
        credentials_env = "ACME_CLIO"
        [tenants.acme.apps.clio.options]
        api_base_url = "{url}/api/v4"
        """))
        events = folder / "events.jsonl"
        events.write_text(_batch(calls))
        rt = load(config, strict=True)

        async def go() -> tuple[int, Any]:
            engine = rt.engine()
            engine.ledger.token_set("acme", "clio", state.issue_token())
            try:
                with events.open("rb") as stream:
                    code = await run_ingest(engine, rt.settings.current(), events, stream,
                                            rejects=None, dry_run=False, as_json=True,
                                            wait_max=900, no_wait=False)
                return code, engine.ledger.history(limit=10**6)
            finally:
                await engine.aclose()

        import contextlib
        import io

        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code, views = asyncio.run(go())
        wall = time.perf_counter() - began
    statuses = collections.Counter(v.status for v in views)
    return {"calls": calls, "wall_seconds": round(wall, 2), "requests": len(state.requests),
            "429s": faults.count(status=429), "communications": len(state.communications),
            "time_entries": len(state.activities), "outcomes": dict(statuses), "exit_code": code}
