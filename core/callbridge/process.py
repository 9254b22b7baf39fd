"""Process-wide settings of a long-running callbridge process.

:func:`tune_gc` is called by the commands that work events for a while
(``callbridge ingest``, ``drain``, ``serve``, ``worker``) once their start-up is
done, and by the pipeline benchmark, which measures the pipeline as they run it.
"""

from __future__ import annotations

import gc
import os

ENV_GC = "CALLBRIDGE_GC"
#: The cyclic garbage collector's first threshold once tuned (Python's is 700).
GC_THRESHOLD = 50_000


def tune_gc() -> bool:
    """Spend the cyclic garbage collector's time on what events leave behind.

    Python's collector runs every 700 new container objects and walks the young
    ones each time, and now and then every object the process holds. Among a
    host's live objects (modules, plugins, settings, models, tasks) that was a
    fifth of an event's CPU time. Once start-up is done this collects what is
    garbage already, moves every object left to the permanent generation
    (:func:`gc.freeze`, never walked again) and raises the first threshold to
    :data:`GC_THRESHOLD`. Reference counting still frees almost everything at
    once; the collector is only for cycles.

    ``CALLBRIDGE_GC=default`` leaves Python's collector as it is. Returns whether
    the collector was tuned.
    """
    if os.environ.get(ENV_GC, "").strip().lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, second, third)
    return True
