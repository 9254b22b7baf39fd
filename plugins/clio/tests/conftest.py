"""A Clio sandbox on loopback, a firm seeded in it, and the host's engine pointed at it."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from callbridge.engine import Engine
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge_clio.sandbox import SandboxState, create_app


@dataclass
class Sandbox:
    state: SandboxState
    faults: FaultInjector
    url: str


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState()
    faults = create_app(state)
    with serve_in_thread(faults) as url:
        state.host = url
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
