"""In-process source and destination plugins for the closed-matter sync's host tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from callbridge.capabilities import Capability, Declaration
from callbridge.engine import Engine
from callbridge.errors import PermanentError, TransientError
from callbridge.hookspecs import hookimpl
from callbridge.ledger import Ledger
from callbridge.models import ClientContact, ClosedMatter, ClosedMatterPage, CustomField, Record
from callbridge.plugins import Registry
from callbridge.settings import Settings, SettingsSource
from callbridge.testing.clock import FakeClock

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def closed(mid: str, *, opted_out: object = None, opted_in: object = None,
           on: date = date(2026, 3, 2)) -> ClosedMatter:
    return ClosedMatter(
        id=mid, name=f"M-{mid}", closed_on=on,
        client=ClientContact(id=f"c{mid}", name=f"Client {mid}", email=f"c{mid}@example.com",
                             phones=("+12125550142",), custom_fields={"BroadlyOptOut": opted_out}),
        custom_fields={"SendBroadlyThankYou": opted_in})


@dataclass
class Source:
    """A source whose matters close in order; the position is how many were read."""

    matters: list[ClosedMatter] = field(default_factory=list)
    page_size: int = 2
    fields: dict[tuple[str, str], str | None] = field(default_factory=lambda: {
        ("contact", "BroadlyOptOut"): "checkbox", ("matter", "SendBroadlyThankYou"): "checkbox"})
    fail_after_pages: int | None = None
    pages_read: int = 0
    calls: list[str | None] = field(default_factory=list)

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="source", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CLOSED_MATTER_EVENTS}))

    @hookimpl
    async def closed_matters_since(self, ctx: Any, position: str | None, since: datetime,
                                   contact_fields: list[str],
                                   matter_fields: list[str]) -> ClosedMatterPage:
        self.calls.append(position)
        if self.fail_after_pages is not None and self.pages_read >= self.fail_after_pages:
            raise TransientError("the source is down")
        self.pages_read += 1
        at = int(position or 0)
        page = self.matters[at:at + self.page_size]
        asked = [("contact", n) for n in contact_fields] + [("matter", n) for n in matter_fields]
        return ClosedMatterPage(
            matters=tuple(page), position=str(at + len(page)),
            more=at + len(page) < len(self.matters),
            fields=tuple(CustomField(name=n, on=on, field_type=self.fields.get((on, n)))  # type: ignore[arg-type]
                         for on, n in asked))


@dataclass
class Destination:
    """A destination that records each send; it may fail a number of times first."""

    failures: int = 0
    permanent: bool = False
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (client, matter, marker)
    attempts: list[str] = field(default_factory=list)  # the marker of every attempt

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name="dest", version="1", hook_api_version="2.0",
                           capabilities=frozenset({Capability.CLOSED_MATTER_DESTINATION}))

    @hookimpl
    async def send_closed_matter(self, ctx: Any, client: ClientContact,
                                 matter: ClosedMatter) -> Record:
        self.attempts.append(ctx.delivery.marker)

        async def post() -> str:
            if self.failures:
                self.failures -= 1
                raise (PermanentError if self.permanent else TransientError)("refused")
            self.sent.append((client.id, matter.id, ctx.delivery.marker))
            return f"d{len(self.sent)}"

        return await ctx.delivery.step("delivery", "send", create=post)


def settings(**closed: Any) -> Settings:
    firm = {"source": "source", "destination": "dest",
            "opt_out": {"enabled": True, "field": "BroadlyOptOut"},
            "opt_in": {"enabled": True, "field": "SendBroadlyThankYou"},
            "since": START.isoformat(), **closed}
    return Settings.model_validate({"tenants": {"acme": {
        "apps": {"source": {}, "dest": {}}, "closed_matters": firm}}})


def engine(tmp_path: Path, key: str, source: Source, dest: Destination, clock: FakeClock,
           **closed: Any) -> Engine:
    """An engine over the ledger file in ``tmp_path`` (a second one is a restart)."""
    registry = Registry()
    registry.add(source)
    registry.add(dest)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=key, clock=clock)
    ledger.migrate()
    return Engine(settings=SettingsSource(None, default=settings(**closed)), registry=registry,
                  ledger=ledger, clock=clock)
