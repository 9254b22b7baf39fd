"""Which copy of an event to keep, when the same event arrives more than once.

A phone system may send a call ringing, in progress and ended, an SMS before and
after its delivery status, and retry any of them out of order. Each copy is a
revision of one event; :func:`merge_revisions` picks the one to keep. Pure
functions over the JSON objects :func:`callbridge.events.dump_event` writes, so
the ledger can call them inside its transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LATE_DETAIL_FIELDS", "merge_revisions"]

#: Fields whose arrival on a known event makes a revision ("late details"); a copy
#: that lacks them never removes them.
LATE_DETAIL_FIELDS = ("recording_url", "transcript", "summary", "notes")

_PROGRESS = {"ringing": 0, "in_progress": 1, "ended": 2,
             "pending": 0, None: 1, "sent": 1, "delivered": 2, "failed": 2}


def _order(copy: Mapping[str, Any]) -> int:
    """How far a copy has gone: its call state or delivery status, ranked."""
    if copy.get("kind", "call") == "call":
        return _PROGRESS.get(copy.get("state", "ended"), 2)
    return _PROGRESS.get(copy.get("status"), 1)


def merge_revisions(stored: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any] | None:
    """Merge a copy of an event just received (``given``) with the one kept (``stored``).

    Both are JSON objects as :func:`dump_event` writes them. The copy that has gone
    furthest (ringing < in_progress < ended; pending < sent < delivered/failed) wins;
    between copies equally far, the higher ``sequence`` wins, and without sequences
    the copy received last. The winner takes the late details
    (:data:`LATE_DETAIL_FIELDS`) it lacks from the other copy, so a stale copy never
    removes a detail. Returns the merged object, or None when it equals ``stored``
    (the given copy adds nothing: a duplicate).
    """
    stored_first = _order(stored) > _order(given) or (
        _order(stored) == _order(given) and stored.get("sequence") is not None
        and given.get("sequence") is not None and stored["sequence"] > given["sequence"])
    newer, older = (stored, given) if stored_first else (given, stored)
    merged = dict(newer)
    for name in LATE_DETAIL_FIELDS:
        if name not in merged and name in older:
            merged[name] = older[name]
    return None if merged == dict(stored) else merged
