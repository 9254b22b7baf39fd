"""OAuth 2.0: the authorisation redirect, the code exchange, and the refresh rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from callbridge.capabilities import OAuth2Config, RateBucket
from callbridge.errors import AuthenticationFailed
from callbridge.http import MemoryTokenStore
from callbridge.oauth import authorize_url, exchange_code, new_state, refresh
from callbridge.ratelimit import LimiterRegistry

from tests import test_http
from tests.test_http import Server, make_client

# The loopback records app and its fixtures, shared with the HTTP tests.
_server = test_http._server
server = test_http.server

STALE = {"access_token": "access-stale", "refresh_token": "refresh-1", "token_type": "bearer"}


class TimedStore(MemoryTokenStore):
    """Notes when each token was saved, to compare with the server's request log."""

    def __init__(self, tokens: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        super().__init__(tokens)
        self.saved_at: list[float] = []

    async def save(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        self.saved_at.append(time.monotonic())
        await super().save(tenant, app, token)


def config(server: Server) -> OAuth2Config:
    return OAuth2Config(authorize_url=f"{server.url}/oauth/authorize",
                        token_url=f"{server.url}/oauth/token", scope="contacts",
                        extra_authorize_params={"redirect_on_decline": "true"})


def api_requests(server: Server) -> list[tuple[float, str, str, int]]:
    return sorted(r for r in server.faults.requests if r[2] != "/oauth/token")


# --- the refresh rule ---------------------------------------------------------------


async def test_a_401_refreshes_once_and_the_retry_succeeds(server: Server) -> None:
    server.state.valid_token = "access-live"
    tokens = TimedStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        response = await c.get("/records")
    assert response.status_code == 200
    assert len(server.state.token_requests) == 1
    assert [s for *_, s in api_requests(server)] == [401, 200]


async def test_the_refreshed_token_is_saved_before_the_retry_is_sent(server: Server) -> None:
    server.state.valid_token = "access-live"
    tokens = TimedStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        await c.get("/records")
    stored = await tokens.load("acme", "records")
    assert stored is not None and stored["access_token"] == server.state.valid_token
    retry_arrived = api_requests(server)[-1][0]
    assert tokens.saved_at[0] < retry_arrived


async def test_a_refresh_keeps_the_refresh_token_when_none_comes_back(server: Server) -> None:
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    server.state.valid_token = "access-live"
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        await c.get("/records")
    stored = await tokens.load("acme", "records")
    assert stored is not None
    assert stored["refresh_token"] == "refresh-1"
    assert stored["expires_at"] == pytest.approx(time.time() + 3600, abs=30)


async def test_two_concurrent_401s_refresh_once(server: Server) -> None:
    server.state.valid_token = "access-live"
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        responses = await asyncio.gather(c.get("/records"), c.get("/records"), c.get("/records"))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(server.state.token_requests) == 1


async def test_two_clients_of_one_connection_refresh_once(server: Server) -> None:
    """Like two worker processes on one database: the second re-reads the token in the lock."""
    server.state.valid_token = "access-live"
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as a, \
            make_client(server.url, auth="oauth2", tokens=tokens) as b:
        responses = await asyncio.gather(a.get("/records"), b.get("/records"))
    assert [r.status_code for r in responses] == [200, 200]
    assert len(server.state.token_requests) == 1


async def test_a_refused_refresh_is_an_authentication_failure(server: Server) -> None:
    server.state.valid_token = "access-live"
    server.state.refresh_ok = False
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        with pytest.raises(AuthenticationFailed, match="invalid_grant") as caught:
            await c.get("/records")
    assert "refresh-1" not in str(caught.value)
    assert tokens.saves == []


async def test_a_401_after_the_refresh_is_an_authentication_failure(server: Server) -> None:
    server.state.valid_token = "access-live"
    server.state.tokens_work = False
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        with pytest.raises(AuthenticationFailed):
            await c.get("/records")
    assert [s for *_, s in api_requests(server)] == [401, 401]
    assert len(server.state.token_requests) == 1


async def test_a_token_about_to_expire_is_refreshed_before_the_request(server: Server) -> None:
    server.state.valid_token = "access-live"
    expiring = {**STALE, "expires_at": time.time() + 5}
    tokens = MemoryTokenStore({("acme", "records"): expiring})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        await c.get("/records")
    assert [s for *_, s in api_requests(server)] == [200]
    assert len(server.state.token_requests) == 1


async def test_a_connection_never_authorised_is_an_authentication_failure(server: Server) -> None:
    async with make_client(server.url, auth="oauth2", tokens=MemoryTokenStore()) as c:
        with pytest.raises(AuthenticationFailed, match="callbridge auth"):
            await c.get("/records")
    assert server.faults.requests == []


async def test_a_static_token_rejected_with_401_is_not_refreshed(server: Server) -> None:
    server.state.valid_token = "something-else"
    async with make_client(server.url) as c:
        with pytest.raises(AuthenticationFailed):
            await c.get("/records")
    assert server.state.token_requests == []
    assert len(server.faults.requests) == 1


async def test_refresh_without_a_refresh_token_is_an_authentication_failure(
        server: Server) -> None:
    with pytest.raises(AuthenticationFailed, match="no refresh token"):
        await refresh(config(server), client_id="c", client_secret="secret-client-0001",
                      token={"access_token": "x"})


# --- authorising a connection ---------------------------------------------------------


def test_the_authorize_url_carries_client_redirect_state_and_extras(server: Server) -> None:
    url = authorize_url(config(server), client_id="client-1",
                        redirect_uri="http://localhost:8765/callback", state="st-1")
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{server.url}/oauth/authorize?")
    assert query == {"response_type": ["code"], "client_id": ["client-1"],
                     "redirect_uri": ["http://localhost:8765/callback"], "scope": ["contacts"],
                     "state": ["st-1"], "redirect_on_decline": ["true"]}


def test_each_state_is_new_and_long() -> None:
    states = {new_state() for _ in range(50)}
    assert len(states) == 50
    assert min(len(s) for s in states) >= 32


async def test_exchanging_the_code_returns_a_token_with_its_expiry(server: Server) -> None:
    token = await exchange_code(
        config(server), client_id="client-1", client_secret="secret-client-0001",
        redirect_uri="http://localhost:8765/callback",
        redirect_url_received="http://localhost:8765/callback?code=the-code&state=st-1",
        expected_state="st-1")
    assert token["access_token"] == server.state.valid_token
    assert token["expires_at"] == pytest.approx(time.time() + 3600, abs=30)
    (sent,) = server.state.token_requests
    assert sent == {"grant_type": "authorization_code", "code": "the-code",
                    "redirect_uri": "http://localhost:8765/callback", "client_id": "client-1",
                    "client_secret": "secret-client-0001"}


async def test_a_state_that_does_not_match_is_refused(server: Server) -> None:
    with pytest.raises(AuthenticationFailed, match=r"state .* does not match"):
        await exchange_code(
            config(server), client_id="client-1", client_secret="secret-client-0001",
            redirect_uri="http://localhost:8765/callback",
            redirect_url_received="http://localhost:8765/callback?code=the-code&state=forged",
            expected_state="st-1")
    assert server.state.token_requests == []


async def test_a_declined_authorisation_says_so(server: Server) -> None:
    with pytest.raises(AuthenticationFailed, match="declined"):
        await exchange_code(
            config(server), client_id="client-1", client_secret="secret-client-0001",
            redirect_uri="http://localhost:8765/callback",
            redirect_url_received="http://localhost:8765/callback?error=access_denied&state=st-1",
            expected_state="st-1")


async def test_a_code_the_app_refuses_is_an_authentication_failure(server: Server) -> None:
    with pytest.raises(AuthenticationFailed, match="invalid_grant") as caught:
        await exchange_code(
            config(server), client_id="client-1", client_secret="secret-client-0001",
            redirect_uri="http://localhost:8765/callback",
            redirect_url_received="http://localhost:8765/callback?code=wrong-code&state=st-1",
            expected_state="st-1")
    assert "wrong-code" not in str(caught.value)


async def test_the_retry_after_a_refresh_is_counted_in_the_rate_limit_bucket(
        server: Server) -> None:
    server.state.valid_token = "access-live"
    limiters = LimiterRegistry()
    bucket = RateBucket(name="api", requests=100, per_seconds=1)
    tokens = MemoryTokenStore({("acme", "records"): STALE})
    async with make_client(server.url, auth="oauth2", tokens=tokens, buckets=(bucket,),
                           limiters=limiters) as c:
        await c.get("/records")
    (state,) = limiters.snapshot().values()
    assert state["started_in_window"] == len(api_requests(server)) == 2
