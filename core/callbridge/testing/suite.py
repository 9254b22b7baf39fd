"""The standard contract suite, built for one plugin by :func:`contract_suite`.

One line in a plugin's tests gives the whole suite::

    TestNotebook = contract_suite(plugin=callbridge_notebook, settings={...},
                                  cassettes=Path(__file__).parent / "cassettes",
                                  scenarios=Scenarios(...), sandbox=seeded_sandbox)

Tests follow the declaration: a declared capability's tests must pass, an
undeclared one's are skipped (naming the capability), and skipping a declared
one needs a written reason in ``skip``. Each hook is called directly through
the host's facade (not through the pipeline, which would turn a cassette miss
into a failed outcome), with a client whose inline retries are off and whose
token never refreshes, so a missing recording surfaces as itself and a
recorded 429 neither sleeps nor asks for a second answer.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx2
import pytest
from pydantic import BaseModel, ValidationError

from callbridge import HOOK_API_VERSION
from callbridge.capabilities import REQUIRED_HOOKS, Capability, Declaration
from callbridge.context import HookContext, MemoryStore
from callbridge.errors import AuthenticationFailed, RateLimited, TransientError
from callbridge.events import AnyEvent, CallEvent, ExternalParty, parse_event
from callbridge.facade import Facade, Hooks
from callbridge.faults import Fault, FaultInjector
from callbridge.hookspecs import ROUTED_HOOKS, SPECS
from callbridge.http import Credentials, RetryPolicy, build_bare_client, build_client
from callbridge.models import Contact, LogResult, LogTarget, Record
from callbridge.phones import try_e164
from callbridge.plugins import LoadedPlugin, LoadError, Registry, validate_plugin
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing.checker import FIX, cassette_files, check_cassettes

__all__ = ["ContractSuite", "Row", "Scenarios", "contract_suite"]

#: The credential every kit client sends: fixed, fictional, and scrubbed anyway.
KIT_TOKEN = "kit-placeholder-token"
TENANT = "kit"
#: ``app`` records against the real app (the settings' base URL) instead of the sandbox.
ENV_RECORD_AGAINST = "CALLBRIDGE_RECORD_AGAINST"
#: The API key or access token used when recording against the real app.
ENV_RECORD_CREDENTIAL = "CALLBRIDGE_RECORD_CREDENTIAL"
_FIXED_START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Scenarios:
    """The inputs of the standard cases, all fictional.

    ``known_number`` is a contact's number in the app (E.164), ``unknown_number``
    one that no contact has; ``known_email`` a contact's address (needed when the
    plugin declares ``contact_search_email``). ``contact_*`` are contact ids with
    one, no and several open matters. ``call``, ``sms`` and ``fax`` replace the
    kit's sample events (dicts as :func:`callbridge.events.parse_event` reads
    them); ``log_target`` is where the sample events are logged.
    """

    known_number: str
    unknown_number: str
    known_email: str | None = None
    new_contact_name: str = "New callbridge Contact"
    contact_one_matter: str | None = None
    contact_no_matters: str | None = None
    contact_several_matters: str | None = None
    call: Mapping[str, Any] | None = None
    sms: Mapping[str, Any] | None = None
    fax: Mapping[str, Any] | None = None
    log_target: LogTarget = field(default_factory=LogTarget)
    region: str = "US"

    def party(self, number: str, email: str | None = None) -> ExternalParty:
        data: dict[str, Any] = {"number": number}
        if email:
            data["email"] = email
        return ExternalParty.model_validate(data, context={"region": self.region})

    def event(self, kind: str) -> AnyEvent:
        given = {"call": self.call, "sms": self.sms, "fax": self.fax}[kind]
        base: dict[str, Any] = {
            "kind": kind, "id": f"kit-{kind}-1", "tenant": TENANT, "direction": "inbound",
            "external": {"number": self.known_number},
            "internal": {"email": "staff@firm.example", "extension": "101"},
        }
        if kind == "call":
            base |= {"started_at": _FIXED_START.isoformat(),
                     "answered_at": (_FIXED_START + timedelta(seconds=8)).isoformat(),
                     "ended_at": (_FIXED_START + timedelta(minutes=4)).isoformat(),
                     "outcome": "completed", "notes": "Kit sample call: asked about the lease."}
        elif kind == "sms":
            base |= {"sent_at": _FIXED_START.isoformat(), "body": "Kit sample message."}
        else:
            # A small document, so apps that hold files show their upload in the cassette.
            base |= {"sent_at": _FIXED_START.isoformat(), "page_count": 2,
                     "document": {"content": "JVBERi0xLjQKJSBraXQgc2FtcGxlIGZheAo=",
                                  "content_type": "application/pdf"}}
        return parse_event(dict(given) if given is not None else base, region=self.region)

    def late_call(self) -> CallEvent:
        """The sample call's revision with late details (recording, transcript)."""
        event = self.event("call")
        assert isinstance(event, CallEvent)
        return event.model_copy(update={
            "recording_url": "https://recordings.example.com/kit-call-1.mp3",
            "transcript": "Kit sample transcript.", "summary": "Asked about the lease."})


@dataclass(frozen=True)
class Row:
    """An author's own case: a hook, its arguments, and the expected outcome.

    ``args`` are the hook's keyword arguments besides ``ctx``; a ``party`` given
    as a string is read as a number, an ``event`` given as a dict is parsed.
    ``expect`` is an exception class the call must raise, a predicate the result
    must satisfy, or a value the result must equal. ``fault`` is the answer the
    sandbox gives when the row is recorded (e.g. ``404`` or ``(429, 30.0)``).
    """

    id: str
    hook: str
    args: Mapping[str, Any]
    expect: Any
    fault: Fault | None = None
    capability: Capability | None = None  # defaults to the one that needs ``hook``


# --- the kit's host services ------------------------------------------------------


class _Delivery:
    """A first attempt with nothing written yet; remembers what the hook wrote."""

    def __init__(self) -> None:
        self.remembered: list[Record] = []

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.remembered)

    @property
    def first_attempt_at(self) -> datetime:
        return _FIXED_START

    @property
    def attempt(self) -> int:
        return 1

    async def remember(self, record: Record) -> None:
        self.remembered.append(record)


def _locks() -> Callable[[str], AbstractAsyncContextManager[None]]:
    held: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        async with held.setdefault(name, asyncio.Lock()):
            yield

    return lock


# --- the plugin under test ----------------------------------------------------------


def _distribution(plugin: object) -> tuple[str, str, str]:
    """(entry point, distribution, version) of an installed plugin module or object."""
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    top = module.split(".")[0]
    for ep in importlib.metadata.entry_points(group="callbridge.plugins"):
        if ep.value == module and ep.dist is not None:
            return ep.name, ep.dist.name, ep.dist.version
    entry = module
    dists = importlib.metadata.packages_distributions().get(top) or []
    if not dists:
        return entry, f"(module {module}, not installed)", "-"
    name = dists[0]
    try:
        return entry, name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a broken install
        return entry, name, "-"


def _implemented(plugin: object) -> set[str]:
    return {name for name in ROUTED_HOOKS
            if getattr(getattr(plugin, name, None), "callbridge_impl", None) is not None}


def _capability_of(hook: str) -> Capability | None:
    """The capability whose declaration makes ``hook``'s tests mandatory (the spec's first)."""
    spec = SPECS.get(hook)
    if spec is None or not spec.capabilities:
        return None
    return min(spec.capabilities, key=list(Capability).index)


_T = TypeVar("_T", bound=Callable[..., Any])


def covers(*hooks: str) -> Callable[[_T], _T]:
    """Mark a standard test as a case of ``hooks`` (read by :func:`kit_cases`)."""
    unknown = set(hooks) - set(SPECS)
    if unknown:
        raise ValueError(f"no such routed hook: {', '.join(sorted(unknown))}")

    def mark(fn: _T) -> _T:
        fn.__callbridge_covers__ = hooks  # type: ignore[attr-defined]
        return fn

    return mark


def kit_cases(suite: type | None = None) -> dict[str, list[str]]:
    """Hook → the standard tests that call it."""
    out: dict[str, list[str]] = {}
    for name in sorted(dir(suite or ContractSuite)):
        for hook in getattr(getattr(suite or ContractSuite, name), "__callbridge_covers__", ()):
            out.setdefault(hook, []).append(name)
    return out


def _fix_for(plugin: object, declaration: Declaration | None, error: LoadError) -> str:
    """The change that makes the declaration and the hooks agree."""
    if declaration is None:
        return "make declare() return a valid callbridge.capabilities.Declaration"
    if "hook API" in error.reason:
        return (f"build against this host's hook API: declare hook_api_version with major "
                f"{HOOK_API_VERSION.split('.')[0]} and a minor not above {HOOK_API_VERSION}")
    hooks = _implemented(plugin)
    fixes = []
    for declared in sorted(declaration.capabilities, key=str):
        missing = sorted(REQUIRED_HOOKS[declared] - hooks)
        if missing:
            fixes.append(f"implement {', '.join(missing)} (marked @hookimpl), or remove "
                         f"Capability.{declared.name} from declare()'s capabilities")
    needed = declaration.required_hooks()
    for hook in sorted(hooks - needed):
        cap = _capability_of(hook)
        fixes.append(f"declare Capability.{cap.name} for {hook}, or remove {hook}"
                     if cap else f"remove {hook}")
    return "; ".join(fixes) or "see docs/writing-a-plugin.md"


class _Kit:
    """Everything one generated suite shares: the plugin, its settings, its cassettes."""

    def __init__(self, *, plugin: object, settings: Mapping[str, Any], cassettes: Path,
                 scenarios: Scenarios, skip: Mapping[str, str],
                 sandbox: Callable[[], Any] | None) -> None:
        self.plugin = plugin
        self.settings = dict(settings)
        self.cassettes = Path(cassettes)
        self.scenarios = scenarios
        self.skip = dict(skip)
        self.sandbox = sandbox
        self.entry_point, self.distribution, self.dist_version = _distribution(plugin)
        self._declaration: Declaration | None = None
        self._declaration_error: str | None = None
        self._loaded: LoadedPlugin | LoadError | None = None

    # the declaration, read even when the plugin does not validate
    def declaration(self) -> Declaration | None:
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

    def require(self, case: str, hook: str | None, capability: Capability | None) -> None:
        """Skip an undeclared capability's test; honour a reasoned skip of a declared one."""
        declaration = self.declaration()
        name = declaration.name if declaration else self.distribution
        if capability is not None and declaration is not None \
                and capability not in declaration.capabilities:
            pytest.skip(f"{name} does not declare capability '{capability.value}'")
        for key in (case, hook, capability.value if capability else None):
            if key is not None and key in self.skip:
                reason = (self.skip[key] or "").strip()
                if not reason:
                    pytest.fail(f"skip[{key!r}] has no reason: {name} declares "
                                f"'{capability.value if capability else case}', so its tests "
                                f"are mandatory; give a written reason for skipping {case}, "
                                f"or remove the entry", pytrace=False)
                pytest.skip(f"{case}: {reason}")

    async def call(self, case: str, body: Callable[[Hooks, HookContext], Awaitable[Any]], *,
                   fault: Fault | None = None) -> Any:
        """Run ``body`` against the case's cassette; a cassette miss is raised as itself."""
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
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors(include_input=False))
            pytest.fail(f"the example settings do not validate: {problems}", pytrace=False)
        connection = registry.connection(declaration.name, options)
        if connection is None:
            pytest.fail(f"{self.distribution} implements no connection() hook; the kit needs "
                        "its base URL", pytrace=False)
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
            if self.sandbox is None:
                pytest.fail("recording needs a sandbox: pass sandbox=<a function returning the "
                            "seeded ASGI app> to contract_suite", pytrace=False)
            app = FaultInjector(self.sandbox())
            if fault is not None:
                app.fail_next = [fault]
            inner = httpx2.ASGITransport(app=app)
        # OAuth refresh is off: the token goes out as a plain bearer token, so a 401 is
        # answered by the cassette, never by a refresh request that has no recording.
        if connection.auth == "oauth2":
            connection = connection.model_copy(update={"auth": "bearer", "oauth2": None})
        scrubber = Scrubber(region=self.scenarios.region,
                            secret_headers=[connection.api_key_header])
        off = RetryPolicy(enabled=False)
        path = self.cassette_path(case)
        with open_cassette(path, scrubber=scrubber, mode=mode) as cassette:
            transport = CassetteTransport(cassette, inner)
            client = build_client(
                tenant=TENANT, app=declaration.name, plugin=declaration.name,
                plugin_version=declaration.version, connection=connection,
                credentials=credentials, buckets=declaration.rate_limits,
                limiters=LimiterRegistry(), retry=off, transport=transport)
            bare = build_bare_client(transport=transport, retry=off)
            ctx = HookContext(
                tenant_id=TENANT,
                tenant=TenantSettings(default_region=self.scenarios.region),
                app=declaration.name,
                settings=AppSettings(plugin=declaration.name, options=self.settings),
                options=options, http=client, bare_http=bare,
                log=logging.LoggerAdapter(logging.getLogger(f"callbridge.kit.{declaration.name}")),
                store=MemoryStore(), lock=_locks(), delivery=_Delivery())
            hooks = Facade(registry).for_plugin(declaration.name)
            if recording and not cassette.write_protected:
                if mode == "all":  # vcrpy only gets-or-sets: a re-recording gets today's note
                    cassette._metadata.pop("recorded", None)
                cassette.get_metadata(
                    "recorded", f"recorded against {against} on {datetime.now(UTC).date()}")
            try:
                result = await body(hooks, ctx)
            except BaseException as exc:
                if transport.misses:  # whatever the plugin made of it, the miss is the news
                    raise transport.misses[0] from exc
                raise
            finally:
                await bare.aclose()
                await client.aclose()
            if transport.misses:
                raise transport.misses[0]
        return result

    def run(self, case: str, body: Callable[[Hooks, HookContext], Awaitable[Any]], *,
            fault: Fault | None = None) -> Any:
        return asyncio.run(self.call(case, body, fault=fault))


# --- the suite ------------------------------------------------------------------------

_LOG_HOOK = {"call": "log_call", "sms": "log_sms", "fax": "log_fax"}
_LOG_CAP = {"call": Capability.CALLS, "sms": Capability.SMS, "fax": Capability.FAX}


def _contact(contact_id: str | None, what: str) -> Contact:
    if not contact_id:
        pytest.fail(f"Scenarios.{what} is needed: the id of such a contact in the sandbox",
                    pytrace=False)
    return Contact(id=contact_id)


def _reads_as(contact: Contact, e164: str, region: str) -> bool:
    return any(try_e164(phone, region) == e164 for phone in contact.phones)


class ContractSuite:
    """The standard tests. Do not subclass by hand: use :func:`contract_suite`."""

    kit: ClassVar[_Kit]

    # -- the declaration and the settings --------------------------------------------

    def test_declaration_matches_implemented_hooks(self) -> None:
        """The host would load this plugin: declaration and hooks agree, API compatible."""
        failure = self.kit.load_failure()
        if failure is not None:
            pytest.fail(failure, pytrace=False)

    def test_settings_model_validates_example_settings(self) -> None:
        declaration = self.kit.declaration()
        if declaration is None:
            pytest.fail(self.kit.load_failure() or "declare() returned no Declaration",
                        pytrace=False)
        model = declaration.settings_model
        if model is None:
            assert not self.kit.settings, (
                f"{self.kit.distribution} declares no settings_model but the suite was given "
                "example settings; declare a pydantic model or pass settings={}")
            return
        try:
            model.model_validate(self.kit.settings)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors(include_input=False))
            pytest.fail(f"{self.kit.distribution}'s settings model {model.__name__} refuses the "
                        f"example settings: {problems}", pytrace=False)

    def test_skip_entries_name_known_tests(self) -> None:
        known = {name[len("test_"):] for name in dir(type(self)) if name.startswith("test_")}
        known |= set(ROUTED_HOOKS) | {c.value for c in Capability} | set(_CASES)
        unknown = sorted(set(self.kit.skip) - known)
        assert not unknown, (f"skip names {', '.join(map(repr, unknown))}: neither a capability, "
                             "a hook nor a standard case")

    # -- contacts --------------------------------------------------------------------

    @covers("find_contact")
    def test_find_contact_found(self) -> None:
        self.kit.require("find_contact-found", "find_contact", Capability.CONTACT_SEARCH_PHONE)
        sc = self.kit.scenarios
        party = sc.party(sc.known_number)
        found = self.kit.run("find_contact-found",
                             lambda h, ctx: h.find_contact(ctx, party=party))
        assert found, "find_contact returned no contact for Scenarios.known_number"
        assert any(_reads_as(c, sc.known_number, sc.region) for c in found), (
            "no returned contact has a phone that reads as the number searched for")

    def test_find_contact_not_found(self) -> None:
        self.kit.require("find_contact-not-found", "find_contact", Capability.CONTACT_SEARCH_PHONE)
        sc = self.kit.scenarios
        party = sc.party(sc.unknown_number)
        found = self.kit.run("find_contact-not-found",
                             lambda h, ctx: h.find_contact(ctx, party=party))
        assert found == [], "find_contact must return [] when no contact has the number"

    def test_find_contact_by_email(self) -> None:
        self.kit.require("find_contact-by-email", "find_contact", Capability.CONTACT_SEARCH_EMAIL)
        sc = self.kit.scenarios
        if not sc.known_email:
            pytest.fail("Scenarios.known_email is needed: the plugin declares "
                        "contact_search_email", pytrace=False)
        party = sc.party(sc.unknown_number, email=sc.known_email)
        found = self.kit.run("find_contact-by-email",
                             lambda h, ctx: h.find_contact(ctx, party=party))
        assert any(sc.known_email.lower() in (e.lower() for e in c.emails) for c in found), (
            "find_contact found no contact with Scenarios.known_email")

    @covers("create_contact")
    def test_create_contact(self) -> None:
        self.kit.require("create_contact", "create_contact", Capability.CONTACT_CREATION)
        sc = self.kit.scenarios
        party = sc.party(sc.unknown_number)
        created = self.kit.run("create_contact", lambda h, ctx: h.create_contact(
            ctx, party=party, name=sc.new_contact_name))
        assert created.id, "the created contact has no id"
        assert _reads_as(created, sc.unknown_number, sc.region), (
            "the created contact has no phone that reads as the party's number")

    # -- matters ---------------------------------------------------------------------

    def _matters(self, case: str, contact_id: str | None, what: str) -> list[Any]:
        self.kit.require(case, "find_matters", Capability.MATTERS)
        contact = _contact(contact_id, what)
        result: list[Any] = self.kit.run(case, lambda h, ctx: h.find_matters(ctx, contact=contact))
        return result

    def test_find_matters_none(self) -> None:
        matters = self._matters("find_matters-none", self.kit.scenarios.contact_no_matters,
                                "contact_no_matters")
        assert matters == []

    @covers("find_matters")
    def test_find_matters_one(self) -> None:
        matters = self._matters("find_matters-one", self.kit.scenarios.contact_one_matter,
                                "contact_one_matter")
        assert len(matters) == 1 and matters[0].id

    def test_find_matters_several(self) -> None:
        matters = self._matters("find_matters-several",
                                self.kit.scenarios.contact_several_matters,
                                "contact_several_matters")
        assert len(matters) >= 2
        assert len({m.id for m in matters}) == len(matters), "a matter is listed twice"

    # -- logging ---------------------------------------------------------------------

    def _log(self, kind: str) -> None:
        hook = _LOG_HOOK[kind]
        self.kit.require(hook, hook, _LOG_CAP[kind])
        sc = self.kit.scenarios
        event = sc.event(kind)
        remembered: list[Record] = []

        async def body(h: Hooks, ctx: HookContext) -> LogResult:
            result: LogResult = await getattr(h, hook)(ctx, event=event, target=sc.log_target)
            assert isinstance(ctx.delivery, _Delivery)
            remembered.extend(ctx.delivery.remembered)
            return result

        result = self.kit.run(hook, body)
        assert result.records, f"{hook} returned no record"
        assert all(r.kind and r.id for r in result.records)
        missing = [r for r in result.records if r not in remembered]
        assert not missing, (f"{hook} did not call ctx.delivery.remember() for "
                             f"{', '.join(f'{r.kind} {r.id}' for r in missing)}; "
                             "a retry would write them again")

    @covers("log_call")
    def test_log_call(self) -> None:
        self._log("call")

    @covers("log_sms")
    def test_log_sms(self) -> None:
        self._log("sms")

    @covers("log_fax")
    def test_log_fax(self) -> None:
        self._log("fax")

    @covers("update_log")
    def test_update_log_with_late_details(self) -> None:
        self.kit.require("update_log", "update_log", Capability.LATE_DETAILS)
        sc = self.kit.scenarios
        declaration = self.kit.declaration()
        assert declaration is not None
        if Capability.CALLS not in declaration.capabilities:
            pytest.skip("late details are checked on a call; the plugin declares no calls")
        first, late = sc.event("call"), sc.late_call()

        async def body(h: Hooks, ctx: HookContext) -> tuple[LogResult, LogResult]:
            assert isinstance(first, CallEvent)
            logged = await h.log_call(ctx, event=first, target=sc.log_target)
            updated = await h.update_log(ctx, event=late, records=list(logged.records))
            return logged, updated

        logged, updated = self.kit.run("update_log", body)
        assert {(r.kind, r.id) for r in updated.records} <= {(r.kind, r.id)
                                                            for r in logged.records}, (
            "update_log returned a record the first log did not write: never write a second log")

    # -- the app's error answers -------------------------------------------------------

    def _probe(self) -> tuple[str, Callable[[Hooks, HookContext], Awaitable[Any]]]:
        """The first declared hook to send an error answer to."""
        sc = self.kit.scenarios
        declaration = self.kit.declaration()
        caps = declaration.capabilities if declaration else frozenset()
        if Capability.CONTACT_SEARCH_PHONE in caps:
            party = sc.party(sc.known_number)
            return "find_contact", lambda h, ctx: h.find_contact(ctx, party=party)
        for kind, cap in _LOG_CAP.items():
            if cap in caps:
                hook, event = _LOG_HOOK[kind], sc.event(kind)

                def log(h: Hooks, ctx: HookContext, hook: str = hook,
                        event: AnyEvent = event) -> Awaitable[Any]:
                    call: Awaitable[Any] = getattr(h, hook)(ctx, event=event,
                                                            target=sc.log_target)
                    return call

                return hook, log
        pytest.skip("the plugin declares no contact search and no log hook to probe")

    def _error(self, case: str, fault: Fault, expected: type[BaseException]) -> BaseException:
        self.kit.require(case, None, None)
        _hook, body = self._probe()
        with pytest.raises(expected) as info:
            self.kit.run(case, body, fault=fault)
        return info.value

    def test_unauthorized_answer_raises_authentication_failed(self) -> None:
        self._error("error-401", 401, AuthenticationFailed)

    def test_rate_limited_answer_raises_rate_limited_at_once(self) -> None:
        error = self._error("error-429", (429, 30.0), RateLimited)
        assert isinstance(error, RateLimited) and error.retry_after is not None, (
            "RateLimited must carry the app's Retry-After")

    def test_server_error_answer_raises_transient_error(self) -> None:
        self._error("error-5xx", 503, TransientError)

    # -- cassettes ---------------------------------------------------------------------

    def test_cassettes_hold_no_secrets_or_real_numbers(self) -> None:
        folder = self.kit.cassettes
        if not folder.is_dir() or not cassette_files(folder):
            pytest.fail(f"no cassettes in {folder}; record them with "
                        "CALLBRIDGE_RECORD_MODE=once against the sandbox", pytrace=False)
        problems = check_cassettes(folder, region=self.kit.scenarios.region)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            pytest.fail(f"{len(problems)} problem(s) in the cassettes of "
                        f"{self.kit.distribution}:\n{lines}", pytrace=False)

    # -- the author's rows -------------------------------------------------------------

    def _row(self, row: Row) -> None:
        capability = row.capability or _capability_of(row.hook)
        self.kit.require(f"row-{row.id}", row.hook, capability)
        sc = self.kit.scenarios
        args = dict(row.args)
        if isinstance(args.get("party"), str):
            args["party"] = sc.party(args["party"])
        if isinstance(args.get("event"), Mapping):
            args["event"] = parse_event(dict(args["event"]), region=sc.region)
        if isinstance(args.get("contact"), str):
            args["contact"] = Contact(id=args["contact"])

        def body(h: Hooks, ctx: HookContext) -> Awaitable[Any]:
            method = getattr(h, row.hook)
            result: Awaitable[Any] = method(ctx, **args)
            return result

        case = f"row-{row.id}"
        if isinstance(row.expect, type) and issubclass(row.expect, BaseException):
            with pytest.raises(row.expect):
                self.kit.run(case, body, fault=row.fault)
            return
        result = self.kit.run(case, body, fault=row.fault)
        if callable(row.expect):
            assert row.expect(result), f"row {row.id}: {row.hook} returned {result!r}"
        else:
            assert result == row.expect


_CASES = ("find_contact-found", "find_contact-not-found", "find_contact-by-email",
          "find_matters-none", "find_matters-one", "find_matters-several",
          "error-401", "error-429", "error-5xx")


def contract_suite(*, plugin: object, settings: Mapping[str, Any], cassettes: Path | str,
                   scenarios: Scenarios, skip: Mapping[str, str] | None = None,
                   extra_rows: Sequence[Row] = (),
                   sandbox: Callable[[], Any] | None = None) -> type[ContractSuite]:
    """The standard contract suite for ``plugin``, as a test class.

    Args:
        plugin: the plugin module (or object) with its ``@hookimpl`` functions.
        settings: example options, validated against the declared settings model
            and given to the hooks as ``ctx.options``.
        cassettes: the folder of this plugin's cassettes (one file per case).
        scenarios: the inputs of the standard cases.
        skip: ``{case, hook or capability: reason}``; a declared capability's test
            is skipped only with a non-empty reason.
        extra_rows: the author's own cases, run beside the standard ones.
        sandbox: a function returning the seeded ASGI app to record against
            (``CALLBRIDGE_RECORD_MODE=once``); wrapped in the host's fault
            injector to record the 401, 429 and 5xx answers.

    Assign the result to a name starting with ``Test`` in a test module.
    """
    kit = _Kit(plugin=plugin, settings=settings, cassettes=Path(cassettes), scenarios=scenarios,
               skip=skip or {}, sandbox=sandbox)
    attrs: dict[str, Any] = {"kit": kit, "__test__": True,
                             "__doc__": f"callbridge's contract suite for {kit.distribution}."}
    if extra_rows:
        ids = [row.id for row in extra_rows]
        if len(set(ids)) != len(ids):
            raise ValueError("extra_rows have duplicate ids")

        @pytest.mark.parametrize("row", list(extra_rows), ids=ids)
        def test_row(self: ContractSuite, row: Row) -> None:
            self._row(row)

        attrs["test_row"] = test_row
    declaration = kit.declaration()
    name = f"Contract_{declaration.name if declaration else 'plugin'}"
    return type(name, (ContractSuite,), attrs)


#: Kept for checkers that want the standard fix text.
CASSETTE_FIX = FIX
