"""Rate-limit buckets: counted on the server, never more than the bucket allows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest
from callbridge.capabilities import RateBucket
from callbridge.errors import RateLimited
from callbridge.http import RetryPolicy
from callbridge.ratelimit import LimiterRegistry, parse_retry_after

from tests import test_http
from tests.test_http import Server, make_client

_server = test_http._server
server = test_http.server

PATIENT = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, inline_max_wait=10.0)


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of times that fall in one window of ``window`` seconds."""
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times)),
               default=0)


def arrivals(server: Server, path: str | None = None) -> list[float]:
    return sorted(t for t, _, p, _ in server.faults.requests if path is None or p == path)


# --- counted on the server ------------------------------------------------------------


async def test_requests_per_window_never_exceed_the_bucket(server: Server) -> None:
    bucket = RateBucket(name="api", requests=5, per_seconds=0.5)
    async with make_client(server.url, buckets=(bucket,), retry=PATIENT,
                           limiters=LimiterRegistry()) as c:
        await asyncio.gather(*(c.get("/records") for _ in range(18)))
    assert len(arrivals(server)) == 18
    assert most_in_any_window(arrivals(server), 0.5) <= 5


async def test_a_busy_tenant_does_not_slow_another_tenants_bucket(server: Server) -> None:
    bucket = RateBucket(name="api", requests=3, per_seconds=0.5, scope="tenant")
    limiters = LimiterRegistry()
    async with make_client(server.url, tenant="busy", buckets=(bucket,), limiters=limiters,
                           retry=PATIENT) as busy, \
            make_client(server.url, tenant="quiet", buckets=(bucket,), limiters=limiters,
                        retry=PATIENT) as quiet:
        burst = asyncio.gather(*(busy.get("/records") for _ in range(12)))
        await asyncio.sleep(0.05)  # the busy tenant's queue is full by now
        await quiet.get("/echo")
        await burst
    busy_times, (quiet_time,) = arrivals(server, "/records"), arrivals(server, "/echo")
    assert quiet_time < busy_times[3]  # it did not queue behind the busy tenant


async def test_a_partner_bucket_is_shared_by_every_tenant(server: Server) -> None:
    bucket = RateBucket(name="partner", requests=4, per_seconds=0.5, scope="partner")
    limiters = LimiterRegistry()
    async with make_client(server.url, tenant="a", buckets=(bucket,), limiters=limiters,
                           retry=PATIENT) as a, \
            make_client(server.url, tenant="b", buckets=(bucket,), limiters=limiters,
                        retry=PATIENT) as b:
        await asyncio.gather(*(a.get("/records") for _ in range(6)),
                             *(b.get("/echo") for _ in range(6)))
    assert most_in_any_window(arrivals(server), 0.5) <= 4


async def test_per_token_buckets_of_two_tenants_are_independent(server: Server) -> None:
    bucket = RateBucket(name="api", requests=3, per_seconds=0.5, scope="token")
    limiters = LimiterRegistry()
    async with make_client(server.url, tenant="a", buckets=(bucket,), limiters=limiters) as a, \
            make_client(server.url, tenant="b", buckets=(bucket,), limiters=limiters) as b:
        await asyncio.gather(*(a.get("/records") for _ in range(3)),
                             *(b.get("/echo") for _ in range(3)))
    assert most_in_any_window(arrivals(server), 0.5) == 6


async def test_a_search_bucket_holds_back_searches_only(server: Server) -> None:
    buckets = (RateBucket(name="api", requests=50, per_seconds=0.5),
               RateBucket(name="search", requests=2, per_seconds=0.5, purpose="search"))
    async with make_client(server.url, buckets=buckets, retry=PATIENT,
                           limiters=LimiterRegistry()) as c:
        searches = [c.get("/records/search", extensions={"callbridge_bucket": "search"})
                    for _ in range(6)]
        reads = [c.get("/records") for _ in range(6)]
        await asyncio.gather(*searches, *reads)
    search_times = arrivals(server, "/records/search")
    assert most_in_any_window(search_times, 0.5) <= 2
    assert max(arrivals(server, "/records")) < search_times[2]


async def test_the_apps_rate_limit_headers_slow_us_before_a_429(server: Server) -> None:
    server.faults.rate_limit = (3, 0.5)  # the app's own limit, told in X-RateLimit-* headers
    generous = RateBucket(name="api", requests=100, per_seconds=0.5)
    async with make_client(server.url, buckets=(generous,), retry=PATIENT) as c:
        for _ in range(9):
            await c.get("/records")
    assert server.faults.count(status=429) == 0
    assert server.faults.count(status=200) == 9


async def test_a_full_bucket_for_longer_than_the_inline_limit_raises_rate_limited(
        server: Server) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=5)
    policy = RetryPolicy(inline_max_wait=1.0)
    async with make_client(server.url, buckets=(bucket,), retry=policy) as c:
        await c.get("/records")
        with pytest.raises(RateLimited) as caught:
            await c.get("/records")
    assert caught.value.retry_after == pytest.approx(5, abs=0.2)
    assert len(server.faults.requests) == 1


# --- the registry on its own, with a clock the test controls ---------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_offset = 1_700_000_000.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def registry(fake: FakeTime) -> LimiterRegistry:
    return LimiterRegistry(fake.clock, sleep=fake.sleep, slack=0.0, wall_clock=fake.wall)


async def start(registry: LimiterRegistry, fake: FakeTime, bucket: RateBucket, *,
                tenant: str = "acme", token_id: str = "t1") -> float:
    ticket = await registry.acquire(plugin="p", bucket=bucket, tenant=tenant, token_id=token_id)
    registry.release(ticket)  # answered at once
    return fake.now - 1000.0


async def test_a_bucket_lets_its_requests_through_then_waits_a_window(
        registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=3, per_seconds=1)
    times = [await start(registry, fake, bucket) for _ in range(7)]
    assert times == [0, 0, 0, 1, 1, 1, 2]


async def test_a_burst_smaller_than_the_limit_spreads_requests(
        registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=10, per_seconds=1, burst=2)
    times = [await start(registry, fake, bucket) for _ in range(6)]
    assert times == pytest.approx([0, 0, 0.2, 0.2, 0.4, 0.4])


async def test_clio_headers_hold_us_to_what_the_app_says_remains(
        registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=50, per_seconds=60)
    await start(registry, fake, bucket)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({
        "X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": str(int(fake.wall() + 20))}))
    assert await start(registry, fake, bucket) == 0
    assert await start(registry, fake, bucket) == pytest.approx(20)


async def test_hubspot_headers_lower_the_limit_and_the_remaining(
        registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="burst", requests=190, per_seconds=10)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({
        "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))
    assert await start(registry, fake, bucket) == pytest.approx(10)
    (state,) = registry.snapshot().values()
    assert state["limit"] == 100


async def test_a_request_in_flight_holds_its_slot_until_its_answer(
        registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=1)
    slow = await registry.acquire(plugin="p", bucket=bucket, tenant="acme", token_id="t1")
    fake.now += 3  # still connecting: the app may see it any moment
    with pytest.raises(RateLimited):
        await registry.acquire(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                               max_wait=0.5)
    registry.release(slow)
    assert await start(registry, fake, bucket) == pytest.approx(4)


async def test_retry_after_holds_back_the_bucket(registry: LimiterRegistry,
                                                 fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=50, per_seconds=60)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({"Retry-After": "7"}))
    assert await start(registry, fake, bucket) == pytest.approx(7)


async def test_a_refused_wait_books_nothing(registry: LimiterRegistry, fake: FakeTime) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=30)
    await start(registry, fake, bucket)
    with pytest.raises(RateLimited) as caught:
        await registry.acquire(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                               max_wait=5)
    assert caught.value.retry_after == pytest.approx(30)
    (state,) = registry.snapshot().values()
    assert state["started_in_window"] == 1
    assert state["refused"] == 1


@pytest.mark.parametrize(("scope", "key"), [
    ("token", "acme|t1"), ("tenant", "acme"), ("partner", "*")])
def test_each_scope_has_its_key(scope: str, key: str) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=1, scope=scope)  # type: ignore[arg-type]
    assert LimiterRegistry.scope_key(bucket, tenant="acme", token_id="t1") == key


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("0.25") == 0.25
    when = datetime.now(UTC) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True)) == pytest.approx(90, abs=2)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
