"""Fixtures for the Clio plugin's tests.

* ``hook_ctx``: the plugin's hooks called directly, as the host would, with a
  ``HookContext`` whose clients reach the sandbox in process (``clio``), and an
  in-memory store, lock and delivery.
* ``sandbox``, ``firm``, ``clio_engine``: the sandbox on loopback, a firm seeded in
  it, and the host's engine pointed at it (end-to-end tests).
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import callbridge_clio
import pytest
from callbridge.context import HookContext
from callbridge.engine import Engine
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.http import Credentials, MemoryTokenStore, RetryPolicy
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.settings import TenantSettings
from callbridge.testing import MemoryDelivery, make_context
from callbridge_clio.sandbox import SandboxState, create_app

# --- the hooks called directly ---------------------------------------------------------

#: Short waits: the host's client retries inline, and a test should not sit through them.
QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, inline_max_wait=1.0)


class Delivery(MemoryDelivery):
    """The host's in-memory delivery (its write protocol: a step begun by an earlier
    attempt without its record is an uncertain write, so ``find`` runs first).

    ``retry()`` is what the host does before it calls a log hook again: the same
    delivery, one attempt more, with the records the earlier attempts remembered.
    """

    def retry(self) -> None:
        self._attempt += 1


@dataclass
class Clio:
    """The sandbox behind ``hook_ctx``: its state and the fault injector in front of it."""

    state: SandboxState
    faults: FaultInjector
    tokens: MemoryTokenStore

    def api_requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's log of API requests (not OAuth, not storage), optionally filtered."""
        return [r for r in self.state.requests
                if (method is None or r["method"] == method) and (path is None or r["path"] == path)]


@pytest.fixture
def clio() -> Clio:
    """An empty sandbox with one authorised user and a live token for the connection."""
    state = SandboxState()
    state.add_user("Ann Lee", "ann@acme.example", authorised=True)
    tokens = MemoryTokenStore({("acme", "clio"): state.issue_token()})
    return Clio(state, create_app(state), tokens)


@pytest.fixture
async def hook_ctx(clio: Clio) -> AsyncIterator[HookContext]:
    """What the host hands a Clio hook: the host's own clients, over the sandbox in process.

    ``callbridge.testing.make_context`` builds it with the host's connection factory:
    ``ctx.http`` from the plugin's ``connection`` hook (base URL, OAuth 2.0 with
    refresh through the sandbox's ``/oauth/token``, the pinned version header,
    answers raised as the host's exceptions); ``ctx.bare_http`` carries nothing of
    ours; ``ctx.delivery`` is a :class:`Delivery` on its first attempt; the store,
    cache and locks are the kit's in-memory ones.
    """
    ctx = make_context(
        callbridge_clio, tenant=TenantSettings(default_region="US"), faults=clio.faults,
        credentials=Credentials(client_id=clio.state.client_id,
                                client_secret=clio.state.client_secret),
        tokens=clio.tokens, retry=QUICK, delivery=Delivery())
    yield ctx
    await ctx.http.aclose()
    await ctx.bare_http.aclose()


# --- end to end ---------------------------------------------------------------------------


@dataclass
class Sandbox:
    state: SandboxState
    faults: FaultInjector
    url: str


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The sandbox on loopback: its API on one port, its storage on another (an origin
    of its own, as S3 is)."""
    state = SandboxState()
    faults = create_app(state)
    with serve_in_thread(faults) as url, serve_in_thread(faults) as storage:
        state.host, state.storage_host = url, storage
        yield Sandbox(state, faults, url)


@pytest.fixture
def firm(sandbox: Sandbox) -> dict[str, int]:
    """Users, contacts with numbers stored in mixed formats, matters."""
    st = sandbox.state
    ids = {
        "ann": st.add_user("Ann Lee", "ann@acme.example", authorised=True),
        "bob": st.add_user("Bob Stone", "bob@acme.example"),
        "dana": st.add_contact("Dana", "Whitfield", ["(212) 555-0142"]),
        "sam": st.add_contact("Sam", "Ortiz", ["+1 646 555 0111", "646.555.0112"]),
        "lee": st.add_contact("Lee", "Park", ["212-555-0150"]),
        "opp": st.add_contact("Olive", "Opposing", ["2125550160"]),
        "jane": st.add_contact("Jane", "Roe", ["437-555-0142 (Jane's Number)"]),
    }
    ids["dana_matter"] = st.add_matter(ids["dana"], "Lease dispute")
    st.add_matter(ids["dana"], "Old case", status="Closed")
    ids["sam_m1"] = st.add_matter(ids["sam"], "Estate")
    ids["sam_m2"] = st.add_matter(ids["sam"], "Trust", status="Pending")
    ids["opp_matter"] = st.add_matter(ids["lee"], "Contract")
    st.relate(ids["opp"], ids["opp_matter"], "Opposing party")
    return ids


def write_config(path: Path, url: str, *, app: str = "", options: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""
    [ledger]
    url = "sqlite:///{path.parent / 'ledger.db'}"
    lease_seconds = 10

    [tenants.acme]
    default_region = "US"
    own_numbers = ["+1 212 555 0100"]
    extensions = {{ "101" = "ann@acme.example", "102" = "bob@acme.example" }}

    [tenants.acme.apps.clio]
    credentials_env = "ACME_CLIO"
    {app}

    [tenants.acme.apps.clio.options]
    api_base_url = "{url}/api/v4"
    {options}
    """))
    return path


@pytest.fixture
async def clio_engine(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
                      ) -> AsyncIterator[Callable[..., Engine]]:
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_CLIO_CLIENT_ID", sandbox.state.client_id)
    monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", sandbox.state.client_secret)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio")
    engines: list[Engine] = []

    def make(app: str = "", options: str = "", **kwargs: Any) -> Engine:
        path = write_config(tmp_path / "callbridge.toml", sandbox.url, app=app, options=options)
        engine = load(path, strict=True).engine(**kwargs)
        if engine.ledger.token_get("acme", "clio") is None:
            engine.ledger.token_set("acme", "clio", sandbox.state.issue_token())
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()
