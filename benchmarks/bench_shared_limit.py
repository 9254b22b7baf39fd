"""How much of a rate limit several worker processes reach together, sharing it,
and whether they ever refuse a request while the limit has room.

A loopback app counts the requests it gets in sliding windows and answers 429
above a limit. N processes, each with its own LimiterRegistry on one PostgreSQL
database (callbridge.sharedlimits), send through the host's client
(callbridge.http.build_client, one per firm) as fast as their buckets let them.

``partner`` (the default): one partner-scoped bucket declaring the app's limit,
demand well above it. Reported: the 429s (must be 0) and the fraction of the
limit used: the mean, over every window starting from the first request while
demand lasts, of the requests the app got in it over its limit (≥ 0.9 wanted).

``tenants``: many firms, each request counted in its firm's token-scoped bucket
and in one partner-scoped bucket, limits generous (demand stays below them),
some firms' work at priority -1 (as the host's phone-index syncs run) among
deliveries at 0 and 1. Reported: the refusals (``RateLimited`` raised by the
host's buckets, not the app), the needless ones (the bucket's key had under 0.9
of its limit in the window before), the highest fraction of each limit any
window used, and the 429s::

    python benchmarks/bench_shared_limit.py                        # 20 requests/s
    python benchmarks/bench_shared_limit.py --limit 400 --concurrency 32   # 200/s
    python benchmarks/bench_shared_limit.py --scenario tenants
    python benchmarks/bench_shared_limit.py --url postgresql+psycopg://...

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Counter:
    """The app's limit for one key: at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.accepted: list[float] = []
        self.refused = 0
        self._recent: deque[float] = deque()

    def room(self, now: float) -> bool:
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        return len(self._recent) < self.limit

    def count(self, now: float) -> None:
        self._recent.append(now)
        self.accepted.append(now)


class App:
    """The partner limit, and each firm's own (``/t/<firm>``) when ``tenant_limit`` is set."""

    def __init__(self, limit: int, window: float, tenant_limit: int | None = None) -> None:
        self.partner = Counter(limit, window)
        self.tenant_limit, self.window = tenant_limit, window
        self.tenants: dict[str, Counter] = {}
        self.refused = 0
        self._lock = threading.Lock()

    def arrive(self, path: str) -> bool:
        with self._lock:
            now = time.time()
            counters = [self.partner]
            if self.tenant_limit is not None and path.startswith("/t/"):
                firm = path[3:]
                counters.append(self.tenants.setdefault(
                    firm, Counter(self.tenant_limit, self.window)))
            if not all(c.room(now) for c in counters):
                self.refused += 1
                return False
            for counter in counters:
                counter.count(now)
            return True


def serve(app: App) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status = 200 if app.arrive(self.path) else 429
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 512  # every worker's connections at once

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One worker process: the firms' clients (callbridge.http.build_client) on one
    LimiterRegistry; ``concurrency`` loops sending through them."""
    import sqlalchemy as sa
    from callbridge.capabilities import Connection, RateBucket
    from callbridge.errors import RateLimited
    from callbridge.http import Credentials, RetryPolicy, build_client
    from callbridge.ratelimit import LimiterRegistry, priority
    from callbridge.sharedlimits import SharedBucketStore

    engine = sa.create_engine(args.url)
    store = SharedBucketStore(engine)
    registry = LimiterRegistry(store=store if args.share else None)
    tenants = args.scenario == "tenants"
    buckets = [RateBucket(name="partner", requests=args.limit, per_seconds=args.window,
                          scope="partner")]
    if tenants:
        buckets.append(RateBucket(name="token", requests=args.tenant_limit,
                                  per_seconds=args.window, scope="token"))
    firms = args.firms if tenants else args.concurrency
    connection = Connection(base_url=args.target, auth="bearer")
    clients = [build_client(
        tenant=f"firm{n}", app="bench", plugin="bench", plugin_version="1", connection=connection,
        credentials=Credentials(token=f"bench-token-{n:04d}"), buckets=tuple(buckets),
        limiters=registry, retry=RetryPolicy(enabled=False, inline_max_wait=args.max_wait))
        for n in range(firms)]
    counts: dict[str, Any] = {"ok": 0, "429": 0, "refused": 0}
    refusals: list[tuple[float, str, str]] = []  # (time, bucket, firm)
    for each in (engine, store.engine):  # connected before the start
        with each.connect():
            pass
    print("ready", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))  # every worker starts then
    await asyncio.sleep(max(0.0, start_at - time.time()))
    end = start_at + args.seconds
    rng = random.Random(os.getpid())

    async def send(n: int) -> None:
        try:
            await clients[n].get(f"/t/firm{n}" if tenants else "/")
            counts["ok"] += 1
        except RateLimited as exc:
            if exc.status_code == 429:  # the app answered 429
                counts["429"] += 1
            else:  # the host's buckets refused to wait that long
                counts["refused"] += 1
                name = "token" if "'token'" in str(exc) else "partner"
                refusals.append((time.time(), name, f"firm{n}"))
                await asyncio.sleep(0.05)

    async def loop(i: int) -> None:
        if not tenants:
            while time.time() < end:
                await send(i)
            return
        # Index syncs (priority -1) on a few loops; deliveries (0 lookups, then 1 writes).
        syncing = i < args.syncs
        while time.time() < end:
            n = rng.randrange(firms)
            if syncing:
                priority.set(-1)
                for _ in range(5):
                    await send(n)
                continue
            priority.set(0)
            await send(n)
            priority.set(1)
            await send(n)
            await send(n)

    await asyncio.gather(*(loop(i) for i in range(args.concurrency)))
    for client in clients:
        await client.aclose()
    await store.drain()
    getattr(store, "close", lambda: None)()
    engine.dispose()
    counts["refusals"] = refusals
    return counts


def fraction_used(counter: Counter, first: float, seconds: float, steps: int = 2000) -> float:
    """The mean, over every window that starts in the span measured (the first
    request on, while demand lasts), of the requests in it over the limit."""
    times, window = counter.accepted, counter.window
    starts = [first + (seconds - window) * i / steps for i in range(steps + 1)]
    used = [sum(1 for t in times if s <= t < s + window) for s in starts]
    return sum(used) / (len(used) * counter.limit)


def in_window(counter: Counter | None, end: float) -> int:
    if counter is None:
        return 0
    return sum(1 for t in counter.accepted if end - counter.window <= t <= end)


def peak_fraction(counter: Counter) -> float:
    """The most any window (ending at a request) held, over the limit."""
    times, most, lo = counter.accepted, 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - counter.window:
            lo += 1
        most = max(most, hi - lo + 1)
    return most / counter.limit


def run(args: argparse.Namespace) -> dict[str, Any]:
    from callbridge.ledger import Ledger

    ledger = Ledger(args.url, secret_key=Ledger.generate_key())  # nothing is encrypted here
    ledger.migrate()
    ledger.close()
    tenants = args.scenario == "tenants"
    app = App(args.limit, args.window, args.tenant_limit if tenants else None)
    server = serve(app)
    target = f"http://127.0.0.1:{server.server_address[1]}/"
    seconds = args.windows * args.window
    child = [sys.executable, __file__, "--child", "--url", args.url, "--target", target,
             "--scenario", args.scenario, "--limit", str(args.limit),
             "--tenant-limit", str(args.tenant_limit), "--window", str(args.window),
             # Demand outlasts the span measured (from the first request on).
             "--seconds", str(seconds + (0 if tenants else 2 * args.window + 1)),
             "--concurrency", str(args.concurrency), "--firms", str(args.firms),
             "--syncs", str(args.syncs), "--max-wait", str(args.max_wait),
             *([] if args.share else ["--no-share"])]
    began = os.times()
    procs = [subprocess.Popen(child, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(args.workers)]
    for proc in procs:  # every process imported and connected
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start_at = f"{time.time() + 0.2}\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(start_at)
        proc.stdin.close()
    per_worker = []
    for proc in procs:
        assert proc.stdout is not None
        per_worker.append(json.loads(proc.stdout.read()))
        proc.wait(timeout=120)
    spent = os.times()
    server.shutdown()
    out: dict[str, Any] = {
        "scenario": args.scenario, "workers": args.workers, "shared": args.share,
        "limit": args.limit, "window_s": args.window, "max_wait_s": args.max_wait,
        "answers_429": app.refused,
        "workers_cpu_s": round(spent.children_user + spent.children_system
                               - began.children_user - began.children_system, 2),
    }
    refusals = [r for w in per_worker for r in w.pop("refusals")]
    if tenants:
        needless = 0
        for at, name, firm in refusals:
            counter = app.partner if name == "partner" else app.tenants.get(firm)
            limit = args.limit if name == "partner" else args.tenant_limit
            if in_window(counter, at) < 0.9 * limit:
                needless += 1
        requests = sum(w["ok"] + w["429"] + w["refused"] for w in per_worker)
        out.update({
            "tenant_limit": args.tenant_limit, "firms": args.firms,
            "requests": requests, "refused": len(refusals), "needless_refusals": needless,
            "partner_peak_fraction": round(peak_fraction(app.partner), 3),
            "token_peak_fraction": round(max((peak_fraction(c) for c in app.tenants.values()),
                                             default=0.0), 3),
        })
    else:
        counter = app.partner
        first = counter.accepted[0] if counter.accepted else 0.0
        out.update({
            "windows_measured": args.windows,
            "accepted_in_windows": sum(1 for t in counter.accepted if t < first + seconds),
            "fraction_of_limit": round(fraction_used(counter, first, seconds), 3),
            "refused": len(refusals),
        })
    out["per_worker"] = per_worker
    return out


def bench_shared_limit(url: str | None = None, **options: Any) -> dict[str, Any]:
    """The measure on ``url``, else on an embedded PostgreSQL cluster of its own."""
    args = parser().parse_args([])
    for name, value in options.items():
        setattr(args, name, value)
    settle(args)
    if url:
        args.url = url
        return run(args)
    from callbridge.testing.postgres import start_cluster, stop_now

    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as folder:
        cluster, args.url = start_cluster(Path(folder) / "data")
        try:
            return run(args)
        finally:
            stop_now(cluster)


def bench_all(url: str | None = None) -> dict[str, dict[str, Any]]:
    """What ``bench.py --only shared_limit`` reports: 4 workers at 20 and 200 requests
    a second through one partner key, and many firms with generous limits."""
    return {
        "partner_20_per_s": bench_shared_limit(url),
        "partner_200_per_s": bench_shared_limit(url, limit=400, concurrency=32),
        "tenants": bench_shared_limit(url, scenario="tenants", workers=2, windows=5,
                                      concurrency=16),
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database (default: an embedded cluster)")
    parser.add_argument("--scenario", choices=("partner", "tenants"), default="partner")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None,
                        help="the partner limit per window (partner: 40, tenants: 2000)")
    parser.add_argument("--tenant-limit", type=int, default=40,
                        help="each firm's limit per window (tenants)")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="requests in flight per worker (partner: one firm each)")
    parser.add_argument("--firms", type=int, default=100, help="firms (tenants)")
    parser.add_argument("--syncs", type=int, default=2,
                        help="loops per worker at priority -1 (tenants)")
    parser.add_argument("--max-wait", type=float, default=None,
                        help="the client's longest wait for its buckets (partner: 60, tenants: 2)")
    parser.add_argument("--no-share", dest="share", action="store_false",
                        help="each process with buckets of its own (to compare)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    return parser


def settle(args: argparse.Namespace) -> None:
    """The defaults that depend on the scenario (tenants: generous limits, which the
    demand of two cores stays well below, and the wait a delivery would sit through)."""
    tenants = args.scenario == "tenants"
    if args.limit is None:
        args.limit = 2000 if tenants else 40
    if args.max_wait is None:
        args.max_wait = 2.0 if tenants else 60.0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settle(args)
    if args.child:
        print(json.dumps(asyncio.run(worker(args))))
        return
    print(json.dumps(bench_shared_limit(args.url, **{
        k: v for k, v in vars(args).items() if k != "url"}), indent=2))


if __name__ == "__main__":
    main()
