"""One connection factory: shared pools, credentials only to the app's own origins,
buckets by the connection's options, and hand-built contexts for plugin tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

import callbridge_notebook
import httpx2
import pytest
from callbridge.capabilities import Connection, Declaration, RateBucket
from callbridge.connections import Connections
from callbridge.documents import Documents
from callbridge.errors import ConfigError, RateLimited
from callbridge.events import ExternalParty
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.hookspecs import hookimpl
from callbridge.http import AppClient, Credentials
from callbridge.models import Record
from callbridge.plugins import Registry
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing import make_context
from callbridge.testing.clock import FakeClock
from callbridge_notebook.server import NotebookState, create_app
from pydantic import BaseModel

from tests import test_http
from tests.test_http import RecordsState, Server, records_app

_server = test_http._server
server = test_http.server


class RecordsOptions(BaseModel):
    model_config = {"extra": "forbid"}

    base_url: str
    storage_url: str = "http://storage.invalid"
    plan: Literal["basic", "pro"] = "basic"


class RecordsPlugin:
    """A small plugin whose connection depends on its options (origins, plan)."""

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(
            name="records", version="1.0", hook_api_version="2.0", capabilities=frozenset(),
            settings_model=RecordsOptions,
            rate_limits=(RateBucket(name="declared", requests=1000, per_seconds=1),))

    @hookimpl
    def connection(self, options: RecordsOptions) -> Connection:
        per_two_seconds = {"basic": 20, "pro": 100}[options.plan]
        return Connection(
            base_url=options.base_url, auth="bearer", headers={"X-Api-Version": "7"},
            origins={"storage": options.storage_url},
            rate_limits=(RateBucket(name="burst", requests=per_two_seconds, per_seconds=2),))


def registry() -> Registry:
    reg = Registry()
    loaded = reg.add(RecordsPlugin())
    assert not isinstance(loaded, Exception), loaded
    return reg


def tenant(base_url: str, **options: str) -> TenantSettings:
    return TenantSettings(apps={"records": AppSettings(
        options={"base_url": base_url, **options})})


def by_tenant(settings: AppSettings) -> Credentials:
    return Credentials(token=f"token-of-{settings.options.get('plan', 'basic')}-0000")


@pytest.fixture
def other() -> Iterator[Server]:
    """A second app on another origin (another port of the loopback)."""
    state = RecordsState()
    faults = FaultInjector(records_app(state))
    with serve_in_thread(faults) as url:
        yield Server(url, faults, state)


# --- pools -----------------------------------------------------------------------------


async def test_a_thousand_tenants_of_one_app_share_one_pool(server: Server) -> None:
    factory = Connections(registry(), credentials=lambda s: Credentials(
        token=f"token-{s.options['storage_url'][-4:]}"))
    tenants = {f"firm{n:04d}": tenant(server.url, storage_url=f"http://s.invalid/{n:04d}")
               for n in range(1000)}
    try:
        clients = [factory.client(tid, t, "records")[1] for tid, t in tenants.items()]
        assert len({id(c) for c in clients}) == 1000
        answers = await asyncio.gather(*(c.get("/echo") for c in clients[::50]))
        # Each tenant's own credential, added per request on the one shared pool.
        tokens = {a.json()["headers"]["authorization"] for a in answers}
        assert len(tokens) == len(answers)
        await asyncio.gather(*(c.get("/echo") for c in clients))
        assert factory.pool_count() == 1
        assert factory.pools.origins() == [f"http://127.0.0.1:{server.url.rsplit(':', 1)[1]}"]
        assert factory.pools.tls_contexts_made == 0  # loopback http: no CA bundle loaded
        assert server.faults.count(path="/echo") == 1000 + len(answers)
    finally:
        await factory.aclose()


async def test_a_reloaded_setting_makes_a_new_client_on_the_same_pool(server: Server) -> None:
    factory = Connections(registry(), credentials=by_tenant)
    try:
        _, first = factory.client("acme", tenant(server.url), "records")
        await first.get("/echo")
        _, same = factory.client("acme", tenant(server.url), "records")  # new settings objects
        await same.get("/echo")
        assert same is not first
        assert factory.pool_count() == 1
    finally:
        await factory.aclose()


# --- credentials go to the app's own origins only --------------------------------------


async def test_a_paging_link_to_another_host_gets_no_credentials(server: Server,
                                                                 other: Server) -> None:
    factory = Connections(registry(), credentials=by_tenant)
    ctx = factory.context("acme", tenant(server.url, storage_url=other.url), "records",
                          store=None, lock=None)
    try:
        own = (await ctx.http.get("/echo")).json()["headers"]
        # An absolute "next page" link from an answer, pointing elsewhere.
        foreign = (await ctx.http.get(f"{other.url}/echo?page_token=2")).json()["headers"]
    finally:
        await factory.aclose()
    assert own["authorization"] == "Bearer token-of-basic-0000"
    assert own["x-api-version"] == "7"
    assert "authorization" not in foreign
    assert "x-api-version" not in foreign
    assert foreign["user-agent"].startswith("callbridge/")
    # The other host's request counted in none of the app's buckets.
    (bucket,) = ctx.http.limiter_snapshot().values()  # type: ignore[attr-defined]
    assert bucket["started_in_window"] == 1


async def test_credentials_may_be_declared_for_another_origin(server: Server,
                                                              other: Server) -> None:
    class TwoApiOrigins(RecordsPlugin):
        @hookimpl
        def connection(self, options: RecordsOptions) -> Connection:
            return Connection(base_url=options.base_url, auth="bearer",
                              origins={"files": other.url},
                              credentials_to=frozenset({"api", "files"}))

    reg = Registry()
    reg.add(TwoApiOrigins())
    factory = Connections(reg, credentials=by_tenant)
    try:
        _, http = factory.client("acme", tenant(server.url), "records")
        headers = (await http.get(f"{other.url}/echo")).json()["headers"]
    finally:
        await factory.aclose()
    assert headers["authorization"] == "Bearer token-of-basic-0000"


def test_ctx_http_is_an_app_client(server: Server) -> None:
    factory = Connections(registry(), credentials=by_tenant)
    ctx = factory.context("acme", tenant(server.url), "records", store=None, lock=None)
    assert isinstance(ctx.http, AppClient)
    assert ctx.bare_http.auth is not ctx.http.auth
    asyncio.run(factory.aclose())


# --- options choose the connection and its buckets --------------------------------------


@pytest.mark.parametrize(("plan", "limit"), [("basic", 20), ("pro", 100)])
def test_the_buckets_come_from_the_connection_the_options_chose(plan: str, limit: int) -> None:
    factory = Connections(registry(), credentials=by_tenant)
    resolved = factory.resolve("acme", tenant("http://x.invalid", plan=plan), "records")
    (bucket,) = resolved.buckets
    assert (bucket.name, bucket.requests) == ("burst", limit)


async def test_a_plan_limit_is_what_the_client_waits_for(server: Server) -> None:
    factory = Connections(registry(), credentials=by_tenant, clock=FakeClock(autojump=True))
    try:
        _, http = factory.client("acme", tenant(server.url, plan="basic"), "records")
        http.max_wait = 1.0
        await asyncio.gather(*(http.get("/echo") for _ in range(20)))
        with pytest.raises(RateLimited) as caught:
            await http.get("/echo")
    finally:
        await factory.aclose()
    assert caught.value.retry_after is not None and 1.0 < caught.value.retry_after <= 2.1
    assert server.faults.count(path="/echo") == 20


def test_bad_options_name_the_field_never_the_value() -> None:
    factory = Connections(registry(), credentials=by_tenant)
    with pytest.raises(ConfigError) as caught:
        factory.resolve("acme", tenant("http://x.invalid", plan="platinum-secret"), "records")
    assert "tenants.acme.apps.records.options.plan" in str(caught.value)
    assert "platinum-secret" not in str(caught.value)


# --- make_context: a hook test by hand ---------------------------------------------------


async def test_make_context_runs_a_hook_against_the_sandbox() -> None:
    state = NotebookState()
    state.add_contact("Dana Scully", ["+12125550142"])
    ctx = make_context(callbridge_notebook, sandbox=create_app(state),
                       settings={"base_url": "http://notebook.test"})
    found = await callbridge_notebook.find_contact(ctx, ExternalParty(number="+12125550142"))
    assert [c.name for c in found] == ["Dana Scully"]
    assert ctx.delivery is not None and ctx.delivery.attempt == 1


async def test_make_context_gives_a_retry_its_attempt_and_records() -> None:
    state = NotebookState()
    clock = FakeClock(start=datetime(2026, 1, 5, 15, 0, tzinfo=UTC))
    ctx = make_context(callbridge_notebook, sandbox=create_app(state), clock=clock,
                       settings={"base_url": "http://notebook.test"}, attempt=2,
                       records=[Record(kind="log", id="l1")])
    assert ctx.delivery is not None
    assert ctx.delivery.attempt == 2
    assert ctx.delivery.records == (Record(kind="log", id="l1"),)
    assert ctx.delivery.first_attempt_at == clock.now()


async def test_make_context_injects_faults_in_the_apps_answers() -> None:
    injector = FaultInjector(create_app(NotebookState()))
    injector.fail_next = [503, 503, 503]
    ctx = make_context(callbridge_notebook, faults=injector,
                       settings={"base_url": "http://notebook.test"})
    with pytest.raises(Exception) as caught:
        await callbridge_notebook.find_contact(ctx, ExternalParty(number="+12125550142"))
    assert type(caught.value).__name__ == "TransientError"
    assert injector.count(status=503) == 3


def test_https_origins_share_one_tls_context() -> None:
    from callbridge.pools import OriginPools

    pools = OriginPools(trust_env=False)
    for url in ("https://app.clio.com/api/v4/contacts", "https://app.clio.com/oauth/token",
                "https://eu.app.clio.com/api/v4", "https://storage.example.com/put"):
        pools.transport_for(httpx2.URL(url))
    assert len(pools) == 3
    assert pools.tls_contexts_made == 1
    asyncio.run(pools.aclose())


async def test_each_tenant_fetches_documents_from_its_own_hosts_on_one_guarded_pool() -> None:
    factory = Connections(registry(), credentials=by_tenant)
    a = TenantSettings(document_hosts=frozenset({"files.example.com"}))
    b = TenantSettings(document_hosts=frozenset({"*.phones.example.net"}))
    try:
        docs_a, docs_b = factory.documents("a", a), factory.documents("b", b)
        assert docs_a.policy.host_allowed("files.example.com")
        assert not docs_b.policy.host_allowed("files.example.com")
        assert docs_b.policy.host_allowed("eu.phones.example.net")
        assert docs_a._transport is docs_b._transport
        assert factory.documents("a", a) is docs_a
        a_with_app = a.model_copy(update={"apps": tenant("http://x.invalid").apps})
        ctx = factory.context("a", a_with_app, "records", store=None, lock=None)
        assert isinstance(ctx.documents, Documents)
        assert ctx.documents.policy.host_allowed("files.example.com")
    finally:
        await factory.aclose()


# --- many tenants: idle and removed tenants let go ---------------------------------------


async def test_idle_tenants_clients_are_let_go_and_closed_after_a_grace_and_built_again(
        server: Server) -> None:
    clock = FakeClock()
    factory = Connections(registry(), credentials=by_tenant, clock=clock)
    tenants = {f"firm{n}": tenant(server.url) for n in range(3)}
    try:
        first = {tid: factory.client(tid, t, "records")[1] for tid, t in tenants.items()}
        clock.advance(500)
        await factory.client("firm0", tenants["firm0"], "records")[1].get("/echo")  # in use
        clock.advance(200)
        evicted = await factory.evict_idle(600, grace=120)
        assert sorted(evicted) == [("firm1", "records"), ("firm2", "records")]
        assert factory.kept_count() == 1
        assert not first["firm1"].is_closed  # a request may still be under way on it
        clock.advance(121)
        assert await factory.evict_idle(600, grace=120) == []
        assert first["firm1"].is_closed and not first["firm0"].is_closed
        again = factory.client("firm1", tenants["firm1"], "records")[1]
        assert again is not first["firm1"] and (await again.get("/echo")).status_code == 200
        assert factory.pool_count() == 1  # the shared pool outlived every eviction
    finally:
        await factory.aclose()


async def test_a_changed_or_removed_tenant_is_forgotten_at_once(server: Server) -> None:
    factory = Connections(registry(), credentials=by_tenant)
    try:
        kept = factory.client("acme", tenant(server.url), "records")[1]
        factory.client("other", tenant(server.url), "records")
        assert factory.forget({"acme"}) == [("acme", "records")]
        assert factory.kept_count() == 1
        assert factory.client("acme", tenant(server.url), "records")[1] is not kept
    finally:
        await factory.aclose()
