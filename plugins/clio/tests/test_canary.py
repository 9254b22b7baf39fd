"""The canary (issue 3): a sentinel token and a sentinel number go through the Clio
end-to-end flow with every logger at DEBUG, a refresh, a failure and a retry; neither
appears, raw or URL-encoded, in the logs, stderr, exception messages, the ledger's
plain columns or the doctor dump."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from callbridge.events import parse_event

TOKEN = "SENTINELtok7f3a9c0d5e1b2a48"
NUMBER = "+17185550193"  # fictional, and never stored in Clio before the flow


def forms(value: str) -> list[str]:
    digits = value.lstrip("+")
    return [value, quote(value, safe=""), digits, digits[1:], f"{digits[1:4]}-{digits[4:7]}-{digits[7:]}"]


async def test_no_sentinel_token_or_number_leaks_anywhere(
        clio_engine: Any, sandbox: Any, firm: dict[str, int], tmp_path: Path,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("", "httpx2", "httpcore2", "httpx", "httpcore", "callbridge", "uvicorn"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    engine = clio_engine(app='contact_creation = "all"')
    sandbox.state.tokens[TOKEN] = time.time() + 3600
    sandbox.state.refresh_tokens["SENTINELrefresh0123456789"] = firm["ann"]
    engine.ledger.token_set("acme", "clio", {"access_token": TOKEN, "token_type": "bearer",
                                              "refresh_token": "SENTINELrefresh0123456789",
                                              "expires_at": time.time() + 3600})
    errors: list[str] = []
    sandbox.faults.fail_on[("POST", "/api/v4/communications.json")] = [400]
    events = [
        {"kind": "call", "id": "k-1", "tenant": "acme", "direction": "inbound",
         "external": {"number": NUMBER, "name": "Canary Caller"}, "started_at": "2026-03-02T15:00:00Z",
         "answered_at": "2026-03-02T15:00:05Z", "ended_at": "2026-03-02T15:02:00Z", "outcome": "completed"},
        {"kind": "sms", "id": "k-2", "tenant": "acme", "direction": "inbound",
         "external": {"number": NUMBER}, "sent_at": "2026-03-02T15:05:00Z", "body": "hello"},
    ]
    for raw in events:
        await engine.ingest(parse_event(raw))
    await engine.run_until_idle()
    sandbox.state.expire_tokens()  # forces a refresh on the retry
    for view in [*engine.ledger.history(status="failed"), *engine.ledger.history(status="waiting")]:
        errors.append(view.message or "")
        engine.ledger.requeue(view.delivery_id, mode="auto")
    await engine.run_until_idle()
    views = engine.ledger.history()
    assert {v.status for v in views} == {"logged"}, [(v.status, v.message) for v in views]
    assert sandbox.faults.count(method="POST", path="/oauth/token") == 1

    # The ledger's plain columns: every column that is not ciphertext.
    plain: list[str] = []
    with engine.ledger.engine.connect() as conn:
        meta = sa.MetaData()
        meta.reflect(bind=conn)
        for table in meta.tables.values():
            cols = [c for c in table.columns if not c.name.endswith("_enc")]
            for row in conn.execute(sa.select(*cols)):
                plain.append(json.dumps([str(v) for v in row]))
    config = engine.settings.path
    doctor = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "callbridge", "doctor", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=120)
    out = capsys.readouterr()
    haystacks = {
        "logs": "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records),
        "stdout/stderr": out.out + out.err, "outcome messages": "\n".join(errors),
        "ledger plain columns": "\n".join(plain), "doctor": doctor.stdout + doctor.stderr,
    }
    assert any(NUMBER[-4:] in text for text in haystacks.values())  # the canary did fly
    for where, text in haystacks.items():
        for secret in [*forms(NUMBER), TOKEN, quote(TOKEN), "SENTINELrefresh"]:
            assert secret not in text, f"{secret!r} leaked into the {where}"
