"""Loopback for test sandboxes only: the address policy a sandbox registers.

The host's document fetch (and every other outbound fetch on an event's or a
user's say-so) refuses loopback and plain http (:mod:`callbridge.outbound`).
A test's sandbox served on loopback is reached through this policy, which the
``callbridge.testing_address_policies`` entry point group installs: it lets
through exactly the origins registered here by the process serving them, and
nothing when none is (as in production). No setting can open it.

    from callbridge.testing.addresses import serve_sandbox

    with serve_sandbox(create_app(state)) as url:   # http://127.0.0.1:<port>
        ...   # an event whose document URL is f"{url}/fax.pdf" is fetched
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from starlette.types import ASGIApp

from callbridge.httpauth import origin_of

_served: set[str] = set()
_lock = threading.Lock()


def served_sandboxes(url: httpx2.URL) -> bool:
    """The entry point's policy: True for an origin a test registered as its sandbox."""
    with _lock:
        return origin_of(url) in _served


@contextmanager
def allow_sandbox(base_url: str) -> Iterator[str]:
    """Register ``base_url``'s origin (a loopback sandbox) for the block's duration."""
    origin = origin_of(base_url)
    with _lock:
        _served.add(origin)
    try:
        yield base_url
    finally:
        with _lock:
            _served.discard(origin)


@contextmanager
def serve_sandbox(app: ASGIApp, *, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback (``callbridge.faults.serve_in_thread``) and register its origin."""
    from callbridge.faults import serve_in_thread

    with serve_in_thread(app, port=port) as url, allow_sandbox(url):
        yield url
