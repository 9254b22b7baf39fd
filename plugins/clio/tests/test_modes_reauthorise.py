"""Automatic logging (SPEC §4): a Clio connection whose grant was revoked parks its
deliveries (reauthorise) until it is connected again, then each is logged once;
against the Clio sandbox on loopback."""

from __future__ import annotations

from typing import Any

from plugins.clio.tests.samples import call, sms


async def test_a_revoked_connection_parks_its_deliveries_until_it_is_connected_again(
        clio_engine: Any, sandbox: Any, firm: dict[str, int]) -> None:
    engine = clio_engine()
    sandbox.state.tokens.clear()  # the firm revoked the grant: access and refresh refused
    sandbox.state.refresh_tokens.clear()
    stored = [await engine.ingest(call()), await engine.ingest(sms())]
    await engine.run_until_idle()
    views = [engine.ledger.find_delivery("acme", "clio", s.event_pk) for s in stored]
    assert [(v.status, v.reason) for v in views if v] == [("parked", "reauthorise")] * 2
    assert all(v is not None and "callbridge auth" in (v.message or "") for v in views)
    # Parked is not retried on its own, however often the worker looks.
    assert await engine.run_until_idle() == 0
    assert sandbox.state.communications == {}

    # Connected again (what `callbridge auth` and the browser's OAuth callback do).
    engine.ledger.token_set("acme", "clio", sandbox.state.issue_token())
    assert engine.ledger.unpark("acme", "clio", "reauthorise") == 2
    await engine.run_until_idle()
    views = [engine.ledger.find_delivery("acme", "clio", s.event_pk) for s in stored]
    assert [v.status for v in views if v] == ["logged", "logged"]
    assert len(sandbox.state.communications) == 2
