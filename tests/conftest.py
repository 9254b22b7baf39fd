"""Fixtures for the host tests: a real notebook server on loopback, a real SQLite
ledger, the notebook plugin found by its entry point, and an engine."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from callbridge_notebook.server import NotebookState, create_app


@dataclass
class Notebook:
    state: NotebookState
    faults: Any
    url: str


@pytest.fixture
def notebook() -> Iterator[Notebook]:
    from callbridge.faults import FaultInjector, serve_in_thread

    state = NotebookState()
    faults = FaultInjector(create_app(state))
    with serve_in_thread(faults) as url:
        yield Notebook(state, faults, url)


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    from callbridge.ledger import Ledger

    key = Ledger.generate_key()
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", key)
    return key


def write_config(path: Path, url: str, *, app: str = "", tenant: str = "",
                 extra: str = "") -> Path:
    text = f"""
    [ledger]
    url = "sqlite:///{path.parent / 'ledger.db'}"
    lease_seconds = 5

    [tenants.acme]
    default_region = "US"
    own_numbers = ["+1 212 555 0100"]
    extensions = {{ "101" = "ann@acme.example", "102" = "bob@acme.example" }}
    {tenant}

    [tenants.acme.apps.crm]
    plugin = "notebook"
    {app}

    [tenants.acme.apps.crm.options]
    base_url = "{url}"
    """
    path.write_text(textwrap.dedent(text) + textwrap.dedent(extra))
    return path


@pytest.fixture
def key() -> str:
    """A new ledger key."""
    from callbridge.ledger import Ledger

    return Ledger.generate_key()


# ``ledger_url`` is parametrised over SQLite and PostgreSQL (one cluster per session):
# every test that takes ``ledger`` or ``ledger_url`` runs on both.
from callbridge.testing.postgres import ledger_url, postgres_server  # noqa: E402, F401


@pytest.fixture
def ledger(ledger_url: str, key: str) -> Iterator[Any]:  # noqa: F811
    """A migrated ledger on ``ledger_url``."""
    from callbridge.ledger import Ledger

    led = Ledger(ledger_url, secret_key=key)
    led.migrate()
    yield led
    led.close()


def stored_bytes(ledger: Any) -> bytes:
    """Everything the ledger's database holds, as bytes: a SQLite file with its WAL,
    read from disk; elsewhere every value of every table."""
    from callbridge.ledger.tables import metadata

    if ledger.url.startswith("sqlite:///"):
        path = Path(ledger.url.removeprefix("sqlite:///"))
        ledger.engine.dispose()
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    out = bytearray()
    with ledger.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
                    out += b"\x00"
    return bytes(out)


def only_sqlite(ledger_or_url: Any) -> None:
    """Skip on a database other than SQLite (a test of SQLite's own settings)."""
    url = ledger_or_url if isinstance(ledger_or_url, str) else ledger_or_url.url
    if not url.startswith("sqlite"):
        pytest.skip("a SQLite setting")
