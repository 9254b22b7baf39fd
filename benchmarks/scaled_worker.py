"""`callbridge` with every plugin's declared rate-limit buckets multiplied by
``$CALLBRIDGE_RATE_SCALE`` (the scale demo's sandboxes are scaled by the same factor),
and, with ``$CALLBRIDGE_WORKER_TIMES``, the time of each outcome written to that file
(one line each, for the demo's per-worker throughput). Nothing else differs.

Usage: python benchmarks/scaled_worker.py worker --config callbridge.toml
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import callbridge.plugins
import callbridge.runtime
from callbridge.cli import main
from callbridge.worker import Worker

SCALE = float(os.environ.get("CALLBRIDGE_RATE_SCALE", "1"))
TIMES = os.environ.get("CALLBRIDGE_WORKER_TIMES")
_discover = callbridge.plugins.discover


def scaled_discover(**kwargs: Any) -> callbridge.plugins.Registry:
    registry = _discover(**kwargs)
    for plugin in registry.plugins.values():
        buckets = tuple(b.model_copy(update={
            "requests": None if b.requests is None else int(b.requests * SCALE),
            "burst": None if b.burst is None else int(b.burst * SCALE)})
            for b in plugin.declaration.rate_limits)
        plugin.declaration = plugin.declaration.model_copy(update={"rate_limits": buckets})
    return registry


callbridge.plugins.discover = scaled_discover
callbridge.runtime.discover = scaled_discover  # type: ignore[attr-defined]

if TIMES:
    _init = Worker.__init__
    out = open(TIMES, "a", buffering=1)  # kept open for the process's life

    def counting_init(self: Worker, engine: Any) -> None:
        _init(self, engine)
        self.finished.append(lambda claim, outcome: out.write(f"{time.monotonic()}\n"))

    Worker.__init__ = counting_init  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "callbridge"
    main()
