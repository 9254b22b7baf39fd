"""Acknowledgements per second of `callbridge serve`'s intake, each one durable.

The server (`callbridge serve --no-worker`, intake only, on a SQLite ledger) runs pinned
to one core with `taskset`; this process, the load generator, to another. SENDERS
senders post signed events (one per request, each signed as it is sent) over kept-alive
connections; each request's time to acknowledge is measured. Then the server is killed
with SIGKILL and the ledger is read: every acknowledged event must be in it.

Usage: python benchmarks/bench_ack.py [--events N] [--senders C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa
from callbridge.ledger import Ledger
from callbridge.sources.native import sign

KEY = "bench-source-key"


def settings(folder: Path) -> Path:
    path = folder / "callbridge.toml"
    path.write_text(f"""
[ledger]
url = "sqlite:///{folder / 'ledger.db'}"

[tenants.acme.sources.pbx]
secret_env = "BENCH_PBX_KEY"

[tenants.acme.apps.crm]
plugin = "notebook"
[tenants.acme.apps.crm.options]
base_url = "http://127.0.0.1:9"
""")
    return path


def event(i: int) -> bytes:
    return json.dumps({
        "kind": "call", "id": f"ack-{i}", "direction": "inbound",
        "external": {"number": f"+1 212 555 01{i % 100:02d}", "name": "Dana Whitfield"},
        "internal": {"email": "ann@example.com"}, "state": "ended", "sequence": 3,
        "started_at": "2026-03-02T09:00:00+00:00", "answered_at": "2026-03-02T09:00:05+00:00",
        "ended_at": "2026-03-02T09:01:05+00:00", "outcome": "completed",
        "notes": "Asked about the hearing date."}).encode()


def cores() -> tuple[str | None, int | None]:
    """(the server's core for taskset, the load generator's core), when there are two."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2 or shutil.which("taskset") is None:
        return None, None
    return str(available[0]), available[1]


def start(config: Path, env: dict[str, str], server_core: str | None) -> tuple[Any, str]:
    command = [sys.executable, "-m", "callbridge", "serve", "--config", str(config),
               "--port", "0", "--no-worker"]
    if server_core is not None:
        command = ["taskset", "-c", server_core, *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("callbridge serving on "):
        proc.kill()
        raise SystemExit(f"serve did not start: {first!r}")
    return proc, first.split()[3]


async def load(url: str, first: int, count: int, senders: int) -> list[float]:
    todo = iter(range(first, first + count))
    times: list[float] = []

    async def sender(client: httpx2.AsyncClient) -> None:
        for i in todo:
            body = event(i)
            headers = {"Content-Type": "application/json",
                       "Callbridge-Signature": sign(body, KEY, int(time.time()))}
            began = time.perf_counter()
            answer = await client.post("/v1/sources/acme/pbx", content=body, headers=headers)
            times.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise SystemExit(f"refused: {answer.status_code} {answer.text}")

    limits = httpx2.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx2.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return times


def bench_ack(events: int = 2000, senders: int = 16) -> dict[str, Any]:
    server_core, load_core = cores()
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = settings(folder)
        key = Ledger.generate_key()
        env = {**os.environ, "CALLBRIDGE_SECRET_KEY": key, "BENCH_PBX_KEY": KEY,
               "CALLBRIDGE_PLUGINS": "notebook"}
        proc, url = start(config, env, server_core)
        try:
            asyncio.run(load(url, 0, min(200, events), senders))  # warm-up, not counted
            began = time.perf_counter()
            times = asyncio.run(load(url, 10**6, events, senders))
            wall = time.perf_counter() - began
        finally:
            proc.send_signal(signal.SIGKILL)  # no graceful stop: what was acknowledged stays
            proc.wait()
        ledger = Ledger(f"sqlite:///{folder / 'ledger.db'}", secret_key=key)
        with ledger.engine.connect() as conn:
            kept = int(conn.execute(sa.select(sa.func.count()).select_from(
                sa.table("events"))).scalar_one())
        ledger.engine.dispose()
    acked = len(times) + min(200, events)
    times.sort()
    return {
        "events": events, "senders": senders,
        "pinned": f"server on core {server_core}, load on core {load_core}"
                  if load_core is not None else "not pinned (fewer than two cores or no taskset)",
        "acks_per_s": round(events / wall, 1),
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 2),
        "acknowledged": acked, "in_the_ledger_after_sigkill": kept,
        "every_ack_survived": kept == acked,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(bench_ack(args.events, args.senders), indent=2))


if __name__ == "__main__":
    main()
