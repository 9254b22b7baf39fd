"""Start-up: `callbridge --help` and `callbridge plugins` beside `python -c "import httpx2"`.

Each command is started ``--runs`` times, in turn with the yardstick (A B A B ...);
each run's CPU time (user + system, the operating system's accounting of the
finished child) is kept, and the median of each is compared. CPU time, because on a
shared machine the wall clock also counts other processes' turns. Bytecode is
written on the first run (as an installed package has it), so later runs do not
compile the sources again. The goal: each within 3x of the yardstick.

Usage: python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from typing import Any

COMMANDS = {
    "callbridge --help": ["-m", "callbridge", "--help"],
    "callbridge plugins": ["-m", "callbridge", "plugins"],
}
YARDSTICK = ["-c", "import httpx2"]


def _cpu(args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_startup(runs: int = 7) -> dict[str, Any]:
    for args in (YARDSTICK, *COMMANDS.values()):  # warm: bytecode written, files cached
        _cpu(args)
    yard: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            yard.append(_cpu(YARDSTICK))
            times[name].append(_cpu(args))
    base = statistics.median(yard)
    report: dict[str, Any] = {"runs": runs, "cores": os.cpu_count(),
                              "import_httpx2_cpu_s": round(base, 3)}
    for name, values in times.items():
        median = statistics.median(values)
        report[name] = {"cpu_s": round(median, 3), "ratio": round(median / base, 2)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    print(json.dumps(bench_startup(parser.parse_args().runs), indent=2))


if __name__ == "__main__":
    main()
