"""Hang-up to log written: `callbridge serve` (a process of its own, its worker and
scheduler on the real clock, a SQLite ledger) receives signed "call ended" webhooks at
a steady rate, spread over enough tenants that no tenant's Clio rate limit (50
requests a minute per connection) binds, and logs each call into the Clio sandbox on
loopback (a thread of this process).

Each call's latency is the time from the moment its ended webhook was sent (the
hang-up) to the moment its log attempt finished with the communication written in the
sandbox (the attempt's ``finished_at`` in the ledger). The calls arrive ended (the
phone system reports the end only), so no grace period for notes applies; a call seen
in progress first waits ``modes.notes_grace_seconds`` more, by design.

Usage: python benchmarks/bench_hangup.py [--calls 1000] [--tenants 250] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

KEY = "bench-source-signing-key"
NUMBERS = ["(212) 555-0142", "+1 646 555 0111", "212.555.0150"]
#: Per call: hang-up to the start of the attempt that logged it (queueing, not the app).
_WAITED: list[float] = []


def _config(folder: Path, sandbox_url: str, tenants: int) -> Path:
    parts = [f'[ledger]\nurl = "sqlite:///{folder / "ledger.db"}"\nlease_seconds = 30\n',
             "[serve]\nhost = \"127.0.0.1\"\n"]
    for i in range(tenants):
        parts.append(f"""
[tenants.t{i}]
default_region = "US"
extensions = {{ "101" = "ann@acme.example" }}
[tenants.t{i}.sources.default]
secret_env = "BENCH_SOURCE_KEY"
[tenants.t{i}.apps.clio]
credentials_env = "BENCH_CLIO"
[tenants.t{i}.apps.clio.options]
api_base_url = "{sandbox_url}/api/v4"
""")
    path = folder / "callbridge.toml"
    path.write_text("".join(parts))
    return path


def _call(i: int, tenants: int, now: datetime, prefix: str) -> dict[str, Any]:
    return {"kind": "call", "id": f"{prefix}{i}", "tenant": f"t{i % tenants}", "direction": "inbound",
            "external": {"number": NUMBERS[i % len(NUMBERS)]}, "internal": {"extension": "101"},
            "started_at": (now - timedelta(minutes=3)).isoformat(),
            "answered_at": (now - timedelta(minutes=2, seconds=55)).isoformat(),
            "ended_at": now.isoformat(), "outcome": "completed"}


async def _send_all(url: str, calls: int, tenants: int, rate: float,
                    prefix: str = "h-") -> dict[str, datetime]:
    import httpx2
    from callbridge.sources.native import sign

    sent: dict[str, datetime] = {}
    begin = time.monotonic()

    async def one(client: httpx2.AsyncClient, i: int) -> None:
        await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
        now = datetime.now(UTC)
        event = _call(i, tenants, now, prefix)
        body = json.dumps(event).encode()
        sent[event["id"]] = now
        answer = await client.post(
            f"/v1/sources/{event['tenant']}/default", content=body,
            headers={"Callbridge-Signature": sign(body, KEY, int(now.timestamp())),
                     "Content-Type": "application/json"})
        answer.raise_for_status()

    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(one(client, i) for i in range(calls)))
    return sent


def _latencies(ledger: Any, sent: dict[str, datetime], tenants: int,
               timeout: float) -> tuple[list[float], dict[str, int]]:
    deadline = time.monotonic() + timeout
    while True:
        counts = ledger.counts()
        open_ = sum(n for (_, status), n in counts.items() if status in ("pending", "waiting"))
        if open_ == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = []
    for event_id, at in sent.items():
        tenant = f"t{int(event_id.split('-')[1]) % tenants}"
        pk = ledger.find_event(tenant, "default", "call", event_id)
        view = ledger.find_delivery(tenant, "clio", pk) if pk else None
        if view is None or view.status != "logged":
            continue
        logged = [a for a in ledger.attempts(view.delivery_id) if a.status == "logged"]
        if logged:
            out.append((logged[0].finished_at - at).total_seconds())
            began = logged[0].started_at or logged[0].finished_at
            _WAITED.append((began - at).total_seconds())
    return out, {f"{app}:{status}": n for (app, status), n in sorted(ledger.counts().items())}


def bench_hangup(calls: int = 1000, tenants: int = 250, rate: float = 10.0) -> dict[str, Any]:
    from callbridge.faults import serve_in_thread
    from callbridge.ledger import Ledger
    from callbridge_clio.sandbox import SandboxState, create_app

    state = SandboxState()
    state.add_user("Ann Lee", "ann@acme.example", authorised=True)
    for i, number in enumerate(NUMBERS):
        state.add_contact("Client", f"Number{i}", [number])
    secret = Ledger.generate_key()
    env = {**os.environ, "CALLBRIDGE_SECRET_KEY": secret, "BENCH_SOURCE_KEY": KEY,
           "BENCH_CLIO_CLIENT_ID": state.client_id, "BENCH_CLIO_CLIENT_SECRET": state.client_secret,
           "CALLBRIDGE_PLUGINS": "clio"}
    faults = create_app(state)
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(faults) as url, \
            serve_in_thread(faults) as storage:
        state.host, state.storage_host = url, storage
        folder = Path(tmp)
        config = _config(folder, url, tenants)
        ledger = Ledger(f"sqlite:///{folder / 'ledger.db'}", secret_key=secret)
        ledger.migrate()
        for i in range(tenants):
            ledger.token_set(f"t{i}", "clio", state.issue_token())
        server = subprocess.Popen(
            [sys.executable, "-m", "callbridge", "serve", "--config", str(config), "--port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert server.stdout is not None
            said = []
            for _ in range(50):  # the server's first lines, until it says where it listens
                said.append(server.stdout.readline())
                if "serving on" in said[-1] or not said[-1]:
                    break
            if "serving on" not in said[-1]:
                raise RuntimeError("callbridge serve did not start: " + "".join(said))
            base = said[-1].split("serving on ")[1].split()[0]
            # Whatever it says next is read (and dropped), so a full pipe never blocks it.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            # Warm-up, not measured: one call per tenant, so each connection has its
            # token refreshed and its phone index synced, as a running deployment's are.
            warm = asyncio.run(_send_all(base, tenants, tenants, rate, prefix="w-"))
            _latencies(ledger, warm, tenants, timeout=120 + tenants / rate)
            _WAITED.clear()
            started = time.monotonic()
            sent = asyncio.run(_send_all(base, calls, tenants, rate))
            send_seconds = time.monotonic() - started
            latencies, counts = _latencies(ledger, sent, tenants, timeout=120 + calls / rate)
        finally:
            server.terminate()
            server.wait(timeout=30)
        ledger.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {"calls": calls, "tenants": tenants, "rate_per_s": rate,
            "send_seconds": round(send_seconds, 1), "samples": len(latencies),
            "p50_s": pct(0.50) if latencies else None, "p99_s": pct(0.99) if latencies else None,
            "max_s": round(latencies[-1], 3) if latencies else None,
            "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
            "queued_p50_s": round(statistics.median(_WAITED), 3) if _WAITED else None,
            "outcomes": counts, "communications": len(state.communications),
            "warm_up_calls": tenants}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=250)
    parser.add_argument("--rate", type=float, default=10.0, help="ended calls sent per second")
    args = parser.parse_args()
    r = bench_hangup(args.calls, args.tenants, args.rate)
    print(f"hangup: {r['samples']} calls over {r['tenants']} tenants at {r['rate_per_s']}/s: "
          f"p50 {r['p50_s']} s, p99 {r['p99_s']} s (goal: p50 < 1 s, p99 < 5 s)")
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
