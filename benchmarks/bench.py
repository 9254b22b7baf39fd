"""`nox -s bench`: throughput figures, each beside what it is compared with.

1. pipeline: events per second through the pipeline and the ledger (SQLite file)
   with an in-process plugin that does no I/O, beside a baseline in the same run
   that parses the same events with pydantic and writes equivalent rows with
   plain sqlite3, committing at the same points (so both are equally durable).
   Run --runs times (default 5), each in a process of its own; medians reported.
   Both sides run under the garbage collector's policy of `callbridge ingest`, `drain`,
   `serve` and `worker` (callbridge.process.tune_gc; CALLBRIDGE_GC=default: Python's).
2. io: events per second for 20 tenants against the notebook server on
   loopback with 50 ms latency and a rate limit per tenant, as a fraction of
   the bound min(total rate limit, concurrency / latency) / requests per event.

3. clio_batch: the 15-call batch (15 completed calls from three known contacts)
   through ``ingest`` to the Clio sandbox on loopback under its 50 requests a
   minute, on the real clock: wall time, requests and 429s.

4. ack: acknowledgements per second of `callbridge serve`'s intake, server and load
   generator pinned to separate cores with taskset, each acknowledgement surviving a
   SIGKILL, with the p50 and p99 time to acknowledge (bench_ack.py).

5. hangup: hang-up to log written, p50 and p99 over 1,000 calls sent as signed
   webhooks to `callbridge serve` across 250 tenants (no Clio rate limit binds),
   logged into the Clio sandbox on loopback (bench_hangup.py).

6. tenants: 10,000 configured tenants (a tenants directory, a secrets file), 1,000 of
   them active, in one process: peak RSS (goal: under 1 GiB), load and log times, the
   reload of one changed tenant file (bench_tenants.py).

7. profile: the pipeline's CPU time per event by part (bench_hotpath.py), medians of
   --runs runs.

8. startup: `callbridge --help` and `callbridge plugins` (the app plugins, and every
   installed plugin) against `import httpx2`, CPU and wall (bench_startup.py).

9. ledger_scale: history and an idle claim at --rows deliveries on SQLite and
   PostgreSQL, seeded in bulk SQL (bench_ledger_scale.py).

10. shared_limit: four worker processes sharing one partner rate-limit bucket through
   an embedded PostgreSQL, against a loopback app answering 429 above the limit, at 20
   and at 200 requests a second: the fraction of the limit used (goal: at least 0.9) and
   the 429s (goal: 0); and two workers serving 100 firms (token-scoped buckets and one
   partner bucket, generous limits): the requests refused needlessly (goal: 0)
   (bench_shared_limit.py).

11. workers: CPU time per event with 1, 2 and 4 `callbridge worker` processes sharing an
   embedded PostgreSQL ledger through the task queue, pinned to cores round-robin, against
   a plugin answering from memory: the growth from 1 to 4 (goal: at most 1.2x), events/s
   with each, duplicates and lost (goal: 0) (bench_workers.py).

12. scale: the scale demo of `nox -s scale` (scale.py): 20,000 events, 100 firms, two
   workers sharing an embedded PostgreSQL, one SIGKILLed midway, the Clio and Smokeball
   sandboxes with their limits x40; duplicates, lost and 429s (goal: 0 each) and the
   time to done (goal: under 10 minutes). About ten minutes: only with --only scale.

Usage: python benchmarks/bench.py [--events N] [--rows N] [--runs N]
       [--only pipeline|io|clio_batch|ack|hangup|tenants|profile|startup|ledger_scale|
               shared_limit|workers|scale]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callbridge.capabilities import Capability, Connection, Declaration
from callbridge.engine import Engine
from callbridge.events import dump_event, parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import AppUser, Contact, LogResult, Matter, Record
from callbridge.plugins import Registry
from callbridge.process import tune_gc
from callbridge.settings import SettingsSource

PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
#: The CPU seconds (every thread of the process) of each side's last timed run.
LAST_CPU: dict[str, float] = {}
#: Whether the last callbridge run tuned the garbage collector (callbridge.process.tune_gc).
LAST_GC: dict[str, bool] = {}


def payloads(n: int, tenants: int = 1) -> list[str]:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    out = []
    for i in range(n):
        t = start + timedelta(seconds=i)
        out.append(json.dumps({
            "kind": "call", "id": f"c-{i}", "tenant": f"t{i % tenants}", "direction": "inbound",
            "external": {"number": f"+1 212 555 01{i % 100:02d}", "name": "Dana Whitfield"},
            "internal": {"email": "ann@example.com"},
            "started_at": t.isoformat(), "answered_at": (t + timedelta(seconds=5)).isoformat(),
            "ended_at": (t + timedelta(seconds=65)).isoformat(), "outcome": "completed",
            "notes": "Asked about the hearing date."}))
    return out


class NoIO:
    """A plugin that answers from memory: the host's own cost, with no app behind it."""

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="noio", version="1", hook_api_version="1.0", capabilities=frozenset({
            Capability.CALLS, Capability.CONTACT_SEARCH_PHONE, Capability.MATTERS, Capability.USERS}))

    @hookimpl
    def connection(self, options: Any) -> Connection:
        return Connection(base_url="http://noio.invalid")

    @hookimpl
    async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
        return [Contact(id="1", phones=(party.e164,))]

    @hookimpl
    async def find_matters(self, ctx: Any, contact: Any) -> list[Matter]:
        return [Matter(id="m1")]

    @hookimpl
    async def find_user(self, ctx: Any, email: Any, extension: Any) -> AppUser | None:
        return AppUser(id="u1")

    @hookimpl
    async def pick_default_user(self, ctx: Any) -> AppUser | None:
        return AppUser(id="u1")

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        record = Record(kind="log", id=event.id)
        await ctx.delivery.remember(record)
        return LogResult(records=(record,))


async def callbridge_run(lines: list[str], folder: Path, batch: int) -> float:
    registry = Registry()
    registry.add(NoIO())
    # Settings from a file, as `callbridge ingest` reads them (a changed file applies from
    # the next read: each read checks it).
    path = folder / "callbridge.toml"
    path.write_text("[tenants.t0.apps.noio]\n")
    settings = SettingsSource(path, plugin_models=registry.settings_models())
    ledger = Ledger(f"sqlite:///{folder / 'callbridge.db'}")
    ledger.migrate()
    engine = Engine(settings=settings, registry=registry, ledger=ledger, concurrency=batch)
    # Start-up outside the timer, as the baseline's connection and tables are: the engine,
    # the ledger's migration, and the app's connection (HTTP pools, TLS contexts).
    engine.context("t0", "noio")
    # Start-up done: the garbage collector's policy of `callbridge ingest` (the baseline,
    # run next in this process, keeps it too).
    LAST_GC["tuned"] = tune_gc()
    started, cpu = time.perf_counter(), time.process_time()
    await engine.ingest_many([parse_event(line) for line in lines])
    await engine.run_until_idle()
    elapsed = time.perf_counter() - started
    LAST_CPU["callbridge"] = time.process_time() - cpu
    logged = sum(n for (app, status), n in ledger.counts().items() if status == "logged")
    assert logged == len(lines), (logged, len(lines))
    await engine.aclose()
    return elapsed


def commit(db: sqlite3.Connection) -> None:
    """The baseline's COMMIT (a function of its own: the profile meters it apart)."""
    db.execute("COMMIT")


def baseline_run(lines: list[str], folder: Path, batch: int) -> float:
    db = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    for pragma in PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    db.executescript("""
        CREATE TABLE events (id INTEGER PRIMARY KEY, tenant TEXT, source TEXT, kind TEXT,
            source_id TEXT, occurred_at TEXT, content TEXT, UNIQUE (tenant, source, kind, source_id));
        CREATE TABLE deliveries (id INTEGER PRIMARY KEY, event_id INTEGER, tenant TEXT, app TEXT,
            status TEXT, lease_owner TEXT, fence INTEGER DEFAULT 0, UNIQUE (tenant, app, event_id));
        CREATE TABLE records (id INTEGER PRIMARY KEY, delivery_id INTEGER, kind TEXT, app_id TEXT);
        CREATE TABLE attempts (id INTEGER PRIMARY KEY, delivery_id INTEGER, status TEXT);
    """)
    started, cpu = time.perf_counter(), time.process_time()
    for line in lines:  # the same parse, one transaction per stored event
        event = parse_event(line)
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute("INSERT INTO events (tenant, source, kind, source_id, occurred_at, content) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (*event.key, event.occurred_at.isoformat(),
                                                        dump_event(event)))
        db.execute("INSERT INTO deliveries (event_id, tenant, app, status) VALUES (?, ?, 'noio', 'pending')",
                   (cur.lastrowid, event.tenant))
        commit(db)
    while True:  # claim a batch in one transaction, then one per record and one per outcome
        db.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in db.execute(
            "SELECT id FROM deliveries WHERE status = 'pending' ORDER BY id LIMIT ?", (batch,))]
        db.executemany("UPDATE deliveries SET status = 'claimed', lease_owner = 'b', fence = fence + 1 "
                       "WHERE id = ?", [(i,) for i in ids])
        commit(db)
        if not ids:
            break
        for i in ids:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO records (delivery_id, kind, app_id) VALUES (?, 'log', ?)", (i, str(i)))
            commit(db)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO attempts (delivery_id, status) VALUES (?, 'logged')", (i,))
            db.execute("UPDATE deliveries SET status = 'logged', lease_owner = NULL WHERE id = ?", (i,))
            commit(db)
    elapsed = time.perf_counter() - started
    LAST_CPU["baseline"] = time.process_time() - cpu
    db.close()
    return elapsed


def bench_pipeline(n: int, batch: int) -> dict[str, Any]:
    lines = payloads(n)
    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    with tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(callbridge_run(lines, Path(tmp), batch))
        base = baseline_run(lines, Path(tmp), batch)
    result = {
        "events": n, "callbridge_events_per_s": round(n / ours, 1),
        "baseline_events_per_s": round(n / base, 1), "ratio": round(ours / base, 2),
        "callbridge_cpu_us_per_event": round(LAST_CPU["callbridge"] / n * 1e6, 1),
        "baseline_cpu_us_per_event": round(LAST_CPU["baseline"] / n * 1e6, 1),
        "cpu_ratio": round(LAST_CPU["callbridge"] / LAST_CPU["baseline"], 2),
        "garbage_collector": ("tuned as `callbridge ingest` tunes it (callbridge.process."
                              "tune_gc), for both sides" if LAST_GC["tuned"]
                              else "Python's default (CALLBRIDGE_GC=default)"),
        "comparable_by": {
            "rows_per_event": "1 event + 1 delivery + 1 record + 1 attempt (both sides)",
            "commits_per_event": "store 1, record 1, outcome 1, plus 1 per claimed batch (both sides)",
            "batch": batch, "sqlite_pragmas": list(PRAGMAS),
            "callbridge_extra": "encryption of contents, keyed hashes, leases with renewal, "
                                "outcome history, the pipeline's hook calls",
        },
    }
    return result


def in_processes(only: str, runs: int, events: int, batch: int) -> list[dict[str, Any]]:
    """``--only ONLY`` run ``runs`` times, each in a process of its own (so no run
    inherits another's caches, files or collector state); each run's report."""
    reports = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--only", only,
                               "--runs", "1", "--events", str(events), "--batch", str(batch)],
                              capture_output=True, text=True, check=True)
        reports.append(json.loads(done.stdout[done.stdout.index("\n{") + 1:])[only])
    return reports


def medians(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number in ``reports`` (nested dicts kept), others from the first."""
    out: dict[str, Any] = {}
    for key, first in reports[0].items():
        values = [r[key] for r in reports]
        if isinstance(first, dict):
            out[key] = medians(values)
        elif isinstance(first, int | float) and not isinstance(first, bool):
            out[key] = statistics.median(values)
        else:
            out[key] = first
    return out


def pipeline_runs(n: int, batch: int, runs: int) -> dict[str, Any]:
    """:func:`bench_pipeline` ``runs`` times, each in its own process: medians and each run."""
    if runs <= 1:
        return bench_pipeline(n, batch)
    reports = in_processes("pipeline", runs, n, batch)
    keep = ("callbridge_events_per_s", "baseline_events_per_s", "ratio",
            "callbridge_cpu_us_per_event", "baseline_cpu_us_per_event", "cpu_ratio")
    return {**medians(reports), "runs": [{k: r[k] for k in keep} for r in reports]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", choices=["pipeline", "io", "clio_batch", "ack", "hangup",
                                           "tenants", "profile", "startup", "ledger_scale",
                                           "shared_limit", "workers", "scale"])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="deliveries in the ledger for ledger_scale")
    parser.add_argument("--runs", type=int, default=5,
                        help="pipeline and profile: runs, each in a process of its own "
                             "(medians reported)")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if args.only in (None, "pipeline"):
        report["pipeline"] = p = pipeline_runs(args.events, args.batch, args.runs)
        for i, run in enumerate(p.get("runs", [])):
            print(f"pipeline run {i + 1}: ratio {run['ratio']}x, CPU ratio {run['cpu_ratio']}x")
        medians_of = f" (medians of {args.runs} runs)" if args.runs > 1 else ""
        print(f"pipeline{medians_of}: callbridge {p['callbridge_events_per_s']} events/s, baseline "
              f"{p['baseline_events_per_s']} events/s, ratio {p['ratio']}x (goal: within 3x); "
              f"CPU per event {p['callbridge_cpu_us_per_event']} us against "
              f"{p['baseline_cpu_us_per_event']} us, ratio {p['cpu_ratio']}x")
    if args.only in (None, "io"):
        from benchmarks_io import bench_io
        report["io"] = bench_io()
        io = report["io"]
        print(f"io: {io['events_per_s']} events/s of a bound {io['bound_events_per_s']} "
              f"= {io['fraction']} (goal: at least 0.8), 429s: {io['429s']}")
    if args.only in (None, "clio_batch"):
        from bench_clio_batch import bench_clio_batch
        report["clio_batch"] = cb = bench_clio_batch()
        print(f"clio_batch: {cb['calls']} calls in {cb['wall_seconds']} s, {cb['requests']} "
              f"requests, 429s: {cb['429s']}, {cb['communications']} communications and "
              f"{cb['time_entries']} time entries (goal: 15 and 15, no 429)")
    if args.only in (None, "ack"):
        from bench_ack import bench_ack
        report["ack"] = ack = bench_ack(args.events)
        for n, run in enumerate(ack["runs"], 1):
            print(f"ack run {n}: {run['acks_per_s']}/s, p50 {run['p50_ms']} ms, p99 "
                  f"{run['p99_ms']} ms; CPU per ack: server {run['server_cpu_ms_per_ack']} ms, "
                  f"load generator {run['load_cpu_ms_per_ack']} ms")
        print(f"ack: median run {ack['acks_per_s']} acknowledgements/s, p50 {ack['p50_ms']} ms, "
              f"p99 {ack['p99_ms']} ms (goal: at least 1,500/s, p99 under 50 ms; "
              f"{ack['pinned']}; load average {ack['load_average']}); every acknowledged event "
              f"in the ledger after SIGKILL: {ack['every_ack_survived']}")
    if args.only in (None, "hangup"):
        from bench_hangup import bench_hangup
        report["hangup"] = h = bench_hangup()
        print(f"hangup: {h['samples']} calls over {h['tenants']} tenants at {h['rate_per_s']}/s: "
              f"p50 {h['p50_s']} s, p99 {h['p99_s']} s (goal: p50 < 1 s, p99 < 5 s)")
    if args.only in (None, "tenants"):
        from bench_tenants import bench_tenants
        report["tenants"] = t = bench_tenants()
        print(f"tenants: {t['configured']} configured, {t['active']} active: peak RSS "
              f"{t['peak_rss_mib']} MiB (goal: under 1024), settings loaded in "
              f"{t['load_seconds']} s, {t['logged']} calls logged in {t['log_seconds']} s, "
              f"one changed tenant reloaded in {t['reload_ms']} ms")
    if args.only in (None, "profile"):
        from bench_hotpath import profile
        report["profile"] = pr = (profile(args.events, args.batch) if args.runs <= 1 else
                                  medians(in_processes("profile", args.runs, args.events,
                                                       args.batch)))
        print(f"profile: CPU per event {pr['callbridge_cpu_us_per_event']} us "
              f"{pr['callbridge_parts_cpu_us_per_event']}; baseline "
              f"{pr['baseline_cpu_us_per_event']} us {pr['baseline_parts_cpu_us_per_event']}")
    if args.only in (None, "startup"):
        from bench_startup import bench_startup, summary
        report["startup"] = st = bench_startup()
        print(summary(st))
    if args.only in (None, "ledger_scale"):
        from bench_ledger_scale import bench_ledger_scale
        report["ledger_scale"] = ls = bench_ledger_scale(args.rows)
        for db in ("sqlite", "postgresql"):
            if db in ls:
                r = ls[db]
                print(f"ledger_scale ({db}, {r['deliveries']:,} deliveries): history "
                      f"{r['history_newest_100_ms']} ms (one tenant "
                      f"{r['history_one_tenant_newest_100_ms']} ms), idle claim "
                      f"{r['idle_claim_ms']} ms (one tenant's app "
                      f"{r['idle_claim_one_tenant_app_ms']} ms)")
    if args.only in (None, "shared_limit"):
        from bench_shared_limit import bench_all
        report["shared_limit"] = shared = bench_all()
        for sl in shared.values():
            if sl["scenario"] == "partner":
                print(f"shared_limit: {sl['workers']} workers, {sl['limit']} per "
                      f"{sl['window_s']} s: {sl['fraction_of_limit']} of the limit used "
                      f"(goal: at least 0.9), 429s: {sl['answers_429']} (goal: 0)")
            else:
                print(f"shared_limit: {sl['workers']} workers, {sl['firms']} firms: "
                      f"{sl['requests']} requests, {sl['needless_refusals']} refused needlessly "
                      f"(goal: 0; peak use: partner {sl['partner_peak_fraction']}, token "
                      f"{sl['token_peak_fraction']}), 429s: {sl['answers_429']} (goal: 0)")
    if args.only in (None, "workers"):
        from bench_workers import bench_workers, table
        report["workers"] = wk = bench_workers()
        print("workers:\n" + table(wk) + f"\nCPU per event grows {wk['cpu_growth_1_to_last']}x "
              "from 1 to 4 workers (goal: at most 1.2x)")
    if args.only == "scale":  # ten minutes: run only when asked for
        from scale import run
        from scale_report import table as scale_table
        report["scale"] = sc = run(20000, 100, 2, 40, 32, 570.0)
        print("scale:\n" + scale_table(sc))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
