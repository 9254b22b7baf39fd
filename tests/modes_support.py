"""An app kept in memory for the logging-mode tests: contacts found by number, each log
kept with the contacts (and their names) it was linked to and the notes it carried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callbridge.capabilities import Capability, Declaration
from callbridge.engine import Engine
from callbridge.events import AnyEvent, parse_event
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import Contact, LogResult, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock


@dataclass
class Written:
    event_id: str
    contacts: list[tuple[str, str | None]]
    notes: str | None
    state: str


@dataclass
class Book:
    """The plugin and its app at once."""

    name: str = "book"
    contacts: dict[str, Contact] = field(default_factory=dict)
    logs: list[Written] = field(default_factory=list)
    updates: list[tuple[str, str | None]] = field(default_factory=list)
    refuse_auth: bool = False

    def add(self, cid: str, name: str, number: str) -> None:
        self.contacts[cid] = Contact(id=cid, name=name, phones=(number,))

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name=self.name, title="Book", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CALLS, Capability.SMS,
                                                   Capability.CONTACT_SEARCH_PHONE,
                                                   Capability.LATE_DETAILS}),
                           without_contact=frozenset({"call", "sms"}))

    @hookimpl
    async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
        self._check()
        return [c for c in self.contacts.values() if party.e164 in c.phones]

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        return self._log(event, target)

    @hookimpl
    async def log_sms(self, ctx: Any, event: Any, target: Any) -> LogResult:
        return self._log(event, target)

    @hookimpl
    async def update_log(self, ctx: Any, event: Any, records: list[Record]) -> LogResult:
        self.updates.append((event.id, getattr(event, "notes", None)))
        return LogResult(records=tuple(records))

    def _check(self) -> None:
        if self.refuse_auth:
            from callbridge.errors import AuthenticationFailed

            raise AuthenticationFailed("the app refused the credentials")

    def _log(self, event: Any, target: Any) -> LogResult:
        self._check()
        self.logs.append(Written(event.id, [(c.id, c.name) for c in target.contacts],
                                 target.notes or getattr(event, "notes", None),
                                 getattr(event, "state", "sent")))
        return LogResult(records=(Record(kind="log", id=f"L{len(self.logs)}"),))

    def logs_of(self, event_id: str) -> list[Written]:
        return [w for w in self.logs if w.event_id == event_id]


T0 = "2026-01-05T15:00:00Z"


def call(cid: str, *, number: str = "+12125550142", state: str = "ended",
         ended: str = "2026-01-05T15:04:00Z", **extra: Any) -> AnyEvent:
    data: dict[str, Any] = {"kind": "call", "id": cid, "tenant": "acme", "direction": "inbound",
                            "external": {"number": number}, "started_at": T0, "state": state,
                            **extra}
    if state == "ended":
        data.update(ended_at=ended, outcome="completed")
    return parse_event(data)


@asynccontextmanager
async def engine_for(tmp_path: Path, apps: Mapping[str, Book], *, clock: FakeClock | None = None,
                     app_settings: Mapping[str, Mapping[str, Any]] | None = None,
                     modes: Mapping[str, Any] | None = None) -> AsyncIterator[Engine]:
    """An engine on a SQLite file in ``tmp_path`` with the given apps for tenant acme."""
    registry = Registry()
    for book in apps.values():
        registry.add(book)
    settings = Settings.model_validate({
        "modes": dict(modes or {}),
        "tenants": {"acme": {"apps": {name: {"plugin": book.name, **(app_settings or {}).get(
            name, {})} for name, book in apps.items()}}}})
    clock = clock or FakeClock()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    ledger.migrate()
    engine = Engine(settings=SettingsSource(None, default=settings), registry=registry,
                    ledger=ledger, clock=clock)
    try:
        yield engine
    finally:
        await engine.aclose()
        ledger.close()


def status(engine: Engine, event_pk: int, app: str) -> tuple[str, str | None, str]:
    view = engine.ledger.find_delivery("acme", app, event_pk)
    assert view is not None
    return view.status, view.reason, view.mode
