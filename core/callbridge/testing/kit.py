"""The contract kit's host: the plugin under test, its contexts, its cassettes.

:class:`Kit` holds what one generated suite shares. :meth:`Kit.session` opens a
case's cassette and gives hook contexts made by
:func:`callbridge.testing.make_context` over the case's own factory of the host's
(:class:`~callbridge.connections.Connections`), with the kit's own
services: a delivery that follows the host's write protocol
(:class:`KitDelivery`), in-memory store, cache and locks, and a
:class:`~callbridge.testing.clock.FakeClock`. The client's inline retries are
off and its token never refreshes, so a missing recording surfaces as itself
and a recorded 429 neither sleeps nor asks for a second answer.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from pydantic import BaseModel, ValidationError

from callbridge import HOOK_API_VERSION
from callbridge.capabilities import REQUIRED_HOOKS, Capability, Connection, Declaration
from callbridge.connections import Connections
from callbridge.context import HookContext, MemoryStore
from callbridge.facade import Facade, Hooks
from callbridge.faults import Fault, FaultInjector
from callbridge.hookspecs import ROUTED_HOOKS, SPECS
from callbridge.http import AppClient, Credentials, RetryPolicy
from callbridge.plugins import LoadedPlugin, LoadError, Registry, validate_plugin
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing.clock import FakeClock
from callbridge.testing.context import make_context
from callbridge.testing.scenarios import KIT_START, TENANT, Scenarios
from callbridge.testing.services import (
    KitDelivery,
    KitDocuments,
    MemoryCache,
    Traffic,
    memory_locks,
)

#: The credential every kit client sends: fixed, fictional, and scrubbed anyway.
KIT_TOKEN = "kit-placeholder-token"
#: ``app`` records against the real app (the settings' base URL) instead of the sandbox.
ENV_RECORD_AGAINST = "CALLBRIDGE_RECORD_AGAINST"
#: The API key or access token used when recording against the real app.
ENV_RECORD_CREDENTIAL = "CALLBRIDGE_RECORD_CREDENTIAL"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The log hook and the capability of each event kind.
LOG_HOOK = {"call": "log_call", "sms": "log_sms", "fax": "log_fax"}
LOG_CAP = {"call": Capability.CALLS, "sms": Capability.SMS, "fax": Capability.FAX}
#: The standard cases' names (each its cassette's name), for ``skip`` keys.
STANDARD_CASES = (
    "find_contact-found", "find_contact-not-found", "find_contact-by-email",
    "find_matters-none", "find_matters-one", "find_matters-several",
    "find_user-by-email", "find_user-unknown", "pick_default_user", "ensure_activity_code",
    "contacts_changed_since", "create_contact-retry", "log_call-retry", "log_sms-retry",
    "log_fax-retry", "update_log-retry", "log_batch", "log_batch-retry", "confirm_accepted-after-log",
    "closed_matters_since", "send_closed_matter",
    "subscribe_app_events", "renew_app_events", "verify_app_event", "parse_app_event",
    "error-401", "error-429", "error-5xx")

_F = TypeVar("_F", bound=Callable[..., Any])


def covers(*hooks: str) -> Callable[[_F], _F]:
    """Mark a standard case as exercising ``hooks`` (read by the hook coverage test)."""
    unknown = set(hooks) - set(SPECS)
    if unknown:
        raise ValueError(f"no such routed hook: {', '.join(sorted(unknown))}")

    def mark(fn: _F) -> _F:
        fn.__callbridge_covers__ = hooks  # type: ignore[attr-defined]
        return fn

    return mark


@dataclass
class KitSession:
    """One case's cassette open: the facade, the clock and fresh contexts."""

    kit: Kit
    hooks: Hooks
    clock: FakeClock
    traffic: Traffic
    connections: Connections
    tenant: TenantSettings
    options: BaseModel | None
    replay: Any = None
    store: MemoryStore = field(default_factory=MemoryStore)
    cache: MemoryCache | None = None
    locks: Callable[[str], AbstractAsyncContextManager[None]] = field(default_factory=memory_locks)

    def raise_misses(self) -> None:
        """Raise the first request that had no recording, if any."""
        if self.replay.misses:
            raise self.replay.misses[0]

    def delivery(self, marker: str = "") -> KitDelivery:
        """A first attempt starting now on the kit's clock."""
        return KitDelivery(marker=marker, first_attempt_at=self.clock.now())

    @property
    def client(self) -> AppClient:
        """The case's ``ctx.http`` (one per session, kept by the factory)."""
        return self.connections.client(TENANT, self.tenant, self.hooks.declaration.name)[1]

    @property
    def bare(self) -> AppClient:
        return self.connections.bare(self.hooks.declaration.name)

    def context(self, delivery: KitDelivery | None = None) -> HookContext:
        """A context by ``make_context`` over the case's factory, with the session's store,
        cache and locks (``delivery`` None: a hook outside a delivery)."""
        if self.cache is None:
            self.cache = MemoryCache(self.clock)
        return make_context(self.kit.plugin, connections=self.connections, tenant=self.tenant,
                            tenant_id=TENANT, delivery=delivery, store=self.store,
                            lock=self.locks, cache=self.cache, documents=KitDocuments())


class _KitConnections(Connections):
    """The host's factory, its OAuth refresh off: the token goes out as a plain bearer
    token, so a 401 is answered by the cassette, never by a refresh request."""

    def connection(self, plugin: LoadedPlugin, options: BaseModel | None) -> Connection:
        connection = super().connection(plugin, options)
        if connection.auth == "oauth2":
            return connection.model_copy(update={"auth": "bearer", "oauth2": None})
        return connection


def _distribution(plugin: object) -> tuple[str, str, str]:
    """(entry point, distribution, version) of an installed plugin module or object."""
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    top = module.split(".")[0]
    for ep in importlib.metadata.entry_points(group="callbridge.plugins"):
        if ep.value == module and ep.dist is not None:
            return ep.name, ep.dist.name, ep.dist.version
    dists = importlib.metadata.packages_distributions().get(top) or []
    if not dists:
        return module, f"(module {module}, not installed)", "-"
    try:
        return module, dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a broken install
        return module, dists[0], "-"


def _implemented(plugin: object) -> set[str]:
    return {name for name in ROUTED_HOOKS
            if getattr(getattr(plugin, name, None), "callbridge_impl", None) is not None}


def capability_of(hook: str) -> Capability | None:
    """The capability whose declaration makes ``hook``'s tests mandatory (the spec's first)."""
    spec = SPECS.get(hook)
    if spec is None or not spec.capabilities:
        return None
    return min(spec.capabilities, key=list(Capability).index)


def _fix_for(plugin: object, declaration: Declaration | None, error: LoadError) -> str:
    """The change that makes the declaration and the hooks agree."""
    if declaration is None:
        return "make declare() return a valid callbridge.capabilities.Declaration"
    if "hook API" in error.reason:
        return (f"build against this host's hook API: declare hook_api_version with major "
                f"{HOOK_API_VERSION.split('.')[0]} and a minor not above {HOOK_API_VERSION}")
    if "not a callbridge hook" in error.reason:
        return "rename the function to the hook it implements, or remove its @hookimpl marker"
    hooks = _implemented(plugin)
    fixes = []
    for declared in sorted(declaration.capabilities, key=str):
        missing = sorted(REQUIRED_HOOKS[declared] - hooks)
        if missing:
            fixes.append(f"implement {', '.join(missing)} (marked @hookimpl), or remove "
                         f"Capability.{declared.name} from declare()'s capabilities")
    for hook in sorted(hooks - declaration.required_hooks()):
        cap = capability_of(hook)
        fixes.append(f"declare Capability.{cap.name} for {hook}, or remove {hook}"
                     if cap else f"remove {hook}")
    return "; ".join(fixes) or "see the hook reference"


def problems_of(exc: ValidationError) -> str:
    """A validation error's fields and problems, never its values."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                     for e in exc.errors(include_input=False))


class Kit:
    """Everything one generated suite shares: the plugin, its settings, its cassettes."""

    def __init__(self, *, plugin: object, settings: Mapping[str, Any], cassettes: Path,
                 scenarios: Scenarios, skip: Mapping[str, str],
                 sandbox: Callable[..., Any] | None, tenant: TenantSettings) -> None:
        self.plugin = plugin
        self.settings = dict(settings)
        self.cassettes = Path(cassettes)
        self.scenarios = scenarios
        self.skip = dict(skip)
        self.sandbox = sandbox
        self.tenant = tenant
        self.entry_point, self.distribution, self.dist_version = _distribution(plugin)
        self._declaration: Declaration | None = None
        self._declaration_error: str | None = None
        self._loaded: LoadedPlugin | LoadError | None = None

    def declaration(self) -> Declaration | None:
        """The declaration, read even when the plugin does not validate."""
        if self._declaration is None and self._declaration_error is None:
            declare = getattr(self.plugin, "declare", None)
            try:
                raw = declare() if callable(declare) else None
                self._declaration = (Declaration.model_validate(raw)
                                     if isinstance(raw, Mapping) else raw)
                if not isinstance(self._declaration, Declaration):
                    self._declaration = None
                    self._declaration_error = "declare() returned no Declaration"
            except Exception as exc:
                self._declaration_error = f"declare() raised {type(exc).__name__}"
        return self._declaration

    def loaded(self) -> LoadedPlugin | LoadError:
        if self._loaded is None:
            self._loaded = validate_plugin(self.plugin, entry_point=self.entry_point,
                                           distribution=self.distribution,
                                           dist_version=self.dist_version)
        return self._loaded

    def load_failure(self) -> str | None:
        """The message naming the distribution, its version, what is wrong and the fix."""
        result = self.loaded()
        if isinstance(result, LoadedPlugin):
            return None
        fix = _fix_for(self.plugin, self.declaration(), result)
        return f"{result}\nfix: {fix}"

    def options(self) -> BaseModel | None:
        declaration = self.declaration()
        model = declaration.settings_model if declaration else None
        return model.model_validate(self.settings) if model is not None else None

    def cassette_path(self, case: str) -> Path:
        return self.cassettes / f"{case}.yaml"

    def api_major(self) -> int:
        declaration = self.declaration()
        return int(declaration.hook_api_version.split(".")[0]) if declaration else 0

    def require(self, case: str, hook: str | None, capability: Capability | None, *,
                since: str = "1.0") -> None:
        """Skip an undeclared capability's test; honour a reasoned skip of a declared one."""
        declaration = self.declaration()
        name = declaration.name if declaration else self.distribution
        if capability is not None and declaration is not None \
                and capability not in declaration.capabilities:
            pytest.skip(f"{name} does not declare capability '{capability.value}'")
        if declaration is not None and self.api_major() < int(since.split(".")[0]):
            pytest.skip(f"{case} is a hook API {since} case; {name} declares "
                        f"{declaration.hook_api_version}")
        for key in (case, hook, capability.value if capability else None):
            if key is not None and key in self.skip:
                reason = (self.skip[key] or "").strip()
                if not reason:
                    pytest.fail(f"skip[{key!r}] has no reason: {name} declares "
                                f"'{capability.value if capability else case}', so its tests "
                                f"are mandatory; give a written reason for skipping {case}, "
                                f"or remove the entry", pytrace=False)
                pytest.skip(f"{case}: {reason}")

    def _sandbox_app(self, clock: FakeClock) -> Any:
        if self.sandbox is None:
            pytest.fail("recording needs a sandbox: pass sandbox=<a function returning the "
                        "seeded ASGI app> to contract_suite", pytrace=False)
        takes_clock = "clock" in inspect.signature(self.sandbox).parameters
        return self.sandbox(clock=clock) if takes_clock else self.sandbox()

    @asynccontextmanager
    async def session(self, case: str, *, fault: Fault | None = None,
                      ) -> AsyncIterator[KitSession]:
        """Open ``case``'s cassette; a cassette miss is raised as itself when the block ends."""
        from callbridge.testing.cassettes import CassetteTransport, open_cassette, record_mode
        from callbridge.testing.scrub import Scrubber

        failure = self.load_failure()
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        loaded = self.loaded()
        assert isinstance(loaded, LoadedPlugin)
        registry = Registry()
        registry.add(self.plugin, entry_point=self.entry_point, distribution=self.distribution,
                     dist_version=self.dist_version)
        declaration = loaded.declaration
        try:
            options = self.options()
        except ValidationError as exc:  # the values stay out of the message
            pytest.fail(f"the example settings do not validate: {problems_of(exc)}", pytrace=False)
        connection = registry.connection(declaration.name, options)
        if connection is None:
            pytest.fail(f"{self.distribution} implements no connection() hook; the kit needs "
                        "its base URL", pytrace=False)
        clock = FakeClock(KIT_START, autojump=True)  # a rate-limit wait passes at once
        mode = record_mode()
        recording = mode != "none"
        live = recording and os.environ.get(ENV_RECORD_AGAINST, "sandbox") == "app"
        inner: httpx2.AsyncBaseTransport | None = None
        credentials = Credentials(api_key=KIT_TOKEN, token=KIT_TOKEN)
        against = f"the {declaration.title or declaration.name} sandbox"
        if live:
            # A maintainer's vendor account: the real network, the settings' base URL, and a
            # credential from the environment (scrubbed on record like any other).
            if fault is not None:
                pytest.skip("error answers are recorded against the sandbox, not the app")
            secret = os.environ.get(ENV_RECORD_CREDENTIAL)
            if not secret:
                pytest.fail(f"recording against the app needs {ENV_RECORD_CREDENTIAL} (its API "
                            "key or access token)", pytrace=False)
            credentials = Credentials(api_key=secret, token=secret)
            inner = httpx2.AsyncHTTPTransport()
            against = f"the {declaration.title or declaration.name} app at " \
                      f"{httpx2.URL(connection.base_url).host}"
        elif recording:
            app = self._sandbox_app(clock)
            injector = FaultInjector(app)  # takes the sandbox's fault_bodies, if it has them
            if fault is not None:
                injector.fail_next = [fault]
            inner = httpx2.ASGITransport(app=injector)
        scrubber = Scrubber(region=self.scenarios.region,
                            secret_headers=[connection.api_key_header])
        tenant = self.tenant.model_copy(update={"apps": {declaration.name: AppSettings(
            plugin=declaration.name, options=self.settings)}})
        with open_cassette(self.cassette_path(case), scrubber=scrubber, mode=mode) as cassette:
            replay = CassetteTransport(cassette, inner)
            traffic = Traffic(replay)
            connections = _KitConnections(
                registry, limiters=LimiterRegistry(clock), clock=clock,
                retry=RetryPolicy(enabled=False), transports={declaration.name: traffic},
                credentials=lambda _settings: credentials)
            if recording and not cassette.write_protected:
                if mode == "all":  # vcrpy only gets-or-sets: a re-recording gets today's note
                    cassette._metadata.pop("recorded", None)
                cassette.get_metadata(
                    "recorded", f"recorded against {against} on {datetime.now(UTC).date()}")
            session = KitSession(kit=self, hooks=Facade(registry).for_plugin(declaration.name),
                                 clock=clock, traffic=traffic, connections=connections,
                                 tenant=tenant, options=options, replay=replay)
            try:
                yield session
            except BaseException as exc:
                if replay.misses:  # whatever the plugin made of it, the miss is the news
                    raise replay.misses[0] from exc
                raise
            finally:
                await connections.aclose()
            if replay.misses:
                raise replay.misses[0]

    async def call(self, case: str, body: Callable[[Hooks, HookContext], Awaitable[Any]], *,
                   fault: Fault | None = None, marker: str = "") -> Any:
        """Run ``body`` once, as a first attempt whose marker is ``marker``.

        The host's delivery always has its event's marker; a case that does not
        name one gets ``""``, so a plugin falls back to ``event.marker``.
        """
        async with self.session(case, fault=fault) as session:
            return await body(session.hooks, session.context(session.delivery(marker)))

    def run(self, case: str, body: Callable[[Hooks, HookContext], Awaitable[Any]], *,
            fault: Fault | None = None, marker: str = "") -> Any:
        return asyncio.run(self.call(case, body, fault=fault, marker=marker))
