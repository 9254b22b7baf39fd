"""The contract kit's closed-matter cases (SPEC §5): a source reads closed matters,
a destination sends one client.

Mixed into :class:`callbridge.testing.suite.ContractSuite`. Both run for plugins
declaring hook API 2.0 or later, and only for the capability they need:

* ``closed_matters_since`` (``closed_matter_events``): from no position, since
  ``Scenarios.closed_since``, the pages are read to the end; at least one
  matter closed on or after that day comes back, each with a client id, the
  asked fields' values, and every asked field's definition on each page;
* ``send_closed_matter`` (``closed_matter_destination``): the sample client
  (``Scenarios.closed_matter``) is sent once, as a first attempt whose marker
  is the idempotency id, and the record made is kept with the delivery.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from callbridge.capabilities import Capability
from callbridge.models import ClosedMatter, ClosedMatterPage, Record
from callbridge.testing.kit import Kit, covers
from callbridge.testing.services import KitDelivery

#: How many pages the kit reads before it calls the positions endless.
MAX_PAGES = 50


class ClosingCases:
    """A source's closed matters and a destination's send."""

    kit: ClassVar[Kit]

    @covers("closed_matters_since")
    def test_closed_matters_since_pages_to_the_end(self) -> None:
        self.kit.require("closed_matters_since", "closed_matters_since",
                         Capability.CLOSED_MATTER_EVENTS, since="2.0")
        sc = self.kit.scenarios
        since = sc.closed_since
        if since is None:
            pytest.fail("Scenarios.closed_since is needed: the plugin declares "
                        "closed_matter_events (a time before a matter of the sandbox closed)",
                        pytrace=False)
        contact_fields, matter_fields = list(sc.contact_fields), list(sc.matter_fields)

        async def body() -> list[ClosedMatterPage]:
            pages: list[ClosedMatterPage] = []
            position: str | None = None
            async with self.kit.session("closed_matters_since") as s:
                for _ in range(MAX_PAGES):
                    page = await s.hooks.closed_matters_since(
                        s.context(), position=position, since=since,
                        contact_fields=contact_fields, matter_fields=matter_fields)
                    pages.append(page)
                    if not page.more:
                        return pages
                    assert page.position != position, (
                        "the same position twice with more=True: the pages never end")
                    position = page.position
            pytest.fail(f"more than {MAX_PAGES} pages; the kit's sandbox should hold a few "
                        "closed matters", pytrace=False)

        pages = asyncio.run(body())
        matters = [m for p in pages for m in p.matters]
        assert matters, "no closed matter since Scenarios.closed_since"
        early = [m.id for m in matters if m.closed_on < since.date()]
        assert not early, f"matters closed before `since` were returned: {', '.join(early)}"
        assert all(m.client.id for m in matters), "a closed matter came back without its client"
        asked = {("contact", n) for n in contact_fields} | {("matter", n) for n in matter_fields}
        for n, page in enumerate(pages, 1):
            described = {(f.on, f.name) for f in page.fields}
            missing = sorted(f"{on} field {name!r}" for on, name in asked - described)
            assert not missing, (f"page {n} describes no {', '.join(missing)}: return every "
                                 "asked field's definition (field_type None when absent)")
            assert page.position, f"page {n} has no position"
        for m in matters:
            for name, value in [*m.custom_fields.items(), *m.client.custom_fields.items()]:
                assert value is None or isinstance(value, bool | str), (
                    f"matter {m.id}: field {name!r} has a value of type {type(value).__name__}")
            unasked = sorted(set(m.custom_fields) - set(matter_fields)) + \
                sorted(set(m.client.custom_fields) - set(contact_fields))
            assert not unasked, f"matter {m.id} carries fields not asked for: {unasked}"

    @covers("send_closed_matter")
    def test_send_closed_matter_keeps_its_record(self) -> None:
        self.kit.require("send_closed_matter", "send_closed_matter",
                         Capability.CLOSED_MATTER_DESTINATION, since="2.0")
        matter = self.kit.scenarios.closed_matter

        async def body() -> tuple[Record, KitDelivery]:
            async with self.kit.session("send_closed_matter") as s:
                delivery = s.delivery(marker=closing_marker(matter))
                record = await s.hooks.send_closed_matter(
                    s.context(delivery), client=matter.client, matter=matter)
                return record, delivery

        record, delivery = asyncio.run(body())
        assert record.kind and record.id, "send_closed_matter returned a record without kind or id"
        assert record in delivery.records, (
            "the record was not kept with the delivery (write through ctx.delivery.step): "
            "a retry would send again under a new record")


def closing_marker(matter: ClosedMatter) -> str:
    """The kit's idempotency id for a sample send (the host's is a keyed hash)."""
    return f"kit-closed-{matter.id}-{matter.closed_on.isoformat()}"
