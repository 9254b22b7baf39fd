"""The I/O figure of `nox -s bench`: 20 tenants, 50 ms latency, a rate limit per tenant.

A small app on loopback answers each write after 50 ms and enforces, per tenant,
at most RATE requests in any rolling second (else 429). The bound is
min(total rate limit, concurrency / latency) / requests per event; the figure is
events per second as a fraction of it, and the number of 429s the app sent
(each one is callbridge's fault: it declared the limit).
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from callbridge.capabilities import Capability, Connection, Declaration, RateBucket
from callbridge.engine import Engine
from callbridge.events import parse_event
from callbridge.faults import FaultInjector
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import LogResult, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TENANTS = 20
RATE = 8            # requests per second per tenant: 160 in all, under the 2-core CPU's reach
LATENCY = 0.05
CONCURRENCY = 32
EVENTS_PER_TENANT = 60
REQUESTS_PER_EVENT = 1


def limited_app() -> tuple[Starlette, dict[str, int]]:
    seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
    counts = {"ok": 0, "429": 0}
    lock = threading.Lock()

    async def write(request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        now = time.monotonic()
        with lock:
            window = seen[tenant]
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= RATE:
                counts["429"] += 1
                return JSONResponse({"error": "rate"}, status_code=429,
                                    headers={"Retry-After": "1"})
            window.append(now)
            counts["ok"] += 1
        return JSONResponse({"id": f"{tenant}-{counts['ok']}"}, status_code=201)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(counts)

    return Starlette(routes=[Route("/t/{tenant}/logs", write, methods=["POST"]),
                             Route("/stats", stats)]), counts


def serve_app(port: int) -> None:
    """The app in a process of its own, so it never competes with the engine for the GIL."""
    app, _ = limited_app()
    faults = FaultInjector(app)
    faults.latency = LATENCY
    uvicorn.run(faults, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def app_process() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=serve_app, args=(port,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"{url}/stats")
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise RuntimeError("the benchmark's app did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.join(timeout=10)


class Limited:
    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="limited", version="1", hook_api_version="1.0",
                           capabilities=frozenset({Capability.CALLS,
                                                   Capability.LOG_WITHOUT_CONTACT}),
                           rate_limits=(RateBucket(name="api", requests=RATE, per_seconds=1.0,
                                                   scope="tenant"),))

    @hookimpl
    def connection(self, options: Any) -> Connection:
        return Connection(base_url=os.environ["BENCH_IO_URL"])

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        r = await ctx.http.post(f"/t/{ctx.tenant_id}/logs", json={"marker": event.marker},
                                extensions={"callbridge_idempotent": True})
        return LogResult(records=(Record(kind="log", id=r.json()["id"]),))


def events() -> list[Any]:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    out = []
    for i in range(EVENTS_PER_TENANT * TENANTS):
        t = start + timedelta(seconds=i)
        out.append(parse_event({
            "kind": "call", "id": f"c-{i}", "tenant": f"t{i % TENANTS}", "direction": "inbound",
            "external": {"number": "anonymous"}, "started_at": t.isoformat(),
            "ended_at": (t + timedelta(seconds=60)).isoformat(), "outcome": "completed"}))
    return out


async def _run(folder: Path) -> tuple[float, int]:
    registry = Registry()
    registry.add(Limited())
    settings = Settings.model_validate(
        {"tenants": {f"t{i}": {"apps": {"limited": {}}} for i in range(TENANTS)}})
    ledger = Ledger(f"sqlite:///{folder / 'io.db'}")
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry, ledger=ledger,
                    concurrency=CONCURRENCY)
    batch = events()
    for event in batch:
        await engine.ingest(event)
    started = time.perf_counter()
    await engine.run_until_idle()
    elapsed = time.perf_counter() - started
    logged = sum(n for (_, status), n in ledger.counts().items() if status == "logged")
    await engine.aclose()
    return elapsed, logged


def bench_io() -> dict[str, Any]:
    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    with app_process() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_IO_URL"] = url
        elapsed, logged = asyncio.run(_run(Path(tmp)))
        counts = httpx2.get(f"{url}/stats").json()
    n = EVENTS_PER_TENANT * TENANTS
    assert logged == n, f"only {logged} of {n} events were logged"
    bound = min(TENANTS * RATE, CONCURRENCY / LATENCY) / REQUESTS_PER_EVENT
    rate = logged / elapsed
    return {
        "tenants": TENANTS, "rate_limit_per_tenant": f"{RATE}/s", "latency_s": LATENCY,
        "concurrency": CONCURRENCY, "events": n, "logged": logged, "seconds": round(elapsed, 2),
        "events_per_s": round(rate, 1), "bound_events_per_s": bound,
        "fraction": round(rate / bound, 3), "429s": counts["429"],
    }
