"""CPU time per event with 1, 2 and 4 `callbridge worker` processes on one PostgreSQL
ledger (Procrastinate task queue), and the throughput of each fleet.

The app is a plugin that answers at once from memory (``tiny``, defined here; each
worker is ``callbridge worker`` with it added to the plugins found): no HTTP, no
rate limit, so what is measured is the host, the ledger and the coordination of
the workers, not an app. Its one write goes through the write protocol
(``ctx.delivery.step``: the step begun, the record kept, then the outcome), as a
real plugin's does, and is noted in a file per process (to count duplicates).

For each fleet size, in a fresh database of an embedded PostgreSQL (fsync off: a
throwaway cluster; CPU is what is compared):

1. ``--events`` call events over ``--tenants`` firms are stored, each held back
   (``not_before`` far ahead), so nothing is due;
2. N workers start, each pinned to one core (round-robin over the cores this process
   may use; with 2 cores, 4 workers share them two by two) and settle idle;
3. ``--warmup`` more events (stored first) are released and logged, not measured: what
   each process does once (imports on first use, caches, prepared statements) is
   start-up, not coordination;
4. every other delivery is released in one statement; the clock starts;
5. once every delivery is logged the clock stops; each worker's CPU (user + system,
   every thread, from /proc) is read, and the PostgreSQL server's.

Reported for each N: events/s, the workers' CPU per event (all of them together,
the figure compared: ``ratio_to_1`` of 4 workers ≤ 1.2 wanted), each worker's
share, the server's CPU per event, duplicates (must be 0) and lost (must be 0)::

    python benchmarks/bench_workers.py [--events 12000] [--warmup 1000] [--tenants 16] [--fleets 1,2,4]

Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
LOG_ENV = "BENCH_WORKERS_LOG"
TICK = os.sysconf("SC_CLK_TCK")


# --- the worker side ---------------------------------------------------------------------

def tiny_plugin() -> object:
    """A plugin answering at once: a contact, a matter, a user, one log written."""
    from callbridge.capabilities import Capability, Connection, Declaration
    from callbridge.hookspecs import hookimpl
    from callbridge.models import AppUser, Contact, LogResult, Matter

    out = open(os.environ[LOG_ENV], "a", buffering=1)  # kept open for the process's life

    class Tiny:
        @hookimpl
        def declare(self) -> Declaration:
            return Declaration(name="tiny", title="Tiny", version="1", hook_api_version="2.0",
                               capabilities=frozenset({
                                   Capability.CALLS, Capability.CONTACT_SEARCH_PHONE,
                                   Capability.MATTERS, Capability.USERS}))

        @hookimpl
        def connection(self, options: Any) -> Connection:
            return Connection(base_url="http://127.0.0.1:9")  # never called

        @hookimpl
        async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
            return [Contact(id="c1", phones=(party.e164,))]

        @hookimpl
        async def find_matters(self, ctx: Any, contact: Any) -> list[Matter]:
            return [Matter(id="m1")]

        @hookimpl
        async def find_user(self, ctx: Any, email: Any) -> AppUser | None:
            return AppUser(id="u1")

        @hookimpl
        async def pick_default_user(self, ctx: Any) -> AppUser | None:
            return AppUser(id="u1")

        @hookimpl
        async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
            async def create() -> str:
                out.write(f"{event.id}\n")
                return f"log-{event.id}"

            async def find() -> str | None:
                return None

            return LogResult(records=(await ctx.delivery.step("log", "log", create=create,
                                                               find=find),))

    return Tiny()


def child(argv: list[str]) -> None:
    """``callbridge worker`` with the tiny plugin among those found."""
    import callbridge.plugins
    import callbridge.runtime
    from callbridge.cli import main

    found = callbridge.plugins.discover

    def discover(**kwargs: Any) -> callbridge.plugins.Registry:
        return found(**kwargs, extra=[tiny_plugin()])

    callbridge.runtime.discover = discover  # type: ignore[attr-defined]
    sys.argv = ["callbridge", *argv]
    main()


# --- the measure -------------------------------------------------------------------------

def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process (every thread), and of its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def server_cpu(postmaster: int) -> float:
    """The PostgreSQL server's CPU: the postmaster, its ended backends, its live ones."""
    import psutil

    total = cpu_seconds(postmaster, children=True)
    for proc in psutil.Process(postmaster).children():
        try:
            total += cpu_seconds(proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def call(i: int, tenants: int) -> str:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(seconds=i)
    return json.dumps({
        "kind": "call", "id": f"w-{i}", "tenant": f"t{i % tenants}", "direction": "inbound",
        "external": {"number": f"+1 212 555 01{i % 100:02d}"},
        "internal": {"email": "ann@example.com"},
        "started_at": start.isoformat(), "answered_at": (start + timedelta(seconds=5)).isoformat(),
        "ended_at": (start + timedelta(seconds=65)).isoformat(), "outcome": "completed"})


def settings(folder: Path, url: str, tenants: int, concurrency: int) -> Path:
    path = folder / "callbridge.toml"
    lines = [f'[ledger]\nurl = "{url}"\nlease_seconds = 30\n',
             f'[workers]\nqueue = "procrastinate"\nconcurrency = {concurrency}\n']
    lines += [f"[tenants.t{i}.apps.tiny]\n" for i in range(tenants)]
    path.write_text("\n".join(lines))
    return path


def lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def released_until_logged(db: Any, statement: str, total: int) -> int:
    """Run ``statement`` (a release), then wait until ``total`` deliveries are logged."""
    started = time.monotonic()
    with db.begin() as conn:
        conn.exec_driver_sql(statement)
    logged = 0
    while time.monotonic() - started < 600:
        with db.connect() as conn:
            logged = conn.exec_driver_sql(
                "SELECT count(*) FROM deliveries WHERE status = 'logged'").scalar_one()
        if logged >= total:
            break
        time.sleep(0.05)
    return int(logged)


def one_fleet(server_url: str, postmaster: int, folder: Path, workers: int, events: int,
              tenants: int, concurrency: int, cores: list[int], run: int = 0,
              warmup: int = 0) -> dict[str, Any]:
    import sqlalchemy as sa
    from callbridge.events import parse_event
    from callbridge.ledger import Ledger
    from callbridge.testing.postgres import create_database

    url = create_database(server_url, f"workers_{run}_{workers}")
    ledger = Ledger(url)
    ledger.migrate()
    total = warmup + events
    ledger.store_events([(parse_event(call(i, tenants)), ["tiny"]) for i in range(total)])
    db = sa.create_engine(url)
    with db.begin() as conn:  # held back until every worker is up
        conn.exec_driver_sql("UPDATE deliveries SET not_before = '2100-01-01'")
    config = settings(folder, url, tenants, concurrency)
    logs = [folder / f"worker-{run}-{workers}-{n}.log" for n in range(workers)]
    procs = []
    for n in range(workers):
        env = {**os.environ, LOG_ENV: str(logs[n])}
        proc = subprocess.Popen([sys.executable, str(HERE), "--child", "worker", "--config",
                                 str(config)], env=env, stdout=subprocess.PIPE,
                                stderr=(folder / "workers.err").open("a"), text=True)
        os.sched_setaffinity(proc.pid, {cores[n % len(cores)]})
        procs.append(proc)
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "started" not in line:
                raise RuntimeError(f"a worker did not start: {line!r} (see {folder}/workers.err)")
        time.sleep(3.0)  # each has made its queue connection and run its first dispatch
        if warmup:  # not measured: what each process does once (imports, caches, plans)
            released_until_logged(db, "UPDATE deliveries SET not_before = NULL WHERE id IN "
                                  f"(SELECT id FROM deliveries ORDER BY id LIMIT {warmup})", warmup)
            time.sleep(2.0)  # their jobs have ended
        before = [lines(p) for p in logs]
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        pg0 = server_cpu(postmaster)
        started = time.monotonic()
        logged = released_until_logged(db, "UPDATE deliveries SET not_before = NULL", total)
        seconds = time.monotonic() - started
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
        pg = server_cpu(postmaster) - pg0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    with db.connect() as conn:
        records = conn.exec_driver_sql("SELECT count(*), count(DISTINCT delivery_id) "
                                       "FROM records").one()
        statuses = dict(conn.exec_driver_sql(
            "SELECT status, count(*) FROM deliveries GROUP BY status").all())
    db.dispose()
    ledger.close()
    written = [Counter(p.read_text().split()) if p.exists() else Counter() for p in logs]
    every = sum(written, Counter())
    return {
        "workers": workers, "events": events, "warmup_events": warmup, "logged": logged,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds, 1),
        "workers_cpu_s": round(sum(cpu), 2),
        "cpu_us_per_event": round(sum(cpu) / events * 1e6, 1),
        "server_cpu_us_per_event": round(pg / events * 1e6, 1),
        "per_worker": [{"core": cores[n % len(cores)], "cpu_s": round(c, 2), "events": e,
                        "cpu_us_per_event": round(c / e * 1e6, 1) if e else None}
                       for n, (c, e) in enumerate(zip(cpu, [sum(w.values()) - b for w, b in zip(
                           written, before, strict=True)], strict=True))],
        "duplicates": sum(n - 1 for n in every.values()) + (records[0] - records[1]),
        "lost": total - len(every) + (total - statuses.get("logged", 0)),
        "statuses": statuses,
    }


def bench_workers(*, events: int = 12000, tenants: int = 16, fleets: tuple[int, ...] = (1, 2, 4),
                  concurrency: int = 16, warmup: int = 1000) -> dict[str, Any]:
    """The measure, on an embedded PostgreSQL cluster of its own."""
    from callbridge.ledger import Ledger
    from callbridge.testing.postgres import _admin, start_cluster, stop_now

    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-workers-") as tmp:
        folder = Path(tmp)
        cluster, server_url = start_cluster(folder / "pg")
        try:
            _admin(server_url, "ALTER SYSTEM SET fsync = off",
                   "ALTER SYSTEM SET max_connections = 200", "SELECT pg_reload_conf()")
            postmaster = int((Path(cluster.pgdata) / "postmaster.pid").read_text().split()[0])
            runs = [one_fleet(server_url, postmaster, folder, n, events, tenants, concurrency,
                              cores, run, warmup) for run, n in enumerate(fleets)]
        finally:
            stop_now(cluster)
    first = runs[0]["cpu_us_per_event"]
    for r in runs:
        r["ratio_to_1"] = round(r["cpu_us_per_event"] / first, 2)
    return {"cores": len(cores), "pinned": f"worker n on core n mod {len(cores)}; "
            "the PostgreSQL server and this process unpinned",
            "tenants": tenants, "concurrency": concurrency, "warmup_events": warmup,
            "app": "tiny: answers from memory",
            "load_before": [round(x, 2) for x in os.getloadavg()], "fleets": runs,
            "cpu_growth_1_to_last": runs[-1]["ratio_to_1"]}


def table(r: dict[str, Any]) -> str:
    head = ("workers", "events/s", "CPU us/event", "x of 1", "server us/event", "dup", "lost",
            "per worker (core: events, us/event)")
    rows = [head]
    for f in r["fleets"]:
        rows.append((str(f["workers"]), str(f["events_per_s"]), str(f["cpu_us_per_event"]),
                     str(f["ratio_to_1"]), str(f["server_cpu_us_per_event"]),
                     str(f["duplicates"]), str(f["lost"]),
                     "; ".join(f"{w['core']}: {w['events']}, {w['cpu_us_per_event']}"
                               for w in f["per_worker"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     for row in rows) + f"\n({r['cores']} cores; {r['pinned']})"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--tenants", type=int, default=16)
    parser.add_argument("--fleets", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections each worker works at once")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="events logged first, not measured (each process's one-time costs)")
    args = parser.parse_args(argv)
    result = bench_workers(events=args.events, tenants=args.tenants,
                           fleets=tuple(int(x) for x in args.fleets.split(",")),
                           concurrency=args.concurrency, warmup=args.warmup)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
