"""Automatic logging: a connection the app refused parks its next deliveries without a
request while its credentials are unchanged; new credentials (a reconnection) end
that at once, and after a while one delivery tries again on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from callbridge.modes.automatic import HOLD
from callbridge.testing.clock import FakeClock

from tests.modes_support import Book, call, engine_for, status

pytestmark = pytest.mark.usefixtures("secret_key")


class Refusing(Book):
    """The app behind a revoked grant: it counts the requests it refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self.refuse_auth = True

    def _check(self) -> None:
        if self.refuse_auth:
            self.refused += 1
        super()._check()


async def test_a_refused_connection_parks_without_requests_until_it_is_reconnected(
        tmp_path: Path) -> None:
    book, clock = Refusing(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock) as engine:
        first = await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        assert status(engine, first.event_pk, "crm")[:2] == ("parked", "reauthorise")
        assert book.refused == 1
        later = [await engine.ingest(call(f"c-{i}")) for i in (2, 3, 4)]
        await engine.run_until_idle()
        assert [status(engine, s.event_pk, "crm")[:2] for s in later] == [
            ("parked", "reauthorise")] * 3
        assert book.refused == 1  # no request for the app to refuse again

        # Reconnected: new credentials stored, the parked deliveries released.
        book.refuse_auth = False
        engine.ledger.token_set("acme", "crm", {"access_token": "a-new-grant"})
        assert engine.ledger.unpark("acme", "crm", "reauthorise") == 4
        await engine.run_until_idle()
        assert {status(engine, s.event_pk, "crm")[0] for s in [first, *later]} == {"logged"}
    assert len(book.logs) == 4


async def test_after_a_while_one_delivery_tries_the_connection_again(tmp_path: Path) -> None:
    book, clock = Refusing(), FakeClock()
    async with engine_for(tmp_path, {"crm": book}, clock=clock) as engine:
        await engine.ingest(call("c-1"))
        await engine.run_until_idle()
        clock.advance(HOLD + 1)
        book.refuse_auth = False  # fixed in the app itself (the same credentials work again)
        second = await engine.ingest(call("c-2"))
        await engine.run_until_idle()
        assert status(engine, second.event_pk, "crm")[0] == "logged"
    assert book.refused == 1
