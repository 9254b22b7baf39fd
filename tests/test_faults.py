"""The fault-injecting middleware that app sandboxes and the host's HTTP tests share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx2
import pytest
from callbridge.capabilities import Connection, RateBucket
from callbridge.faults import FaultInjector
from callbridge.http import Credentials, RetryPolicy, build_client
from callbridge.ratelimit import LimiterRegistry
from callbridge.testing.clock import FakeClock

from tests import test_http
from tests.test_http import RecordsState, Server, records_app

_server = test_http._server
server = test_http.server


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[httpx2.AsyncClient]:
    """A plain client: the middleware's answers as they are, no retries."""
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as c:
        yield c


async def test_without_faults_the_app_answers(server: Server, raw: httpx2.AsyncClient) -> None:
    response = await raw.post("/records", json={"name": "Dana"})
    assert response.status_code == 201
    assert [(m, p, s) for _, m, p, s in server.faults.requests] == [("POST", "/records", 201)]


async def test_queued_faults_answer_the_next_requests_in_order(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [502, (503, 2)]
    first, second, third = [await raw.get("/records") for _ in range(3)]
    assert (first.status_code, second.status_code, third.status_code) == (502, 503, 200)
    assert second.headers["Retry-After"] == "2"
    assert "Retry-After" not in first.headers


async def test_a_drop_closes_the_connection_before_the_app_sees_the_request(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.fail_next = ["drop"]
    with pytest.raises(httpx2.TransportError):
        await raw.post("/records", json={"name": "Dana"})
    assert server.state.records == {}
    assert server.faults.count(status=0) == 1


async def test_a_drop_after_lets_the_app_create_the_record_but_never_answers(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.fail_next = ["drop_after"]
    with pytest.raises(httpx2.TransportError):
        await raw.post("/records", json={"name": "Dana"})
    assert len(server.state.records) == 1


async def test_the_rate_limit_answers_429_with_the_apps_headers(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.rate_limit = (2, 0.5)
    responses = [await raw.get("/records") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]
    assert responses[0].headers["X-RateLimit-Limit"] == "2"
    reset = float(responses[2].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 0.5
    assert 0 < float(responses[2].headers["Retry-After"]) <= 0.5


async def test_a_storm_answers_every_request_429_until_it_ends(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.storm_until = time.monotonic() + 60
    server.faults.storm_retry_after = 30
    response = await raw.get("/records")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    server.faults.storm_until = time.monotonic()
    assert (await raw.get("/records")).status_code == 200


async def test_latency_delays_the_answer_after_the_app_did_its_work(
        server: Server, raw: httpx2.AsyncClient) -> None:
    server.faults.latency = 0.3
    with pytest.raises(httpx2.ReadTimeout):
        await raw.post("/records", json={"name": "Dana"}, timeout=0.1)
    assert len(server.state.records) == 1


async def test_random_errors_follow_the_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        faults = FaultInjector(records_app(RecordsState()), seed=seed)
        faults.error_rate, faults.error_statuses = 0.5, (502, 503)
        transport = httpx2.ASGITransport(app=faults)
        async with httpx2.AsyncClient(transport=transport, base_url="https://app.example.com") as c:
            return [(await c.get("/records")).status_code for _ in range(12)]

    first = await statuses(3)
    assert first == await statuses(3)
    assert len(set(first)) > 1


async def test_random_errors_answer_some_requests_with_5xx(server: Server) -> None:
    server.faults.error_rate = 0.5
    server.faults.error_statuses = (502,)
    async with httpx2.AsyncClient(base_url=server.url) as c:
        codes = {(await c.get("/records")).status_code for _ in range(15)}
    assert codes == {200, 502}


async def test_reset_clears_faults_and_the_request_log(server: Server,
                                                       raw: httpx2.AsyncClient) -> None:
    server.faults.fail_next = [500, 500]
    server.faults.latency = 0.1
    await raw.get("/records")
    server.faults.reset()
    assert server.faults.requests == [] and server.faults.fail_next == []
    assert (await raw.get("/records")).status_code == 200


async def test_it_wraps_an_app_under_an_in_process_transport() -> None:
    state = RecordsState()
    faults = FaultInjector(records_app(state))
    faults.fail_next = ["drop_after"]
    transport = httpx2.ASGITransport(app=faults)
    async with httpx2.AsyncClient(transport=transport, base_url="https://app.example.com") as c:
        with pytest.raises(httpx2.ReadError):
            await c.post("/records", json={"name": "Dana"})
        assert (await c.get("/records")).status_code == 200
    assert len(state.records) == 1


async def test_a_sandbox_supplies_error_bodies_in_its_apps_shape() -> None:
    state = RecordsState()
    app = records_app(state)
    app.fault_bodies = {  # type: ignore[attr-defined]
        401: b'{"errors": [{"code": "unauthorized"}]}',
        429: b'{"errors": [{"code": "rate_limit"}]}',
    }
    faults = FaultInjector(app, bodies=None)
    faults.fail_next = [401, 429, 503]
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=faults),
                                  base_url="http://records.test") as c:
        bodies = [(await c.get("/records")).json() for _ in range(3)]
    assert bodies[0] == {"errors": [{"code": "unauthorized"}]}
    assert bodies[1] == {"errors": [{"code": "rate_limit"}]}
    assert bodies[2] == {"error": {"type": "Injected", "message": "injected fault"}}
    explicit = FaultInjector(app, bodies={503: b'{"status": "down"}'})
    assert explicit.body(503, b"") == b'{"status": "down"}'
    assert explicit.body(401, b"generic") == b"generic"


async def test_one_fake_clock_drives_the_sandbox_limit_and_the_hosts_buckets() -> None:
    # The app allows 3 requests per 10 s and says so in X-RateLimit-* (Reset a Unix time
    # on the fake clock, in 2026); the host declared a generous bucket and must learn.
    clock = FakeClock(autojump=True)
    faults = FaultInjector(records_app(RecordsState()), clock=clock)
    faults.rate_limit = (3, 10.0)
    transport = httpx2.ASGITransport(app=faults)
    generous = RateBucket(name="api", requests=100, per_seconds=10)
    async with build_client(
            tenant="acme", app="records", plugin="records", plugin_version="1",
            connection=Connection(base_url="http://records.test"), credentials=Credentials(),
            buckets=(generous,), limiters=LimiterRegistry(clock), transport=transport,
            retry=RetryPolicy(inline_max_wait=60.0)) as c:
        for _ in range(9):
            await c.get("/records")
    assert faults.count(status=429) == 0
    assert faults.count(status=200) == 9
    assert 20 <= clock.monotonic() - 1000 <= 23
