"""How much of a rate limit several worker processes reach together, sharing it.

A loopback app counts the requests it gets in a sliding window and answers 429
above its limit. N processes, each with its own LimiterRegistry on one
PostgreSQL database (callbridge.sharedlimits) and one partner-scoped bucket
declaring that limit, send through the host's client (one per firm, several
firms per process) as fast as the bucket lets them (demand well above the
limit). Reported: the 429s (must be 0) and the fraction of the limit used:
the mean, over every window starting from the first request while demand lasts,
of the requests the app got in it over its limit (≥ 0.9 wanted)::

    python benchmarks/bench_shared_limit.py                 # embedded PostgreSQL
    python benchmarks/bench_shared_limit.py --url postgresql+psycopg://...

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    """The app's limit: at most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.accepted: list[float] = []
        self.refused = 0
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def arrive(self) -> bool:
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                self.refused += 1
                return False
            self._recent.append(now)
            self.accepted.append(now)
            return True


def serve(counter: Counter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if counter.arrive() else 429
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # every worker's connections at once

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def worker(url: str, target: str, limit: int, window: float, seconds: float,
                 concurrency: int, share: bool = True) -> dict[str, Any]:
    """One worker process: ``concurrency`` firms of one partner app, each with the
    host's own client (callbridge.http.build_client) on one LimiterRegistry."""
    import sqlalchemy as sa
    from callbridge.capabilities import Connection, RateBucket
    from callbridge.errors import RateLimited
    from callbridge.http import Credentials, RetryPolicy, build_client
    from callbridge.ratelimit import LimiterRegistry
    from callbridge.sharedlimits import SharedBucketStore

    engine = sa.create_engine(url, pool_size=concurrency + 2)
    store = SharedBucketStore(engine)
    registry = LimiterRegistry(store=store if share else None)
    bucket = RateBucket(name="api", requests=limit, per_seconds=window, scope="partner")
    connection = Connection(base_url=target, auth="bearer")
    clients = [build_client(
        tenant=f"firm{n}", app="bench", plugin="bench", plugin_version="1", connection=connection,
        credentials=Credentials(token=f"bench-token-{n:04d}"), buckets=(bucket,),
        limiters=registry, retry=RetryPolicy(enabled=False, inline_max_wait=60.0))
        for n in range(concurrency)]
    counts = {"ok": 0, "429": 0}
    with engine.connect():  # connected before the start
        pass
    print("ready", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))  # every worker starts then
    await asyncio.sleep(max(0.0, start_at - time.time()))
    end = start_at + seconds

    async def firm(n: int) -> None:
        while time.time() < end:
            try:
                await clients[n].get("/")
                counts["ok"] += 1
            except RateLimited:  # the app answered 429
                counts["429"] += 1

    await asyncio.gather(*(firm(n) for n in range(concurrency)))
    for client in clients:
        await client.aclose()
    await store.drain()
    engine.dispose()
    return counts


def fraction_used(counter: Counter, first: float, seconds: float, steps: int = 2000) -> float:
    """The mean, over every window that starts in the span measured (the first
    request on, while demand lasts), of the requests in it over the limit."""
    times, window = counter.accepted, counter.window
    starts = [first + (seconds - window) * i / steps for i in range(steps + 1)]
    used = [sum(1 for t in times if s <= t < s + window) for s in starts]
    return sum(used) / (len(used) * counter.limit)


def run(url: str, *, workers: int, limit: int, window: float, windows: int,
        concurrency: int, share: bool = True) -> dict[str, Any]:
    from callbridge.ledger import Ledger

    ledger = Ledger(url, secret_key=Ledger.generate_key())  # nothing is encrypted here
    ledger.migrate()
    ledger.close()
    counter = Counter(limit, window)
    server = serve(counter)
    target = f"http://127.0.0.1:{server.server_address[1]}/"
    seconds = windows * window
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--child", "--url", url, "--target", target,
         "--limit", str(limit), "--window", str(window),
         "--seconds", str(seconds + window), "--concurrency", str(concurrency),
         *([] if share else ["--no-share"])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
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
        proc.wait(timeout=60)
    server.shutdown()
    first = counter.accepted[0] if counter.accepted else 0.0
    used = sum(1 for t in counter.accepted if t < first + seconds)
    return {
        "workers": workers, "shared": share, "limit": limit, "window_s": window, "windows_measured": windows,
        "accepted_in_windows": used,
        "fraction_of_limit": round(fraction_used(counter, first, seconds), 3),
        "answers_429": counter.refused, "per_worker": per_worker,
    }


def bench_shared_limit(url: str | None = None, *, workers: int = 4, limit: int = 40,
                       window: float = 2.0, windows: int = 4, concurrency: int = 8,
                       share: bool = True) -> dict[str, Any]:
    """The measure on ``url``, else on an embedded PostgreSQL cluster of its own."""
    if url:
        return run(url, workers=workers, limit=limit, window=window, windows=windows,
                   concurrency=concurrency, share=share)
    from callbridge.testing.postgres import start_cluster, stop_now

    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as folder:
        cluster, url = start_cluster(Path(folder) / "data")
        try:
            return run(url, workers=workers, limit=limit, window=window, windows=windows,
                       concurrency=concurrency, share=share)
        finally:
            stop_now(cluster)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database (default: an embedded cluster)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-share", action="store_true",
                        help="each process with buckets of its own (to compare)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(worker(
            args.url, args.target, args.limit, args.window, args.seconds, args.concurrency,
            not args.no_share))))
        return
    result = bench_shared_limit(args.url, workers=args.workers, limit=args.limit,
                                window=args.window, windows=args.windows,
                                concurrency=args.concurrency, share=not args.no_share)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
