"""Connecting Clio from a browser through the server (issue 13 point 5), against the
Clio sandbox's OAuth server on loopback: a connect link from an operator, start, the
sandbox's authorise page, the callback, the token saved encrypted, and a delivery
parked for re-authorisation released and logged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from callbridge.cli import app as cli
from callbridge.engine import Engine
from callbridge.faults import serve_in_thread
from callbridge.ledger import Ledger
from callbridge.runtime import load
from callbridge.serve.app import build_app, make_state
from callbridge.serve.auth import token_hash
from callbridge.serve.state import ServerState
from callbridge.testing.clock import FakeClock
from typer.testing import CliRunner

from plugins.clio.tests.conftest import Sandbox, write_config
from plugins.clio.tests.samples import call

ADMIN = "cbo_oauth-test-operator-token-0123456789"
OTHER = "cbo_globex-only-operator-token-012345678"
OPERATORS = f"""
[operators.ops]
token_sha256 = "{token_hash(ADMIN)}"
tenants = ["acme"]

[operators.globex]
token_sha256 = "{token_hash(OTHER)}"
tenants = ["globex"]
"""


@dataclass
class Server:
    url: str
    state: ServerState
    clock: FakeClock
    engine: Engine
    ledger: Ledger
    path: Path

    def link(self, tenant: str = "acme", token: str = ADMIN, **params: str) -> httpx2.Response:
        return httpx2.post(f"{self.url}/v1/operator/oauth/clio/links",
                           params={"tenant": tenant, **params},
                           headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def server(tmp_path: Path, sandbox: Sandbox, firm: dict[str, int],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_CLIO_CLIENT_ID", sandbox.state.client_id)
    monkeypatch.setenv("ACME_CLIO_CLIENT_SECRET", sandbox.state.client_secret)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "clio")
    path = write_config(tmp_path / "callbridge.toml", sandbox.url)
    path.write_text(path.read_text() + OPERATORS)
    runtime = load(path, strict=True)
    engine = runtime.engine()
    clock = FakeClock()
    # The server as `callbridge serve` builds it, on loopback (the worker is run by the tests).
    state = make_state(runtime, engine=engine, clock=clock, worker=False)
    with serve_in_thread(build_app(state)) as url:
        state.base_url = url
        yield Server(url, state, clock, engine, engine.ledger, path)


@pytest.fixture
async def browser() -> AsyncIterator[httpx2.AsyncClient]:
    """The administrator's browser: keeps cookies, follows nothing by itself."""
    async with httpx2.AsyncClient(headers={"Accept": "text/html"}, timeout=30) as client:
        yield client


async def authorise(browser: httpx2.AsyncClient, start_url: str) -> str:
    """Open the link; approve at the app; return where the app sends the browser back."""
    start = await browser.get(start_url)
    assert start.status_code == 303, start.text
    approved = await browser.get(start.headers["location"])  # the sandbox approves at once
    assert approved.status_code == 302, approved.text
    return approved.headers["location"]


async def test_a_connect_link_connects_clio_and_releases_parked_deliveries(
        server: Server, sandbox: Sandbox, browser: httpx2.AsyncClient) -> None:
    engine = server.engine
    stored = await engine.ingest(call())
    await engine.run_until_idle(event_pks=[stored.event_pk])
    parked = engine.ledger.find_delivery("acme", "clio", stored.event_pk)
    assert parked is not None and (parked.status, parked.reason) == ("parked", "reauthorise")

    made = server.link()
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["redirect_uri"] == f"{server.url}/oauth/clio/callback"
    back = await authorise(browser, body["url"])
    assert back.startswith(f"{server.url}/oauth/clio/callback?")
    assert parse_qs(urlsplit(back).query)["code"]
    done = await browser.get(back)
    assert done.status_code == 200, done.text
    assert "clio is connected for acme; 1 delivery(ies)" in done.text

    token = server.ledger.token_get("acme", "clio")
    assert token is not None and token["access_token"] in sandbox.state.tokens
    db = Path(server.ledger.url.removeprefix("sqlite:///"))
    stored_bytes = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert b"acme" in stored_bytes  # the files were read (tenant keys are kept in plain)
    assert token["access_token"].encode() not in stored_bytes  # kept encrypted
    assert server.ledger.delivery(parked.delivery_id).status == "pending"
    await engine.run_until_idle(event_pks=[stored.event_pk])
    logged = server.ledger.delivery(parked.delivery_id)
    assert logged.status == "logged"
    assert len(sandbox.state.communications) == 1

    # The link is spent, and so is the state: neither connects again.
    again = await browser.get(body["url"])
    assert again.status_code == 400 and "has connected the app already" in again.text
    replay = await browser.get(back)
    assert replay.status_code == 400 and "state" in replay.text
    await engine.aclose()


async def test_the_callback_must_come_back_to_the_browser_that_started(
        server: Server, browser: httpx2.AsyncClient) -> None:
    back = await authorise(browser, server.link().json()["url"])
    async with httpx2.AsyncClient() as elsewhere:  # no cookie: another browser
        answer = await elsewhere.get(back)
    assert answer.status_code == 400
    assert answer.json()["error"] == {"field": "state", "problem":
                                      "belongs to an authorisation started in another browser; "
                                      "open the connect link in this one"}
    assert server.ledger.token_get("acme", "clio") is None


async def test_a_forged_or_expired_state_or_link_is_refused(
        server: Server, browser: httpx2.AsyncClient) -> None:
    url = server.link().json()["url"]
    back = await authorise(browser, url)
    state = parse_qs(urlsplit(back).query)["state"][0]
    forged = back.replace(state, state[:-2] + ("AA" if not state.endswith("AA") else "BB"))
    answer = await browser.get(forged, headers={"Accept": "application/json"})
    assert answer.json()["error"]["field"] == "state"
    assert "not one this server made" in answer.json()["error"]["problem"]

    server.clock.advance(timedelta(minutes=11).total_seconds())
    late = await browser.get(back, headers={"Accept": "application/json"})
    assert late.status_code == 400 and "expired" in late.json()["error"]["problem"]
    server.clock.advance(timedelta(minutes=50).total_seconds())
    expired = await browser.get(url, headers={"Accept": "application/json"})
    assert expired.json()["error"] == {"field": "link", "problem":
                                       "has expired; ask for a new connect link"}
    assert server.ledger.token_get("acme", "clio") is None


async def test_access_declined_in_the_app_connects_nothing(
        server: Server, browser: httpx2.AsyncClient) -> None:
    back = await authorise(browser, server.link().json()["url"])
    state = parse_qs(urlsplit(back).query)["state"][0]
    declined = await browser.get(f"{server.url}/oauth/clio/callback",
                                 params={"error": "access_denied", "state": state})
    assert declined.status_code == 400 and "declined" in declined.text
    assert server.ledger.token_get("acme", "clio") is None


def test_links_are_for_operators_of_the_tenant(server: Server) -> None:
    assert server.link(token="cbo_not-a-known-token-000000000000").status_code == 401
    assert server.link(token=OTHER).status_code == 403
    unknown = server.link(tenant="nobody", token=ADMIN)
    assert unknown.status_code == 403  # out of the operator's scope before anything else
    assert server.link(valid_minutes="0").json()["error"]["field"] == "valid_minutes"
    start = httpx2.get(f"{server.url}/oauth/clio/start", params={"tenant": "acme"})
    assert start.status_code == 400 and start.json()["error"]["field"] == "link"
    bad = httpx2.get(f"{server.url}/oauth/hubspot/start",
                     params={"link": server.link().json()["url"].split("link=")[1]})
    assert bad.json()["error"] == {"field": "link",
                                   "problem": "was made for another app or purpose"}


def test_an_operator_may_start_with_its_token(server: Server, sandbox: Sandbox) -> None:
    start = httpx2.get(f"{server.url}/oauth/clio/start", params={"tenant": "acme"},
                       headers={"Authorization": f"Bearer {ADMIN}"})
    assert start.status_code == 303
    assert start.headers["location"].startswith(f"{sandbox.url}/oauth/authorize?")
    assert "callbridge_oauth=" in start.headers["set-cookie"]
    assert "HttpOnly" in start.headers["set-cookie"]


async def test_callbridge_connect_link_makes_a_link_the_server_takes(
        server: Server, sandbox: Sandbox, browser: httpx2.AsyncClient) -> None:
    server.path.write_text(server.path.read_text() + f'\n[serve]\npublic_url = "{server.url}"\n')
    made = CliRunner().invoke(cli, ["connect-link", "clio", "--tenant", "acme",
                                    "--config", str(server.path)])
    assert made.exit_code == 0, made.output
    url = made.stdout.strip()
    assert url.startswith(f"{server.url}/oauth/clio/start?tenant=acme&link=")
    done = await browser.get(await authorise(browser, url))
    assert done.status_code == 200 and "clio is connected for acme" in done.text
    assert server.ledger.token_get("acme", "clio") is not None
    refused = CliRunner().invoke(cli, ["connect-link", "clio", "--tenant", "nobody",
                                       "--config", str(server.path)])
    assert refused.exit_code == 2 and "tenant: no such tenant" in refused.stderr


async def test_two_callbacks_with_one_state_at_once_connect_once(
        server: Server, sandbox: Sandbox, browser: httpx2.AsyncClient) -> None:
    import asyncio

    back = await authorise(browser, server.link().json()["url"])
    # The app's code is good for one exchange; the state decides which request makes it.
    cookie = {"Cookie": f"callbridge_oauth={browser.cookies['callbridge_oauth']}"}
    async with httpx2.AsyncClient(timeout=30) as tab:  # two tabs of the same browser
        answers = await asyncio.gather(tab.get(back, headers=cookie), tab.get(back, headers=cookie))
    assert sorted(a.status_code for a in answers) == [200, 400]
    assert "was used already" in next(a.text for a in answers if a.status_code == 400)
    assert len(sandbox.state.tokens) == 1  # one exchange reached the app
