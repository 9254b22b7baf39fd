"""The Clio sandbox served on loopback: ``callbridge sandbox clio`` and :func:`serving`.

``callbridge sandbox clio [--port 8765] [SEEDING OPTIONS]`` serves the API on the port
and the pre-signed storage on another (``--storage-port``, default the next one): an
origin of its own, as S3 is. Seeded by flags or a fixture file (JSON or TOML)::

    callbridge sandbox clio --user "Ann Lee <ann@firm.example>" \\
        --contact "Dana Whitfield: (212) 555-0142" --matter "Dana Whitfield: Lease dispute"
    callbridge sandbox clio --fixture firm.json --token sandbox-token

A fixture file holds ``users`` (name, email, authorised, enabled), ``custom_fields``
(key, name, parent_type, field_type), ``contacts`` (key, first, last, phones, emails)
and ``matters`` (client: a contact's key, description, status, related: {key: role},
custom_fields: {key: value}). The client id and secret are ``sandbox-client`` and
``sandbox-secret``; an access token is printed at start (``--token`` fixes its value),
and ``/oauth/authorize`` approves at once, so no browser is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from callbridge_clio.sandbox.fields import SEARCH_MODES
from callbridge_clio.sandbox.state import SandboxState

DEFAULT_USER = {"name": "Sandbox User", "email": "user@sandbox.example", "authorised": True}


@contextmanager
def serving(state: SandboxState, *, faults: bool = True) -> Iterator[str]:
    """Serve the sandbox on loopback (API and storage on two ports); yields the API's URL.

    The state's ``host`` and ``storage_host`` are set to the URLs served, so every
    URL the sandbox hands out points back at it.
    """
    from callbridge.faults import serve_in_thread

    from callbridge_clio.sandbox import create_app

    app = create_app(state, faults=faults)
    with ExitStack() as stack:
        url = stack.enter_context(serve_in_thread(app))
        state.host, state.storage_host = url, stack.enter_context(serve_in_thread(app))
        yield url


def seed(state: SandboxState, data: dict[str, Any]) -> dict[str, int]:
    """Seed ``state`` from a fixture's data; the ids of the keyed records."""
    ids: dict[str, int] = {}
    for user in data.get("users") or [DEFAULT_USER]:
        ids[user.get("key", user["email"])] = state.add_user(
            user["name"], user["email"], authorised=bool(user.get("authorised")),
            enabled=user.get("enabled", True))
    for field in data.get("custom_fields", []):
        ids[field.get("key", field["name"])] = state.add_custom_field(
            field["name"], field["parent_type"], field.get("field_type", "checkbox"))
    for contact in data.get("contacts", []):
        key = contact.get("key", f"{contact['first']} {contact['last']}".strip())
        ids[key] = state.add_contact(contact["first"], contact["last"], contact.get("phones", []),
                                     contact.get("emails", []))
    for matter in data.get("matters", []):
        ids[matter.get("key", matter["description"])] = state.add_matter(
            ids[matter["client"]], matter["description"], status=matter.get("status", "Open"),
            related={ids[k]: role for k, role in (matter.get("related") or {}).items()},
            custom_fields={ids[k]: v for k, v in (matter.get("custom_fields") or {}).items()})
    return ids


def _person(text: str) -> dict[str, Any]:
    name, _, email = text.partition("<")
    return {"name": name.strip(), "email": email.rstrip("> ").strip(), "authorised": False}


def _contact(text: str) -> dict[str, Any]:
    name, _, phones = text.partition(":")
    first, _, last = name.strip().rpartition(" ")
    return {"first": first, "last": last, "phones": [p.strip() for p in phones.split(",") if p.strip()]}


def _matter(text: str) -> dict[str, Any]:
    client, _, description = text.partition(":")
    return {"client": client.strip(), "description": description.strip() or "Matter"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callbridge sandbox clio",
                                description="Serve the Clio sandbox on loopback.")
    p.add_argument("--fixture", type=Path, help="a JSON or TOML file of users, contacts, matters")
    p.add_argument("--user", action="append", default=[], help='"Name <email>"; the first authorises')
    p.add_argument("--contact", action="append", default=[], help='"First Last: number, number"')
    p.add_argument("--matter", action="append", default=[], help='"First Last: description"')
    p.add_argument("--custom-field", action="append", default=[], help='"Name:Matter|Contact"')
    p.add_argument("--token", help="the access token to issue (default: random, printed)")
    p.add_argument("--search-mode", choices=SEARCH_MODES, default="substring",
                   help="how the contacts query matches text")
    p.add_argument("--rate-limit", type=int, default=50, help="requests a minute per token (0: off)")
    p.add_argument("--storage-port", type=int, help="the storage's port (default: the API's + 1)")
    return p


def load_fixture(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data: dict[str, Any] = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return data


def serve(*, host: str = "127.0.0.1", port: int = 8765, args: list[str] | None = None) -> int:
    """``callbridge sandbox clio``: seed, print how to connect, serve until interrupted."""
    import uvicorn

    from callbridge_clio.sandbox import create_app

    opts = parser().parse_args(args or [])
    data = load_fixture(opts.fixture) if opts.fixture else {}
    if opts.user:
        data["users"] = [_person(u) for u in opts.user]
        data["users"][0]["authorised"] = True
    data.setdefault("custom_fields", []).extend(
        {"name": n, "parent_type": t or "Matter"}
        for n, _, t in (f.partition(":") for f in opts.custom_field))
    data.setdefault("contacts", []).extend(_contact(c) for c in opts.contact)
    data.setdefault("matters", []).extend(_matter(m) for m in opts.matter)
    storage_port = opts.storage_port or port + 1
    state = SandboxState(host=f"http://{host}:{port}", storage_host=f"http://{host}:{storage_port}",
                         search_mode=opts.search_mode,
                         rate_limit=(opts.rate_limit, 60.0) if opts.rate_limit else None)
    seed(state, data)
    token = state.issue_token(access_token=opts.token, lifetime=10**8)
    print(f"Clio sandbox: API {state.host}/api/v4, storage {state.storage_host}")
    print(f"client id {state.client_id}, client secret {state.client_secret}")
    print(f"access token {token['access_token']}  refresh token {token['refresh_token']}")
    print(f'try: curl -H "Authorization: Bearer {token["access_token"]}" '
          f'"{state.host}/api/v4/users/who_am_i.json?fields=id,name"')
    app = create_app(state)

    async def run() -> None:
        servers = [uvicorn.Server(uvicorn.Config(app, host=host, port=p, log_level="warning",
                                                 lifespan="off")) for p in (port, storage_port)]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(run())
    return 0


class Entry:
    """The ``callbridge.sandboxes`` entry point: call it for the ASGI app; ``serve`` runs it
    with its own seeding options."""

    def __call__(self) -> Any:
        from callbridge_clio.sandbox import create_app

        state = SandboxState()
        seed(state, {})
        return create_app(state)

    @staticmethod
    def serve(*, host: str, port: int, args: list[str]) -> int:
        return serve(host=host, port=port, args=args)


entry = Entry()

if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(serve(args=sys.argv[1:]))
