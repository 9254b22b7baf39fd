"""The app client (ctx.http): retries, what reaches the app twice, errors, headers.

Every test talks over real loopback HTTP to a small "records" app behind the
same FaultInjector the app sandboxes use. The app and fixtures here are
shared by the other HTTP-layer test modules.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
from callbridge.capabilities import Connection, OAuth2Config, RateBucket
from callbridge.context import SyncBridge, SyncHttp
from callbridge.errors import (
    AuthenticationFailed,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.http import (
    Credentials,
    MemoryTokenStore,
    RetryPolicy,
    TokenStore,
    UncertainWrite,
    build_bare_client,
    build_client,
    map_response_error,
)
from callbridge.ratelimit import LimiterRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, inline_max_wait=2.0)


# --- the records app ------------------------------------------------------------


@dataclass
class RecordsState:
    """What the records app holds; tests read it to count what was created."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    # OAuth: the access token the API accepts and the refresh token the token endpoint accepts.
    valid_token: str | None = None
    refresh_token: str = "refresh-1"
    refresh_ok: bool = True
    tokens_work: bool = True  # False: the API refuses every token, even a fresh one
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        fresh = RecordsState()
        self.__dict__.update(fresh.__dict__)


def records_app(state: RecordsState) -> Starlette:
    """A tiny app: create records (with an Idempotency-Key check), read, search, fail."""

    def authorised(request: Request) -> bool:
        state.seen_headers.append(dict(request.headers))
        if state.valid_token is None:
            return True
        return state.tokens_work and \
            request.headers.get("authorization") == f"Bearer {state.valid_token}"

    def unauthorised() -> JSONResponse:
        return JSONResponse({"error": "invalid_token",
                             "error_description": "The access token is expired"}, status_code=401)

    async def create(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        body = await request.json()
        key = request.headers.get("idempotency-key")
        with state.lock:
            if key and key in state.by_key:
                return JSONResponse({"data": state.records[state.by_key[key]]}, status_code=200)
            record_id = str(len(state.records) + 1)
            state.records[record_id] = {"id": record_id, **body}
            if key:
                state.by_key[key] = record_id
        return JSONResponse({"data": state.records[record_id]}, status_code=201)

    async def listing(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        return JSONResponse({"data": list(state.records.values())})

    async def search(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        return JSONResponse({"data": []})

    async def show(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        record = state.records.get(request.path_params["rid"])
        if record is None:
            return JSONResponse({"error": {"type": "NotFound", "message": "no such record"}},
                                status_code=404)
        return JSONResponse({"data": record})

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse(
            {"error": {"type": "Refused", "message": f"refused with {code}"}}, status_code=code)

    async def echo(request: Request) -> Response:
        state.seen_headers.append(dict(request.headers))
        return JSONResponse({"headers": dict(request.headers), "query": str(request.url.query)})

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        state.token_requests.append(form)
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code") == "the-code":
            n = next(state.issued)
            state.valid_token = f"access-{n}"
            return JSONResponse({"token_type": "bearer", "access_token": state.valid_token,
                                 "expires_in": 3600, "refresh_token": state.refresh_token})
        if grant == "refresh_token" and state.refresh_ok \
                and form.get("refresh_token") == state.refresh_token:
            await asyncio.sleep(0.05)  # a slow token endpoint widens any race
            n = next(state.issued)
            state.valid_token = f"access-{n}"
            # Like Clio: no new refresh token comes back.
            return JSONResponse({"token_type": "bearer", "access_token": state.valid_token,
                                 "expires_in": 3600})
        return JSONResponse({"error": "invalid_grant",
                             "error_description": "refresh token revoked"}, status_code=400)

    return Starlette(routes=[
        Route("/records", create, methods=["POST"]),
        Route("/records", listing, methods=["GET"]),
        Route("/records/search", search, methods=["GET", "POST"]),
        Route("/records/{rid}", show, methods=["GET"]),
        Route("/status/{code:int}", status, methods=["GET", "POST", "PUT"]),
        Route("/echo", echo, methods=["GET", "POST", "PUT"]),
        Route("/oauth/token", token, methods=["POST"]),
    ])


@dataclass
class Server:
    url: str
    faults: FaultInjector
    state: RecordsState


@pytest.fixture(scope="module")
def _server() -> Iterator[Server]:
    state = RecordsState()
    faults = FaultInjector(records_app(state), seed=7)
    with serve_in_thread(faults) as url:
        yield Server(url, faults, state)


@pytest.fixture
def server(_server: Server) -> Server:
    _server.faults.reset()
    _server.state.reset()
    return _server


def make_client(server_url: str, *, tenant: str = "acme", app: str = "records",
                auth: str = "bearer", credentials: Credentials | None = None,
                buckets: tuple[RateBucket, ...] = (), limiters: LimiterRegistry | None = None,
                retry: RetryPolicy = FAST, tokens: TokenStore | None = None,
                timeout: float = 5.0, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    oauth = OAuth2Config(authorize_url=f"{server_url}/oauth/authorize",
                         token_url=f"{server_url}/oauth/token")
    connection = Connection(base_url=server_url, auth=auth,  # type: ignore[arg-type]
                            api_key_header="X-Api-Key",
                            oauth2=oauth if auth == "oauth2" else None, headers=headers or {})
    if credentials is None:
        credentials = (Credentials(client_id="client-1", client_secret="secret-client-0001")
                       if auth == "oauth2" else Credentials(token="static-token-1"))
    return build_client(tenant=tenant, app=app, plugin="records", plugin_version="1.2.3",
                        connection=connection, credentials=credentials, buckets=buckets,
                        limiters=limiters or LimiterRegistry(), tokens=tokens, retry=retry,
                        timeout=timeout)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(server.url) as c:
        yield c


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- retries --------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_get_is_retried_after_a_gateway_error(server: Server, client: httpx2.AsyncClient,
                                                      status: int) -> None:
    server.faults.fail_next = [status, status]
    response = await client.get("/records")
    assert response.status_code == 200
    assert [s for *_, s in server.faults.requests] == [status, status, 200]


async def test_waits_between_retries_grow(server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [503, 503, 503]
    await client.get("/records")
    waits = gaps([t for t, *_ in server.faults.requests])
    # base 0.05 s doubling: at least 0.05, 0.1, 0.2 s apart
    assert [w >= FAST.base_delay * 2 ** i for i, w in enumerate(waits)] == [True] * 3


async def test_retries_stop_after_the_attempts_with_a_transient_error(
        server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [503] * 10
    with pytest.raises(TransientError, match="503"):
        await client.get("/records")
    assert len(server.faults.requests) == FAST.attempts


async def test_a_500_is_not_retried_inline(server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [500]
    with pytest.raises(TransientError):
        await client.get("/records")
    assert len(server.faults.requests) == 1


async def test_retries_are_off_when_the_policy_says_so(server: Server) -> None:
    server.faults.fail_next = [503]
    async with make_client(server.url, retry=RetryPolicy(enabled=False)) as c:
        with pytest.raises(TransientError):
            await c.get("/records")
    assert len(server.faults.requests) == 1


async def test_a_connect_error_is_retried_until_the_app_answers(server: Server) -> None:
    port = free_port()
    started = threading.Event()
    stop = threading.Event()

    def late_server() -> None:
        time.sleep(0.15)
        with serve_in_thread(server.faults, port=port):
            started.set()
            stop.wait(10)

    thread = threading.Thread(target=late_server, daemon=True)
    thread.start()
    patient = RetryPolicy(attempts=8, base_delay=0.05, max_delay=0.3)
    try:
        async with make_client(f"http://127.0.0.1:{port}", retry=patient) as c:
            # A POST too: a refused connection surely did not reach the app.
            response = await c.post("/records", json={"name": "Dana"})
        assert response.status_code == 201
        assert started.is_set()
        assert len(server.state.records) == 1
    finally:
        stop.set()
        thread.join(5)


async def test_a_connect_error_that_persists_is_transient(server: Server) -> None:
    async with make_client(f"http://127.0.0.1:{free_port()}",
                           retry=RetryPolicy(attempts=2, base_delay=0.01)) as c:
        with pytest.raises(TransientError, match="could not reach the app") as caught:
            await c.get("/records")
    assert not isinstance(caught.value, UncertainWrite)


async def test_a_dropped_connection_on_a_get_is_retried(server: Server,
                                                        client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = ["drop"]
    response = await client.get("/records")
    assert response.status_code == 200
    assert len(server.faults.requests) == 2


async def test_retry_after_is_waited_in_full(server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [(429, 0.4)]
    response = await client.get("/records")
    assert response.status_code == 200
    first, second = (t for t, *_ in server.faults.requests)
    assert second - first >= 0.4


async def test_a_retry_after_longer_than_the_inline_limit_raises_rate_limited(
        server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.storm_until = time.monotonic() + 60
    server.faults.storm_retry_after = 30
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        await client.get("/records")
    assert caught.value.retry_after == 30
    assert len(server.faults.requests) == 1
    assert time.monotonic() - started < FAST.inline_max_wait  # not slept


# --- creates are never blindly repeated ---------------------------------------


async def test_a_post_is_not_retried_when_the_connection_drops_after_the_app_handled_it(
        server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = ["drop_after"]
    with pytest.raises(UncertainWrite, match="may have reached the app"):
        await client.post("/records", json={"name": "Dana"})
    assert len(server.state.records) == 1
    assert server.faults.count(method="POST") == 1


@pytest.mark.parametrize("status", [502, 504, 503])
async def test_a_post_is_not_retried_after_a_gateway_error(
        server: Server, client: httpx2.AsyncClient, status: int) -> None:
    server.faults.fail_next = [status]
    with pytest.raises(UncertainWrite):
        await client.post("/records", json={"name": "Dana"})
    assert server.faults.count(method="POST") == 1


async def test_a_post_is_not_retried_after_a_read_timeout(server: Server) -> None:
    server.faults.latency = 0.5
    async with make_client(server.url, timeout=0.2) as c:
        with pytest.raises(UncertainWrite, match="look for the record"):
            await c.post("/records", json={"name": "Dana"})
    await asyncio.sleep(0.5)  # the app finishes the request the client gave up on
    assert len(server.state.records) == 1
    assert server.faults.count(method="POST") == 1


async def test_a_post_marked_idempotent_is_retried_and_creates_one_record(
        server: Server, client: httpx2.AsyncClient) -> None:
    server.faults.fail_next = ["drop_after", 502]
    response = await client.post("/records", json={"name": "Dana"},
                                 headers={"Idempotency-Key": "evt-1"},
                                 extensions={"callbridge_idempotent": True})
    assert response.json()["data"]["id"] == "1"
    assert len(server.state.records) == 1
    assert server.faults.count(method="POST") == 3


@pytest.mark.parametrize("fault", [429, (503, 0.05)])
async def test_a_post_is_retried_when_the_app_refused_it_unprocessed(
        server: Server, client: httpx2.AsyncClient, fault: Any) -> None:
    server.faults.fail_next = [fault]
    response = await client.post("/records", json={"name": "Dana"})
    assert response.status_code == 201
    assert len(server.state.records) == 1


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [
    (400, PermanentError), (401, AuthenticationFailed), (403, PermanentError),
    (404, NotFound), (408, TransientError), (409, PermanentError), (410, PermanentError),
    (422, PermanentError), (429, RateLimited), (500, TransientError), (502, TransientError),
    (503, TransientError), (504, TransientError),
])
async def test_each_status_raises_the_hosts_exception(server: Server, status: int,
                                                      error: type[Exception]) -> None:
    async with make_client(server.url, retry=RetryPolicy(enabled=False)) as c:
        with pytest.raises(error) as caught:
            await c.get(f"/status/{status}")
    assert type(caught.value) is error


async def test_an_error_message_names_method_path_status_and_the_apps_error(
        server: Server, client: httpx2.AsyncClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await client.get("/status/422", params={"query": "+12125550142", "fields": "id"})
    message = str(caught.value)
    assert message == "GET /status/422 -> 422 Unprocessable Entity: Refused: refused with 422"


async def test_success_and_redirect_statuses_are_not_errors(server: Server) -> None:
    ok = httpx2.Response(200, request=httpx2.Request("GET", "https://app.example.com/x"))
    not_modified = httpx2.Response(304, request=httpx2.Request("GET", "https://app.example.com/x"))
    assert map_response_error(ok) is None
    assert map_response_error(not_modified) is None


async def test_a_missing_record_is_not_found(server: Server, client: httpx2.AsyncClient) -> None:
    with pytest.raises(NotFound, match="no such record"):
        await client.get("/records/99")


# --- what is sent -----------------------------------------------------------------


async def test_the_user_agent_names_callbridge_and_the_plugin(
        server: Server, client: httpx2.AsyncClient) -> None:
    body = (await client.get("/echo")).json()
    agent = body["headers"]["user-agent"]
    assert agent.startswith("callbridge/") and agent.endswith(" records/1.2.3")


async def test_the_connections_headers_and_bearer_token_are_sent(server: Server) -> None:
    async with make_client(server.url, headers={"X-API-VERSION": "4.0.13"}) as c:
        headers = (await c.get("/echo")).json()["headers"]
    assert headers["x-api-version"] == "4.0.13"
    assert headers["authorization"] == "Bearer static-token-1"


async def test_an_api_key_goes_in_the_declared_header(server: Server) -> None:
    async with make_client(server.url, auth="api_key",
                           credentials=Credentials(api_key="key-0123456789")) as c:
        headers = (await c.get("/echo")).json()["headers"]
    assert headers["x-api-key"] == "key-0123456789"
    assert "authorization" not in headers


async def test_a_missing_api_key_is_an_authentication_failure(server: Server) -> None:
    async with make_client(server.url, auth="api_key", credentials=Credentials()) as c:
        with pytest.raises(AuthenticationFailed, match="no API key"):
            await c.get("/echo")
    assert server.faults.requests == []


async def test_the_bare_client_sends_no_credentials_or_default_headers(server: Server) -> None:
    async with make_client(server.url, headers={"X-API-VERSION": "4.0.13"}) as app_client:
        await app_client.get("/echo")  # the app's client is in use at the same time
        async with build_bare_client() as bare:
            response = await bare.put(f"{server.url}/echo",
                                      params={"X-Amz-Signature": "abc123sig"}, content=b"%PDF")
    headers = response.json()["headers"]
    assert "authorization" not in headers
    assert "x-api-version" not in headers
    assert not headers["user-agent"].startswith("callbridge/")


async def test_a_bare_client_error_never_shows_the_signature(server: Server) -> None:
    async with build_bare_client(retry=RetryPolicy(enabled=False)) as bare:
        with pytest.raises(PermanentError) as caught:
            await bare.put(f"{server.url}/status/403",
                           params={"X-Amz-Signature": "sig-0123456789abcdef",
                                   "X-Amz-Expires": "60"},
                           content=b"%PDF")
    assert "sig-0123456789abcdef" not in str(caught.value)
    assert "?" not in str(caught.value)


async def test_a_sync_plugin_uses_the_same_client_from_a_worker_thread(
        server: Server) -> None:
    limiters = LimiterRegistry()
    bucket = RateBucket(name="api", requests=100, per_seconds=1)
    async with make_client(server.url, buckets=(bucket,), limiters=limiters) as c:
        sync = SyncHttp(c, SyncBridge(asyncio.get_running_loop()))

        def plugin_code() -> int:
            return sync.post("/records", json={"name": "Dana"}).status_code

        status = await asyncio.to_thread(plugin_code)
    assert status == 201
    (state,) = limiters.snapshot().values()
    assert state["started_in_window"] == 1


async def test_the_sync_view_raises_the_hosts_exceptions(server: Server,
                                                         client: httpx2.AsyncClient) -> None:
    sync = SyncHttp(client, SyncBridge(asyncio.get_running_loop()))
    with pytest.raises(NotFound):
        await asyncio.to_thread(sync.get, "/records/42")


async def test_uses_an_oauth_token_from_the_store(server: Server) -> None:
    server.state.valid_token = "access-0"
    tokens = MemoryTokenStore({("acme", "records"): {"access_token": "access-0",
                                                     "refresh_token": "refresh-1"}})
    async with make_client(server.url, auth="oauth2", tokens=tokens) as c:
        response = await c.get("/records")
    assert response.status_code == 200
    assert server.state.token_requests == []


def test_an_oauth_connection_without_a_token_store_is_a_config_error() -> None:
    from callbridge.errors import ConfigError

    with pytest.raises(ConfigError, match="token store"):
        make_client("http://127.0.0.1:9", auth="oauth2")


def test_credentials_never_print_their_values() -> None:
    assert "s3cret" not in repr(Credentials(api_key="s3cret-key", client_secret="s3cret"))


async def test_an_asgi_transport_is_the_innermost_transport(server: Server) -> None:
    state = RecordsState()
    transport = httpx2.ASGITransport(app=FaultInjector(records_app(state)))
    connection = Connection(base_url="https://app.example.com", auth="none")
    async with build_client(tenant="acme", app="records", plugin="records", plugin_version="1",
                            connection=connection, credentials=Credentials(), buckets=(),
                            limiters=LimiterRegistry(), transport=transport, retry=FAST) as c:
        response = await c.post("/records", json={"name": "Dana"})
    assert response.request.url.host == "app.example.com"
    assert len(state.records) == 1
