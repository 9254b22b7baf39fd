"""Issue point 3: the typed facade routes each call to one plugin and wraps it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from callbridge.capabilities import Capability, Declaration
from callbridge.errors import PermanentError
from callbridge.events import parse_event
from callbridge.facade import Facade, HookNotDeclared
from callbridge.hookspecs import hookimpl
from callbridge.models import (
    AppRequest,
    AppSubscription,
    AppUser,
    BatchItem,
    BatchResult,
    ChangedContacts,
    ClosedMatterPage,
    Contact,
    LogResult,
    LogTarget,
    Matter,
    Record,
    WriteConfirmed,
)
from callbridge.plugins import Registry
from callbridge.testing.scenarios import SAMPLE_CLOSED_MATTER

from tests.helpers import bare_context

CALL = parse_event({
    "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
    "external": {"number": "2125550142"}, "started_at": "2026-03-02T10:00:00Z",
    "ended_at": "2026-03-02T10:01:00Z", "outcome": "completed"})
SMS = parse_event({"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                   "external": {"number": "2125550142"}, "sent_at": "2026-03-02T10:00:00Z", "body": "hi"})
FAX = parse_event({"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound",
                   "external": {"number": "2125550142"}, "sent_at": "2026-03-02T10:00:00Z",
                   "page_count": 1})


class Everything:
    """Implements every routed hook, each answering with its own name in the result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    @hookimpl
    def declare(self) -> Declaration:
        return Declaration(name=self.name, version="1", hook_api_version="2.0",
                           capabilities=frozenset(Capability) - {Capability.LOG_WITHOUT_CONTACT})

    def _rec(self, hook: str) -> Record:
        self.calls.append(hook)
        return Record(kind=self.name, id=hook)

    @hookimpl
    async def find_contact(self, ctx: Any, party: Any) -> list[Contact]:
        return [Contact(id=self._rec("find_contact").kind)]

    @hookimpl
    async def create_contact(self, ctx: Any, party: Any, name: str) -> Contact:
        return Contact(id=self._rec("create_contact").kind, name=name)

    @hookimpl
    async def find_matters(self, ctx: Any, contact: Any) -> list[Matter]:
        return [Matter(id=self._rec("find_matters").kind)]

    @hookimpl
    async def find_user(self, ctx: Any, email: Any, extension: Any) -> AppUser | None:
        return AppUser(id=self._rec("find_user").kind, email=email)

    @hookimpl
    async def pick_default_user(self, ctx: Any) -> AppUser | None:
        return AppUser(id=self._rec("pick_default_user").kind)

    @hookimpl
    async def ensure_activity_code(self, ctx: Any, label: str) -> str:
        return self._rec("ensure_activity_code").kind + ":" + label

    @hookimpl
    async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
        return LogResult(records=(self._rec("log_call"),))

    @hookimpl
    async def log_sms(self, ctx: Any, event: Any, target: Any) -> LogResult:
        return LogResult(records=(self._rec("log_sms"),))

    @hookimpl
    async def log_fax(self, ctx: Any, event: Any, target: Any) -> LogResult:
        return LogResult(records=(self._rec("log_fax"),))

    @hookimpl
    async def update_log(self, ctx: Any, event: Any, records: Any) -> LogResult:
        return LogResult(records=(self._rec("update_log"),))

    @hookimpl
    async def contacts_changed_since(self, ctx: Any, since: Any, cursor: Any) -> ChangedContacts:
        self._rec("contacts_changed_since")
        return ChangedContacts(contacts=(), cursor=None, high_water=datetime.now(UTC))

    @hookimpl
    async def log_batch(self, ctx: Any, kind: Any, items: Any) -> list[BatchResult]:
        return [BatchResult(ok=LogResult(records=(self._rec("log_batch"),))) for _ in items]

    @hookimpl
    async def confirm_accepted(self, ctx: Any, records: Any, since: Any) -> dict[str, bool | None]:
        self._rec("confirm_accepted")
        return {r.id: True for r in records}

    @hookimpl
    async def subscribe_app_events(self, ctx: Any, url: Any) -> AppSubscription:
        return AppSubscription(id=self._rec("subscribe_app_events").kind)

    @hookimpl
    async def renew_app_events(self, ctx: Any, subscription: Any, url: Any) -> AppSubscription:
        return AppSubscription(id=self._rec("renew_app_events").kind)

    @hookimpl
    async def verify_app_event(self, ctx: Any, request: Any, subscription: Any) -> None:
        self._rec("verify_app_event")

    @hookimpl
    async def parse_app_event(self, ctx: Any, request: Any, subscription: Any
                              ) -> list[WriteConfirmed]:
        return [WriteConfirmed(marker=self._rec("parse_app_event").kind, kind="log")]

    @hookimpl
    async def closed_matters_since(self, ctx: Any, position: Any, since: Any) -> ClosedMatterPage:
        return ClosedMatterPage(matters=(), position=self._rec("closed_matters_since").kind)

    @hookimpl
    async def send_closed_matter(self, ctx: Any, client: Any, matter: Any) -> Record:
        return self._rec("send_closed_matter")


SUBSCRIPTION = AppSubscription(id="sub-1", secret="kit-secret")
APP_REQUEST = AppRequest(headers={}, body=b"{}", url="https://callbridge.example.com/",
                         received_at=datetime(2026, 3, 2, tzinfo=UTC))


def two_apps() -> tuple[Facade, Everything, Everything]:
    registry = Registry()
    a, b = Everything("alpha"), Everything("beta")
    registry.add(a)
    registry.add(b)
    return Facade(registry), a, b


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("find_contact", {"party": CALL.external}),
    ("create_contact", {"party": CALL.external, "name": "Dana"}),
    ("find_matters", {"contact": Contact(id="1")}),
    ("find_user", {"email": "ann@example.com", "extension": None}),
    ("pick_default_user", {}),
    ("ensure_activity_code", {"label": "callbridge"}),
    ("log_call", {"event": CALL, "target": LogTarget()}),
    ("log_sms", {"event": SMS, "target": LogTarget()}),
    ("log_fax", {"event": FAX, "target": LogTarget()}),
    ("update_log", {"event": CALL, "records": []}),
    ("log_batch", {"kind": "call", "items": [BatchItem(CALL, LogTarget(), None)]}),  # type: ignore[arg-type]
    ("confirm_accepted", {"records": [Record(kind="log", id="1")],
                          "since": datetime(2026, 3, 2, tzinfo=UTC)}),
    ("contacts_changed_since", {"since": None, "cursor": None}),
    ("closed_matters_since", {"position": None, "since": datetime(2026, 3, 2, tzinfo=UTC),
                              "contact_fields": ["BroadlyOptOut"],
                              "matter_fields": ["SendBroadlyThankYou"]}),
    ("send_closed_matter", {"client": SAMPLE_CLOSED_MATTER.client,
                            "matter": SAMPLE_CLOSED_MATTER}),
    ("subscribe_app_events", {"url": "https://callbridge.example.com/v1/apps/t/beta/events"}),
    ("renew_app_events", {"subscription": SUBSCRIPTION,
                          "url": "https://callbridge.example.com/v1/apps/t/beta/events"}),
    ("verify_app_event", {"request": APP_REQUEST, "subscription": SUBSCRIPTION}),
    ("parse_app_event", {"request": APP_REQUEST, "subscription": SUBSCRIPTION}),
]


@pytest.mark.parametrize(("hook", "kwargs"), CALLS, ids=[c[0] for c in CALLS])
async def test_a_call_for_one_app_reaches_that_plugin_only(hook: str, kwargs: dict[str, Any]) -> None:
    facade, alpha, beta = two_apps()
    await getattr(facade.for_plugin("beta"), hook)(bare_context("beta"), **kwargs)
    assert beta.calls == [hook] and alpha.calls == []


async def test_a_wrong_result_type_is_a_clear_error() -> None:
    class Liar(Everything):
        @hookimpl
        async def find_contact(self, ctx: Any, party: Any) -> Any:
            return {"id": "1"}

    registry = Registry()
    registry.add(Liar("liar"))
    with pytest.raises(PermanentError, match="returned dict from find_contact; expected a list of Contact"):
        await Facade(registry).for_plugin("liar").find_contact(bare_context(), party=CALL.external)


async def test_an_undeclared_hook_is_never_called() -> None:
    class Small:
        @hookimpl
        def declare(self) -> Declaration:
            return Declaration(name="small", version="1", hook_api_version="2.0",
                               capabilities=frozenset({Capability.CALLS}))

        @hookimpl
        async def log_call(self, ctx: Any, event: Any, target: Any) -> LogResult:
            return LogResult(records=())

    registry = Registry()
    registry.add(Small())
    with pytest.raises(HookNotDeclared):
        await Facade(registry).for_plugin("small").find_contact(bare_context(), party=CALL.external)


async def test_dry_run_writes_nothing_and_says_so() -> None:
    registry = Registry()
    plugin = Everything("alpha")
    registry.add(plugin)
    result = await Facade(registry, dry_run=True).for_plugin("alpha").log_call(
        bare_context(), event=CALL, target=LogTarget())
    assert plugin.calls == [] and result.records[0].kind == "dry_run"


async def test_observers_see_each_awaited_call_with_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, str | None]] = []

    class Observer:
        @hookimpl
        def hook_called(self, tenant: str, app: str, hook: str, seconds: float, error: str | None) -> None:
            seen.append((hook, error))

    class Failing(Everything):
        @hookimpl
        async def find_user(self, ctx: Any, email: Any, extension: Any) -> AppUser | None:
            await asyncio.sleep(0)
            raise RuntimeError("app down")

    registry = Registry()
    registry.add(Failing("alpha"))
    registry.manager.register(Observer())
    facade = Facade(registry, trace=True)
    await facade.for_plugin("alpha").pick_default_user(bare_context())
    with pytest.raises(RuntimeError):
        await facade.for_plugin("alpha").find_user(bare_context(), email=None, extension=None)
    assert seen == [("pick_default_user", None), ("find_user", "RuntimeError")]
    assert "[trace] acme/app find_user" in capsys.readouterr().err


def test_every_routed_spec_has_a_facade_method_with_its_arguments() -> None:
    """The facade is typed by hand for mypy; this holds each method to its spec."""
    import inspect

    from callbridge import hookspecs
    from callbridge.facade import Hooks

    for name in hookspecs.ROUTED_HOOKS:
        method = getattr(Hooks, name, None)
        assert method is not None, f"the facade has no method for {name}"
        spec_args = [a for a in inspect.signature(getattr(hookspecs, name)).parameters]
        method_args = [a for a in inspect.signature(method).parameters if a != "self"]
        assert method_args == spec_args, f"{name}: facade {method_args} != spec {spec_args}"
    assert set(CALLS_BY_HOOK) == set(hookspecs.ROUTED_HOOKS), "a routed hook has no routing case"


CALLS_BY_HOOK = dict(CALLS)


async def test_a_batch_answer_must_hold_one_result_per_item() -> None:
    class Short(Everything):
        @hookimpl
        async def log_batch(self, ctx: Any, kind: Any, items: Any) -> list[BatchResult]:
            return []

    registry = Registry()
    registry.add(Short("short"))
    with pytest.raises(PermanentError, match="0 results from log_batch for 1 items"):
        await Facade(registry).for_plugin("short").log_batch(
            bare_context(), kind="call", items=[BatchItem(CALL, LogTarget(), None)])  # type: ignore[arg-type]


async def test_a_confirmation_must_map_ids_to_true_false_or_none() -> None:
    class Vague(Everything):
        @hookimpl
        async def confirm_accepted(self, ctx: Any, records: Any, since: Any) -> Any:
            return {"1": "yes"}

    registry = Registry()
    registry.add(Vague("vague"))
    with pytest.raises(PermanentError, match="expected a dict of str to bool or None"):
        await Facade(registry).for_plugin("vague").confirm_accepted(
            bare_context(), records=[Record(kind="log", id="1")], since=datetime.now(UTC))


def test_a_batch_result_holds_exactly_one_of_ok_and_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BatchResult()
