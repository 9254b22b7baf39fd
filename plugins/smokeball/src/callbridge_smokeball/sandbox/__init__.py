"""An emulator of the subset of Smokeball's API the plugin uses, as an ASGI app.

It answers with Smokeball's own semantics: every create is *accepted* (202 and a
Link) and readable only after a configurable delay; lists page with
``Offset``/``Limit`` and a ``size``; the ``Search`` syntax with wildcards;
``UpdatedSince`` in .NET ticks; the partner's token bucket (5 per second, burst 5)
answering 429; the two-step file upload to a pre-signed URL on a storage origin of
its own (a PUT that carries a Content-Type, a token or the API key is refused, as a
signature mismatch); ``x-api-key`` plus a bearer token on every call; client
credentials with the account id first in the path; and a fault that accepts a write
and never lets it appear. State is in memory (:class:`SandboxState`), seeded by
methods or from a fixture file.

Run it with ``callbridge sandbox smokeball [--fixture F] [--write-delay S]`` (see :func:`build`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from callbridge_smokeball.sandbox.app import create_app
from callbridge_smokeball.sandbox.state import SandboxState

#: A fixture file to seed from instead of the packaged one (``seed.json``).
ENV_SEED = "CALLBRIDGE_SMOKEBALL_SEED"
#: The sandbox's own address, for the links it answers (default http://127.0.0.1:8765).
ENV_URL = "CALLBRIDGE_SMOKEBALL_URL"


def default_seed() -> dict[str, Any]:
    """The packaged fixture: a small firm with staff, contacts, matters and a token."""
    data: dict[str, Any] = json.loads(
        files("callbridge_smokeball.sandbox").joinpath("seed.json").read_text(encoding="utf-8"))
    return data


def serve() -> Any:
    """The app ``callbridge sandbox smokeball`` runs on a host without sandbox options:
    seeded, with its token printed, its links on :data:`ENV_URL`."""
    url = os.environ.get(ENV_URL, "http://127.0.0.1:8765").rstrip("/")
    path = os.environ.get(ENV_SEED)
    state, _ = build(url, ["--fixture", path] if path else [])
    return create_app(state)


def storage_origin(url: str) -> str:
    """The same server under another name, so the upload URL is another origin."""
    if "//127.0.0.1" in url:
        return url.replace("//127.0.0.1", "//localhost")
    if "//localhost" in url:
        return url.replace("//localhost", "//127.0.0.1")
    return url


def build(url: str, args: list[str]) -> tuple[SandboxState, dict[str, Any]]:
    """The seeded state for ``callbridge sandbox smokeball [options]``:

    ``--fixture PATH`` (a seed file; default the packaged firm), ``--write-delay S``
    (seconds before an accepted write is readable), ``--lose-writes N`` (the next N
    accepted writes never appear), ``--fail-writes N`` (the next N accepted writes fail:
    never readable, reported by an ``error`` webhook), ``--no-rate-limit``. Prints the
    credentials."""
    parser = argparse.ArgumentParser(prog="callbridge sandbox smokeball")
    parser.add_argument("--fixture")
    parser.add_argument("--write-delay", type=float, default=0.0)
    parser.add_argument("--lose-writes", type=int, default=0)
    parser.add_argument("--fail-writes", type=int, default=0)
    parser.add_argument("--no-rate-limit", action="store_true")
    opts = parser.parse_args(args)
    state = SandboxState(host=url, auth_host=url, storage_host=storage_origin(url),
                         write_delay=opts.write_delay, lose_next_writes=opts.lose_writes,
                         fail_next_writes=opts.fail_writes,
                         rate_limited=not opts.no_rate_limit)
    seed = json.loads(Path(opts.fixture).read_text(encoding="utf-8")) if opts.fixture \
        else default_seed()
    state.seed(seed)
    print(f"smokeball sandbox on {url} (uploads on {state.storage_host}): x-api-key "
          f"{state.api_key}; bearer token {', '.join(seed.get('tokens', [])) or '(POST /oauth2/token)'}; "
          f"client {state.client_id}/{state.client_secret}; account {state.account_id}",
          file=sys.stderr)
    return state, seed


class _Entry:
    """The ``callbridge.sandboxes`` entry point: an ASGI app factory that can also run itself
    with its own options (``callbridge sandbox smokeball --port 9000 --write-delay 5``)."""

    def __call__(self) -> Any:
        return serve()

    def serve(self, *, host: str, port: int, args: list[str]) -> int:
        import uvicorn

        from callbridge_smokeball.sandbox.webhooks import start_sender

        state, _ = build(f"http://{host}:{port}", args)
        stop = start_sender(state)  # signed webhooks to the subscribed URLs, as writes finish
        try:
            uvicorn.run(create_app(state), host=host, port=port, log_level="warning")
        finally:
            stop.set()
        return 0


entry = _Entry()

__all__ = ["ENV_SEED", "ENV_URL", "SandboxState", "build", "create_app", "default_seed", "entry",
           "serve"]
