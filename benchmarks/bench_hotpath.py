"""Where an event's time goes: the pipeline benchmark (bench.py) with each part of
the host metered, and the baseline's own split, in CPU time per event.

Parts metered on callbridge's side (exclusive time, so nothing is counted twice):

- parse: ``parse_event`` (pydantic validation), the same call the baseline makes;
- crypto: Fernet encryption and decryption, keyed hashes (event ids, contents,
  parties, the markers written into apps);
- ledger rows: building each write's rows and SQL values, the claim's query;
- sqlite statements: the statements of the group-commit transactions;
- sqlite commits: their COMMITs (what a step waits for before it is reported);
- host: the rest (the pipeline, four hook calls through the facade, leases,
  contexts, asyncio), measured as the process's CPU time less the parts above.

The baseline's split: parse, its COMMITs (three per event, one per step), and
its statements with the rest of its loop.

CPU time, not wall time: on a shared machine the wall clock also counts the
time other processes hold the cores. The garbage collector is tuned as
`callbridge ingest` tunes it (callbridge.process.tune_gc);
``--python-gc`` measures with Python's default collector instead.

Usage: python benchmarks/bench_hotpath.py [--events N] [--python-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench
from callbridge import markers
from callbridge.ledger import (
    Ledger,
    crypto,
    hot,
)
from callbridge.ledger.deliveries import DeliveriesMixin
from callbridge.ledger.events import EventsMixin
from callbridge.process import ENV_GC


class Meter:
    """Exclusive CPU time per part: entering a metered call pauses its caller's part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        meter = self

        @functools.wraps(fn)
        def metered(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            if meter._stack:
                caller = meter._stack[-1]
                meter.seconds[caller[0]] += start - caller[1]
            meter._stack.append([part, start])
            meter.calls[part] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.thread_time()
                meter.seconds[part] += end - meter._stack.pop()[1]
                if meter._stack:
                    meter._stack[-1][1] = end
        return metered


def metering_cost(n: int = 20_000) -> tuple[float, float]:
    """What metering adds per metered call, measured on a call that does nothing: the
    seconds it adds to its part, and to the process in all (subtracted from the figures)."""
    meter = Meter()
    noop = meter.wrap("noop", lambda: None)
    cpu = time.process_time()
    for _ in range(n):
        noop()
    total = time.process_time() - cpu
    return meter.seconds["noop"] / n, total / n


def _meter_callbridge(meter: Meter) -> list[tuple[Any, str, Any]]:
    patched = [
        (bench, "parse_event", "parse"),
        (crypto.Cipher, "encrypt", "crypto"), (crypto.Cipher, "decrypt", "crypto"),
        (crypto.Cipher, "digest", "crypto"),
        (markers, "keyed_marker", "crypto"),
        (DeliveriesMixin, "hot_job", "ledger rows"), (EventsMixin, "_store_new_job", "ledger rows"),
        (hot.GroupWriter, "_transaction", "sqlite statements"), (hot, "_commit", "sqlite commits"),
    ]
    saved = []
    for owner, name, part in patched:
        original = owner.__dict__[name]
        fn = original.__func__ if isinstance(original, staticmethod) else original
        wrapped = meter.wrap(part, fn)
        setattr(owner, name, staticmethod(wrapped) if isinstance(original, staticmethod) else wrapped)
        saved.append((owner, name, original))
    return saved


def profile(n: int, batch: int = 64) -> dict[str, Any]:
    """Per-event CPU microseconds by part, for callbridge and the baseline."""
    lines = bench.payloads(n)
    os.environ.setdefault("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    meter = Meter()
    saved = _meter_callbridge(meter)
    commit = bench.commit
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wall = asyncio.run(bench.callbridge_run(lines, Path(tmp), batch))
            ours_cpu = bench.LAST_CPU["callbridge"]
            parts = dict(meter.seconds)
            base_meter = Meter()
            bench.parse_event = base_meter.wrap("parse", saved[0][2])
            bench.commit = base_meter.wrap("commits", commit)
            base_wall = bench.baseline_run(lines, Path(tmp), batch)
            base_cpu = bench.LAST_CPU["baseline"]
            base_parse, base_commits = base_meter.seconds["parse"], base_meter.seconds["commits"]
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
        bench.commit = commit
    # Metering's own cost, out of the parts it landed in and out of the total.
    inside, added = metering_cost()
    parts = {k: max(0.0, v - meter.calls[k] * inside) for k, v in parts.items()}
    ours_cpu -= sum(meter.calls.values()) * added
    base_parse -= base_meter.calls["parse"] * inside
    base_commits -= base_meter.calls["commits"] * inside
    base_cpu -= sum(base_meter.calls.values()) * added
    per = {k: round(v / n * 1e6, 1) for k, v in sorted(parts.items())}
    per["host"] = round((ours_cpu - sum(parts.values())) / n * 1e6, 1)
    return {
        "events": n, "cores": os.cpu_count(),
        "metering_us_per_call_subtracted": round(added * 1e6, 2),
        "callbridge_cpu_us_per_event": round(ours_cpu / n * 1e6, 1),
        "callbridge_wall_us_per_event": round(wall / n * 1e6, 1),
        "callbridge_parts_cpu_us_per_event": per,
        "baseline_cpu_us_per_event": round(base_cpu / n * 1e6, 1),
        "baseline_wall_us_per_event": round(base_wall / n * 1e6, 1),
        "baseline_parts_cpu_us_per_event": {
            "parse": round(base_parse / n * 1e6, 1),
            "sqlite commits": round(base_commits / n * 1e6, 1),
            "sqlite statements and the rest": round(
                (base_cpu - base_parse - base_commits) / n * 1e6, 1)},
        "cpu_ratio": round(ours_cpu / base_cpu, 2),
        "gc_threshold": gc.get_threshold()[0], "gc_tuned": bench.LAST_GC["tuned"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--python-gc", action="store_true",
                        help="leave Python's garbage collector as it is (CALLBRIDGE_GC=default), "
                             "to see what the collector costs each side")
    args = parser.parse_args()
    if args.python_gc:
        os.environ[ENV_GC] = "default"
    report = profile(args.events)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
