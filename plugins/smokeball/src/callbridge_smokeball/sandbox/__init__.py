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

Run it with ``callbridge sandbox smokeball`` (see :func:`serve`).
"""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
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
    """The app ``callbridge sandbox smokeball`` runs: seeded, with its token printed.

    The API and the storage origin are the same server under two names
    (``127.0.0.1`` and ``localhost``), so the upload URL is another origin, as in
    Smokeball.
    """
    url = os.environ.get(ENV_URL, "http://127.0.0.1:8765").rstrip("/")
    state = SandboxState(host=url, auth_host=url,
                         storage_host=url.replace("127.0.0.1", "localhost"))
    path = os.environ.get(ENV_SEED)
    seed = json.loads(open(path, encoding="utf-8").read()) if path else default_seed()
    state.seed(seed)
    print(f"smokeball sandbox: x-api-key {state.api_key}; bearer token "
          f"{', '.join(seed.get('tokens', [])) or '(POST /oauth2/token)'}; client "
          f"{state.client_id}/{state.client_secret}; account {state.account_id}",
          file=sys.stderr)
    return create_app(state)


__all__ = ["ENV_SEED", "ENV_URL", "SandboxState", "create_app", "default_seed", "serve"]
