"""Rate-limit buckets: counted on the server, never more than the bucket allows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest
from callbridge.capabilities import RateBucket
from callbridge.errors import DailyLimitReached, RateLimited
from callbridge.http import RetryPolicy
from callbridge.ratelimit import LimiterRegistry, parse_retry_after, priority
from callbridge.testing.clock import FakeClock

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


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock(autojump=True)


@pytest.fixture
def registry(fake: FakeClock) -> LimiterRegistry:
    return LimiterRegistry(fake, slack=0.0)


def elapsed(fake: FakeClock) -> float:
    return fake.monotonic() - 1000.0


async def start(registry: LimiterRegistry, fake: FakeClock, bucket: RateBucket, *,
                tenant: str = "acme", token_id: str = "t1", cost: int | None = None) -> float:
    ticket = await registry.acquire(plugin="p", bucket=bucket, tenant=tenant, token_id=token_id,
                                    cost=cost)
    registry.release(ticket)  # answered at once
    return elapsed(fake)


async def test_a_bucket_lets_its_requests_through_then_waits_a_window(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=3, per_seconds=1)
    times = [await start(registry, fake, bucket) for _ in range(7)]
    assert times == [0, 0, 0, 1, 1, 1, 2]


async def test_a_burst_smaller_than_the_limit_spreads_requests(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=10, per_seconds=1, burst=2)
    times = [await start(registry, fake, bucket) for _ in range(6)]
    assert times == pytest.approx([0, 0, 0.2, 0.2, 0.4, 0.4])


async def test_clio_headers_hold_us_to_what_the_app_says_remains(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=50, per_seconds=60)
    await start(registry, fake, bucket)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({
        "X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": str(int(fake.time() + 20))}))
    assert await start(registry, fake, bucket) == 0
    # A whole-second Unix time may be rounded down by the app: up to a second is added.
    assert 20 <= await start(registry, fake, bucket) <= 21.001


async def test_hubspot_headers_lower_the_limit_and_the_remaining(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="burst", requests=190, per_seconds=10)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({
        "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))
    assert await start(registry, fake, bucket) == pytest.approx(10)
    (state,) = registry.snapshot().values()
    assert state["limit"] == 100


async def test_a_request_in_flight_holds_its_slot_until_its_answer(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=1)
    slow = await registry.acquire(plugin="p", bucket=bucket, tenant="acme", token_id="t1")
    fake.advance(3)  # still connecting: the app may see it any moment
    with pytest.raises(RateLimited):
        await registry.acquire(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                               max_wait=0.5)
    registry.release(slow)
    assert await start(registry, fake, bucket) == pytest.approx(4)


async def test_retry_after_holds_back_the_bucket(registry: LimiterRegistry,
                                                 fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=50, per_seconds=60)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({"Retry-After": "7"}))
    assert await start(registry, fake, bucket) == pytest.approx(7)


async def test_a_refused_wait_books_nothing(registry: LimiterRegistry, fake: FakeClock) -> None:
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


async def test_a_unix_reset_narrows_the_bucket_on_the_injected_clock(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    # The clock is in 2026: a reset read against the machine's own time would be ignored.
    bucket = RateBucket(name="api", requests=50, per_seconds=60)
    registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                     headers=httpx2.Headers({"X-RateLimit-Limit": "50",
                                             "X-RateLimit-Remaining": "0",
                                             "X-RateLimit-Reset": f"{fake.time() + 12.5:.3f}"}))
    assert await start(registry, fake, bucket) == pytest.approx(12.5)


# --- priority, fair share, cost, daily budgets, 429 without Retry-After ----------------


async def test_higher_priority_waiters_go_first(registry: LimiterRegistry,
                                                fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=1)
    await start(registry, fake, bucket)  # the window is full for a second
    order: list[str] = []

    async def request(name: str, level: int) -> None:
        priority.set(level)  # each task has its own context
        await start(registry, fake, bucket)
        order.append(name)

    await asyncio.gather(request("sync", -1), request("lookup", 0), request("write", 1),
                         request("lookup2", 0))
    assert order == ["write", "lookup", "lookup2", "sync"]


async def test_a_partner_bucket_serves_the_tenant_that_used_least_first(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="partner", requests=2, per_seconds=1, scope="partner")
    await start(registry, fake, bucket, tenant="busy")
    await start(registry, fake, bucket, tenant="busy")
    order: list[str] = []

    async def request(tenant: str) -> None:
        await start(registry, fake, bucket, tenant=tenant)
        order.append(tenant)

    # The busy firm queues four more before the quiet one asks once.
    await asyncio.gather(*(request("busy") for _ in range(4)), request("quiet"))
    assert order.index("quiet") <= 1


async def test_a_request_may_cost_several_units(registry: LimiterRegistry,
                                                fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=10, per_seconds=1)
    assert await start(registry, fake, bucket, cost=8) == 0
    assert await start(registry, fake, bucket, cost=2) == 0
    assert await start(registry, fake, bucket, cost=5) == pytest.approx(1)


async def test_a_spent_daily_budget_raises_until_midnight_in_its_time_zone(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    # The fake clock starts at 15:00 UTC = 10:00 in New York.
    bucket = RateBucket(name="daily", daily=10, cost=4, daily_reset_tz="America/New_York")
    await start(registry, fake, bucket)
    await start(registry, fake, bucket)
    with pytest.raises(DailyLimitReached) as caught:
        await start(registry, fake, bucket)
    assert caught.value.resets_at == datetime(2026, 1, 6, 5, 0, tzinfo=UTC)
    assert caught.value.retry_after == pytest.approx(14 * 3600)
    assert isinstance(caught.value, RateLimited)
    fake.advance(14 * 3600)
    assert await start(registry, fake, bucket) == pytest.approx(14 * 3600)


def test_a_bucket_needs_a_limit_and_a_known_time_zone() -> None:
    with pytest.raises(ValueError, match="needs requests/per_seconds"):
        RateBucket(name="nothing")
    with pytest.raises(ValueError, match="daily_reset_tz"):
        RateBucket(name="daily", daily=5, daily_reset_tz="Mars/Olympus")


async def test_a_429_without_retry_after_means_the_window_is_full(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=100, per_seconds=10)
    wait = registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                            headers=httpx2.Headers(), status=429)
    assert wait == 10
    assert await start(registry, fake, bucket) == pytest.approx(10)


async def test_a_429_without_retry_after_may_mean_back_off(
        registry: LimiterRegistry, fake: FakeClock) -> None:
    bucket = RateBucket(name="api", requests=100, per_seconds=10,
                        on_429_without_retry_after="backoff")
    assert registry.observe(plugin="p", bucket=bucket, tenant="acme", token_id="t1",
                            headers=httpx2.Headers(), status=429) is None
    assert await start(registry, fake, bucket) == 0


async def test_a_client_whose_max_wait_is_short_raises_rate_limited(server: Server) -> None:
    bucket = RateBucket(name="api", requests=1, per_seconds=30)
    async with make_client(server.url, buckets=(bucket,), retry=PATIENT) as c:
        c.max_wait = 2.0
        await c.get("/records")
        with pytest.raises(RateLimited) as caught:
            await c.get("/records")
    assert caught.value.retry_after == pytest.approx(30, abs=0.5)
    assert server.faults.count() == 1


def test_a_tenants_share_of_a_partner_bucket_follows_the_moving_window() -> None:
    from callbridge.buckets import BucketState

    state = BucketState.new(RateBucket(name="partner", requests=10, per_seconds=1,
                                       scope="partner"))
    for at, units in ((0.0, 2), (0.5, 1), (1.2, 3)):
        state.note_use("acme", at, units)
    state.note_use("other", 0.7, 5)
    assert state.tenant_used("acme", since=-1.0) == 6
    assert state.tenant_used("acme", since=0.1) == 4
    assert state.tenant_used("acme", since=1.0) == 3
    assert state.tenant_used("other", since=1.0) == 0
    assert state.tenant_used("acme", since=2.0) == 0
    assert state.tenant_use == {} and state.tenant_total == {}  # nothing kept for the idle
