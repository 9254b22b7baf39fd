"""Many firms in one process: 10,000 configured tenants (one file each in a tenants
directory, their tokens in a secrets file), each with one app (the notebook plugin,
bearer auth, on its server on loopback); 1,000 of them active (one call each, logged).

Reported: the time to load the settings, the time to log the 1,000 calls (their
connections set up on the way), the process's peak RSS (goal: under 1 GiB), the
time a reload takes when one tenant's file changed (only that file is read), and how
many clients are kept after the idle ones are let go.

The tenants' process is a child of this one, so its RSS is its own (the notebook
server runs here). Usage: python benchmarks/bench_tenants.py [--tenants 10000 --active 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

CHILD = r'''
import asyncio, json, os, resource, sys, time
from pathlib import Path

folder, active = Path(sys.argv[1]), int(sys.argv[2])
started = time.perf_counter()
from callbridge.runtime import load
rt = load(folder / "callbridge.toml")
settings = rt.settings.current()
loaded = time.perf_counter() - started
from callbridge.events import parse_event

lines = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


async def main() -> dict:
    engine = rt.engine(concurrency=64)
    try:
        began = time.perf_counter()
        await engine.ingest_many([parse_event(json.dumps(line)) for line in lines])
        await engine.run_until_idle()
        logged_s = time.perf_counter() - began
        counts = engine.ledger.counts()
        logged = sum(n for (app, status), n in counts.items() if status == "logged")
        kept = engine.connections.kept_count()
        evicted = await engine.evict_idle(0)  # as the scheduler does for tenants idle long enough
        target = folder / "tenants" / "firm00007.toml"
        target.write_text('name = "Renamed"\n' + target.read_text())
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        began = time.perf_counter()
        done = rt.settings.refresh()
        reload_ms = (time.perf_counter() - began) * 1000
        return {"logged": logged, "log_seconds": round(logged_s, 2), "kept_clients": kept,
                "evicted": evicted, "kept_after_eviction": engine.connections.kept_count(),
                "reload_ms": round(reload_ms, 1), "reloaded_tenants": sorted(done.tenants)}
    finally:
        await engine.aclose()

report = asyncio.run(main())
report.update(configured=len(settings.tenants), load_seconds=round(loaded, 2),
              peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
print(json.dumps(report))
'''


def prepare(folder: Path, url: str, tenants: int, active: int) -> None:
    ledger = folder / "ledger.db"
    (folder / "callbridge.toml").write_text(textwrap.dedent(f"""
        tenants_dir = "tenants"
        secrets_file = "secrets.toml"
        [ledger]
        url = "sqlite:///{ledger}"
    """))
    (folder / "tenants").mkdir()
    secrets = []
    for n in range(tenants):
        key = f"firm{n:05d}"
        (folder / "tenants" / f"{key}.toml").write_text(textwrap.dedent(f"""
            default_region = "US"
            [apps.crm]
            plugin = "notebook"
            credentials_env = "FIRM{n:05d}"
            [apps.crm.options]
            base_url = "{url}"
            auth = "bearer"
        """))
        secrets.append(f'FIRM{n:05d}_TOKEN = "token-{n:05d}"')
    path = folder / "secrets.toml"
    path.write_text("\n".join(secrets) + "\n")
    path.chmod(0o600)
    with (folder / "events.jsonl").open("w") as out:
        for n in range(active):
            out.write(json.dumps({
                "kind": "call", "id": f"c-{n}", "tenant": f"firm{n * (tenants // active):05d}",
                "direction": "inbound", "external": {"number": f"+1 212 555 01{n % 100:02d}"},
                "internal": {"email": "ann@example.com"},
                "started_at": "2026-03-02T09:00:00Z", "ended_at": "2026-03-02T09:03:00Z",
                "outcome": "completed"}) + "\n")


def bench_tenants(tenants: int = 10000, active: int = 1000) -> dict[str, Any]:
    from callbridge.faults import serve_in_thread
    from callbridge.ledger import Ledger
    from callbridge_notebook.server import NotebookState, create_app

    with tempfile.TemporaryDirectory(prefix="callbridge-tenants-") as tmp:
        folder = Path(tmp)
        state = NotebookState()
        with serve_in_thread(create_app(state)) as url:
            prepare(folder, url, tenants, active)
            env = {**os.environ, "CALLBRIDGE_PLUGINS": "notebook",
                   "CALLBRIDGE_SECRET_KEY": Ledger.generate_key()}
            done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(active)],
                                  env=env, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            report["logs_in_app"] = len(state.logs)
    report["active"] = active
    report["under_1_gib"] = report["peak_rss_mib"] < 1024
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10000)
    parser.add_argument("--active", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(bench_tenants(args.tenants, args.active), indent=2))


if __name__ == "__main__":
    main()
