"""Start-up: `callbridge --help` and `callbridge plugins` beside `python -c "import httpx2"`.

Each command is started ``--runs`` times, in turn with the yardstick (A B A B ...);
each run's CPU time (user + system, the operating system's accounting of the
finished child) and wall time are kept, and the medians are compared. CPU time
first, because on a shared machine the wall clock also counts other processes'
turns. Bytecode is written on the first run (as an installed package has it), so
later runs do not compile the sources again. The goal: each within 3x of the
yardstick.

`callbridge plugins` is measured twice:

* with the app plugins: the Clio, HubSpot, Smokeball and webhook-out plugins that
  are installed, chosen with ``CALLBRIDGE_PLUGINS`` (a plugin left out by that list
  is not imported, so this is the start-up of an installation holding only them);
* with every installed plugin (in the test suite's environment, the two test
  plugins as well: the notebook example, which imports the host's event and
  context models at load, and the broken examples).

Usage: python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

APP_PLUGINS = ("clio", "hubspot", "smokeball", "webhook_out")
YARDSTICK = ["-c", "import httpx2"]
LIST_ENV = ("CALLBRIDGE_PLUGINS", "CALLBRIDGE_DISABLE_PLUGINS")


def _installed() -> list[str]:
    return sorted({ep.name for ep in importlib.metadata.entry_points(group="callbridge.plugins")})


def commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each measured command: its arguments and the plugin lists in its environment."""
    apps = [name for name in APP_PLUGINS if name in _installed()]
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "callbridge --help": (["-m", "callbridge", "--help"], {})}
    if apps:
        out["callbridge plugins"] = (["-m", "callbridge", "plugins"],
                                     {"CALLBRIDGE_PLUGINS": ",".join(apps)})
    out["callbridge plugins (every installed plugin)"] = (["-m", "callbridge", "plugins"], {})
    return out


def _run(args: list[str], extra_env: dict[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of ``python args``."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONDONTWRITEBYTECODE" and k not in LIST_ENV}
    env.update(extra_env or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def bench_startup(runs: int = 7) -> dict[str, Any]:
    measured = commands()
    for args, env in ((YARDSTICK, {}), *measured.values()):  # warm: bytecode written, files cached
        _run(args, env)
    yard: list[tuple[float, float]] = []
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in measured}
    for _ in range(runs):
        for name, (args, env) in measured.items():
            yard.append(_run(YARDSTICK))
            times[name].append(_run(args, env))
    base_cpu = statistics.median(c for c, _ in yard)
    base_wall = statistics.median(w for _, w in yard)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "runs": runs, "cores": os.cpu_count(), "load_1min": load, "installed_plugins": _installed(),
        "import_httpx2_cpu_s": round(base_cpu, 3), "import_httpx2_wall_s": round(base_wall, 3)}
    for name, values in times.items():
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        report[name] = {"cpu_s": round(cpu, 3), "ratio": round(cpu / base_cpu, 2),
                        "wall_s": round(wall, 3), "wall_ratio": round(wall / base_wall, 2),
                        "plugins": measured[name][1].get("CALLBRIDGE_PLUGINS", "every installed")
                        if "plugins" in name else None}
    return report


def summary(report: dict[str, Any]) -> str:
    """One line: each command's CPU time and its ratios (CPU / wall) to the yardstick."""
    names = [k for k, v in report.items() if isinstance(v, dict)]
    return (f"startup: import httpx2 {report['import_httpx2_cpu_s']} s CPU; "
            + "; ".join(f"{n} {report[n]['cpu_s']} s ({report[n]['ratio']}x CPU, "
                        f"{report[n]['wall_ratio']}x wall)" for n in names)
            + " (goal: within 3x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    report = bench_startup(parser.parse_args().runs)
    print(json.dumps(report, indent=2))
    print(summary(report))


if __name__ == "__main__":
    main()
