"""Cassettes for the kit: record mode, matching, and the transport that replays them.

* The record mode comes from ``CALLBRIDGE_RECORD_MODE`` alone (default
  ``none``: replay only, as CI runs). Never from shared configuration, where it
  would silently record against whatever answers.
* Requests match on method, scheme, host, port, path and query, and writes
  (POST, PUT, PATCH, DELETE) on their body too, JSON key order ignored; so two
  writes to one URL can never swap their answers.
* :class:`CassetteTransport` is the innermost transport of the client the kit
  gives a hook: it plays a recorded answer, or records one from the transport
  it wraps (a sandbox through ``httpx2.ASGITransport``), or raises
  :class:`CassetteMiss` (a vcrpy ``CannotOverwriteExistingCassetteException``)
  naming the request and the cassette file. vcrpy patches nothing here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from vcr import VCR  # type: ignore[import-untyped]
from vcr import matchers as vcr_matchers
from vcr.errors import CannotOverwriteExistingCassetteException  # type: ignore[import-untyped]
from vcr.patch import PATCHER_NAMES  # type: ignore[import-untyped]
from vcr.request import Request as VcrRequest  # type: ignore[import-untyped]

from callbridge.redact import redact
from callbridge.testing.scrub import Scrubber

__all__ = [
    "ENV_RECORD_MODE",
    "MATCH_ON",
    "RECORD_MODES",
    "CassetteMiss",
    "CassetteTransport",
    "open_cassette",
    "record_mode",
]

ENV_RECORD_MODE = "CALLBRIDGE_RECORD_MODE"
RECORD_MODES = ("none", "once", "new_episodes", "all")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def record_mode() -> str:
    """The record mode from ``CALLBRIDGE_RECORD_MODE``; ``none`` when unset."""
    mode = os.environ.get(ENV_RECORD_MODE, "none").strip().lower() or "none"
    if mode not in RECORD_MODES:
        raise ValueError(f"{ENV_RECORD_MODE}={mode!r} is not one of {', '.join(RECORD_MODES)}")
    return mode


def body_of_writes(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the bodies of writes must match (JSON parsed, so key order is free)."""
    if str(r1.method).upper() in _WRITES:
        vcr_matchers.body(r1, r2)


MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "body_of_writes")


class CassetteMiss(CannotOverwriteExistingCassetteException):  # type: ignore[misc]
    """A request with no recording. Raised as itself, never turned into an outcome."""

    def __init__(self, *, cassette: Any, failed_request: Any) -> None:
        super().__init__(cassette=cassette, failed_request=failed_request)
        # vcrpy's own explanation, numbers and secrets masked, without its "How to fix"
        # advice (record modes and matchers the kit sets itself, so an author cannot act on it).
        detail = redact(str(self)).split("\nHow to fix:")[0].rstrip()
        path = Path(cassette._path)
        exists = path.exists()
        state = "" if exists else " (the cassette file does not exist)"
        # ``once`` never adds to a cassette that exists: say so, or the advice would not work.
        hint = " (delete the file first: once never adds to an existing cassette)" if exists else ""
        self.summary = (
            f"no recording for {failed_request.method} {redact(failed_request.path)} in "
            f"{path}{state}; record it with {ENV_RECORD_MODE}=once against the sandbox{hint}")
        self.args = (f"{self.summary}\n\nvcrpy says:\n{detail}",)


def _vcr(scrubber: Scrubber, mode: str) -> Any:
    config = VCR(
        record_mode=mode,
        match_on=MATCH_ON,
        before_record_request=scrubber.before_record_request,
        before_record_response=scrubber.before_record_response,
        decode_compressed_response=True,
        skip_patchers=PATCHER_NAMES,  # the kit's transport does the work; patch no library
    )
    config.register_matcher("body_of_writes", body_of_writes)
    return config


@contextmanager
def open_cassette(path: Path, *, scrubber: Scrubber, mode: str | None = None) -> Iterator[Any]:
    """Load the cassette at ``path`` (saved, scrubbed, when the block ends)."""
    chosen = mode or record_mode()
    path.parent.mkdir(parents=True, exist_ok=True) if chosen != "none" else None
    with _vcr(scrubber, chosen).use_cassette(str(path)) as cassette:
        yield cassette


class _NoNetwork(httpx2.AsyncBaseTransport):
    """What replay falls back to: nothing. A request that reaches it is a kit bug."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("the kit's replay transport never reaches the network")


class CassetteTransport(httpx2.AsyncBaseTransport):
    """Plays answers from ``cassette``, or records them from ``inner``.

    Every miss is kept in :attr:`misses`, so the kit can raise it even when a
    plugin's broad ``except`` swallowed it.
    """

    def __init__(self, cassette: Any, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.cassette = cassette
        self.inner = inner or _NoNetwork()
        self.misses: list[CassetteMiss] = []
        self.played = 0
        self.recorded = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        vcr_request = VcrRequest(request.method, str(request.url), body,
                                 dict(request.headers.multi_items()))
        if self.cassette.can_play_response_for(vcr_request):
            self.played += 1
            return _response(self.cassette.play_response(vcr_request), request)
        if self.cassette.write_protected or isinstance(self.inner, _NoNetwork):
            miss = CassetteMiss(cassette=self.cassette, failed_request=vcr_request)
            self.misses.append(miss)
            raise miss
        live = await self.inner.handle_async_request(request)
        try:
            # The raw bytes, still compressed: the record hook decodes them.
            stream: Any = live.stream
            content = b"".join([part async for part in stream])
        finally:
            await live.aclose()
        headers: dict[str, list[str]] = {}
        for name, value in live.headers.multi_items():
            headers.setdefault(name, []).append(value)
        reason = live.extensions.get("reason_phrase", b"")
        self.cassette.append(vcr_request, {
            "status": {"code": live.status_code,
                       "message": reason.decode("ascii", "replace") if reason else ""},
            "headers": headers,
            "body": {"string": content},
        })
        self.recorded += 1
        return httpx2.Response(live.status_code, headers=live.headers.multi_items(),
                               stream=httpx2.ByteStream(content), extensions=live.extensions,
                               request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _response(recorded: dict[str, Any], request: httpx2.Request) -> httpx2.Response:
    headers = [(name, value) for name, values in recorded["headers"].items()
               for value in (values if isinstance(values, list) else [values])]
    body = recorded["body"]["string"]
    if isinstance(body, str):
        body = body.encode("utf-8")
    message = recorded["status"].get("message")
    extensions = {"reason_phrase": message.encode("ascii")} if message else {}
    return httpx2.Response(recorded["status"]["code"], headers=headers,
                           stream=httpx2.ByteStream(body or b""), extensions=extensions,
                           request=request)
