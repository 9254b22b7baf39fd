"""The pipeline's steps, run directly with fake hooks over the policy matrix:
creation policy × event type × exclusive association × several-matches policy ×
0/1/2 matching contacts × 0/1/2 open matters (SPEC §2)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from callbridge.capabilities import Capability
from callbridge.context import HookContext
from callbridge.errors import SkipEvent, UnknownActivityCode
from callbridge.events import parse_event
from callbridge.models import AppUser, Contact, LogResult, Matter, OutcomeStatus, Record
from callbridge.pipeline import Job, run
from callbridge.settings import TenantSettings

from tests.helpers import bare_context

BASE = {Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
        Capability.CONTACT_CREATION, Capability.MATTERS, Capability.USERS,
        Capability.LOG_WITHOUT_CONTACT}
OLD = Contact(id="10", name="Older", updated_at=datetime(2026, 1, 1, tzinfo=UTC))
NEW = Contact(id="11", name="Newer", updated_at=datetime(2026, 2, 1, tzinfo=UTC))


class FakeHooks:
    """The facade's surface the pipeline uses, answering from memory and noting each call."""

    def __init__(self, *, caps: set[Capability] = BASE, matters: int = 0) -> None:
        self.caps = caps
        self.declaration = SimpleNamespace(name="fake", title="Fake")
        self.matters = [Matter(id=f"m{i}", status="open") for i in range(matters)]
        self.created: list[Contact] = []
        self.logged: list[Any] = []
        self.ensured = 0
        self.refuse_code: str | None = None

    def supports(self, cap: Capability) -> bool:
        return cap in self.caps

    def logs_without_contact(self, kind: str) -> bool:
        return Capability.LOG_WITHOUT_CONTACT in self.caps

    async def create_contact(self, ctx: Any, *, party: Any, name: str) -> Contact:
        contact = Contact(id=f"new{len(self.created)}", name=name, phones=(party.e164,))
        self.created.append(contact)
        return contact

    async def find_matters(self, ctx: Any, *, contact: Contact) -> list[Matter]:
        return self.matters

    async def find_user(self, ctx: Any, *, email: str | None, extension: str | None) -> AppUser | None:
        return AppUser(id="u1") if email == "ann@acme.example" else None

    async def pick_default_user(self, ctx: Any) -> AppUser | None:
        return AppUser(id="u0")

    async def ensure_activity_code(self, ctx: Any, *, label: str) -> str:
        self.ensured += 1
        return f"{label}-{self.ensured}"

    async def _log(self, ctx: Any, event: Any, target: Any) -> LogResult:
        if self.refuse_code is not None and target.activity_code == self.refuse_code:
            raise UnknownActivityCode("deleted")
        self.logged.append(target)
        return LogResult(records=(Record(kind="log", id=f"l{len(self.logged)}"),))

    log_call = log_sms = log_fax = None  # set below

    async def update_log(self, ctx: Any, *, event: Any, records: list[Record]) -> LogResult:
        return LogResult(records=tuple(records))


async def _log_call(self: FakeHooks, ctx: Any, *, event: Any, target: Any) -> LogResult:
    return await self._log(ctx, event, target)

FakeHooks.log_call = FakeHooks.log_sms = FakeHooks.log_fax = _log_call  # type: ignore[assignment]


class FakeDirectory:
    def __init__(self, matches: list[Contact]) -> None:
        self.matches = matches
        self.created: dict[str, list[str]] = {}
        self.lookups: list[bool] = []

    async def lookup(self, ctx: Any, hooks: Any, party: Any, *, confirm_miss: bool = True) -> list[Contact]:
        self.lookups.append(confirm_miss)
        return list(self.matches)

    async def add(self, ctx: Any, hooks: Any, contact: Contact) -> None:
        self.matches.append(contact)

    async def created_for(self, ctx: Any, e164: str) -> list[str]:
        return self.created.get(e164, [])

    async def note_created(self, ctx: Any, e164: str, contact_id: str) -> None:
        self.created.setdefault(e164, []).append(contact_id)


def context(**app: Any) -> HookContext:
    """The fake app's context (its hooks make no request)."""
    return bare_context("fake", app_settings=app,
                        tenant=TenantSettings(own_numbers=["+1 212 555 0100"]))


EVENTS = {
    "completed": {"kind": "call", "direction": "inbound", "started_at": "2026-03-02T10:00:00Z",
                  "answered_at": "2026-03-02T10:00:05Z", "ended_at": "2026-03-02T10:04:00Z",
                  "outcome": "completed"},
    "missed": {"kind": "call", "direction": "inbound", "started_at": "2026-03-02T10:00:00Z",
               "ended_at": "2026-03-02T10:00:30Z", "outcome": "missed"},
    "sms": {"kind": "sms", "direction": "outbound", "sent_at": "2026-03-02T10:00:00Z", "body": "hi"},
    "fax": {"kind": "fax", "direction": "inbound", "sent_at": "2026-03-02T10:00:00Z",
            "page_count": 1, "document": {"content": "JVBERi0xLjQ="}},
}
#: Which event types each creation policy admits (SPEC §2 step 2).
POLICIES: dict[str, tuple[Any, set[str]]] = {
    "none": ("none", set()),
    "all": ("all", {"completed", "missed", "sms"}),  # "all" is every type but fax
    "missed": (["missed"], {"missed"}),
    "fax": (["fax"], {"fax"}),
}


def event(kind: str, number: str = "+1 212 555 0142") -> Any:
    return parse_event({**EVENTS[kind], "id": f"{kind}-1", "tenant": "acme",
                        "external": {"number": number}, "internal": {"email": "ann@acme.example"}})


MATRIX = list(itertools.product(POLICIES, EVENTS, [False, True], ["ask", "most_recent", "all"],
                                [0, 1, 2], [0, 1, 2]))


@pytest.mark.parametrize(("policy", "kind", "exclusive", "several", "matches", "matters"), MATRIX,
                         ids=["-".join(map(str, case)) for case in MATRIX])
async def test_the_policy_matrix(policy: str, kind: str, exclusive: bool, several: str,
                                 matches: int, matters: int) -> None:
    hooks = FakeHooks(caps=BASE | {Capability.MULTI_CONTACT_LINK}, matters=matters)
    directory = FakeDirectory([OLD, NEW][:matches])
    ctx = context(contact_creation=POLICIES[policy][0], exclusive_contact_association=exclusive,
                  several_matches=several)
    outcome = await run(Job(event=event(kind), hooks=hooks, ctx=ctx), directory)  # type: ignore[arg-type]

    if matches == 2 and several == "ask":
        assert outcome.status == OutcomeStatus.UNRESOLVED
        assert {c.id for c in outcome.candidates} == {OLD.id, NEW.id}
        assert hooks.logged == [] and hooks.created == []
        return
    creates = matches == 0 and kind in POLICIES[policy][1]
    assert len(hooks.created) == (1 if creates else 0)
    expected = {0: [], 1: [OLD.id], 2: [OLD.id, NEW.id] if several == "all" else [NEW.id]}[matches]
    if creates:
        expected = [hooks.created[0].id]
        assert directory.created == {"+12125550142": [expected[0]]}  # remembered for the number
        assert ("contact", expected[0]) in {(r.kind, r.id) for r in ctx.delivery.records}  # type: ignore[union-attr]
    if not expected and exclusive:
        assert (outcome.status, outcome.reason) == (OutcomeStatus.SKIPPED, "no_contact")
        assert hooks.logged == []
        return
    assert outcome.status == OutcomeStatus.LOGGED
    [target] = hooks.logged
    assert [c.id for c in target.contacts] == expected
    assert target.matter == (hooks.matters[0] if expected and matters == 1 else None)
    assert target.user == AppUser(id="u1")
    # The miss is confirmed (a catch-up sync) only where a contact would be created next.
    assert directory.lookups[0] == (kind in POLICIES[policy][1])


async def test_a_contact_the_host_created_for_the_number_is_used_not_created_again() -> None:
    hooks, directory = FakeHooks(), FakeDirectory([])
    directory.created["+12125550142"] = ["earlier"]
    ctx = context(contact_creation="all")
    outcome = await run(Job(event=event("missed"), hooks=hooks, ctx=ctx), directory)  # type: ignore[arg-type]
    assert outcome.status == OutcomeStatus.LOGGED and hooks.created == []
    assert [c.id for c in hooks.logged[0].contacts] == ["earlier"]


async def test_the_activity_code_is_ensured_once_and_again_once_when_the_app_lost_it() -> None:
    hooks = FakeHooks(caps=BASE | {Capability.ACTIVITY_CODES})
    ctx = context(activity_code_label="CB-TEST")
    for _ in range(3):
        await run(Job(event=event("completed"), hooks=hooks, ctx=ctx), FakeDirectory([OLD]))  # type: ignore[arg-type]
    assert hooks.ensured == 1 and [t.activity_code for t in hooks.logged] == ["CB-TEST-1"] * 3
    hooks.refuse_code = "CB-TEST-1"  # deleted in the app
    outcome = await run(Job(event=event("completed"), hooks=hooks, ctx=ctx), FakeDirectory([OLD]))  # type: ignore[arg-type]
    assert outcome.status == OutcomeStatus.LOGGED
    assert hooks.ensured == 2 and hooks.logged[-1].activity_code == "CB-TEST-2"


async def test_an_unknown_activity_code_twice_is_not_retried_again() -> None:
    hooks = FakeHooks(caps=BASE | {Capability.ACTIVITY_CODES})

    async def always(self: Any, ctx: Any, *, label: str) -> str:
        self.ensured += 1
        return "gone"
    hooks.ensure_activity_code = always.__get__(hooks)  # type: ignore[method-assign]
    hooks.refuse_code = "gone"
    with pytest.raises(UnknownActivityCode):
        await run(Job(event=event("completed"), hooks=hooks, ctx=context()), FakeDirectory([OLD]))  # type: ignore[arg-type]
    assert hooks.ensured == 2


@pytest.mark.parametrize(("missing", "reason"), [((), None), (("document",), "document_missing")])
async def test_typed_partial_success_is_logged_with_its_reason(missing: tuple[str, ...],
                                                                 reason: str | None) -> None:
    hooks = FakeHooks()

    async def log_fax(ctx: Any, *, event: Any, target: Any) -> LogResult:
        return LogResult(records=(Record(kind="log", id="1"),), missing=missing)
    hooks.log_fax = log_fax  # type: ignore[assignment]
    outcome = await run(Job(event=event("fax"), hooks=hooks, ctx=context()), FakeDirectory([OLD]))  # type: ignore[arg-type]
    assert (outcome.status, outcome.reason) == (OutcomeStatus.LOGGED, reason)


@pytest.mark.parametrize(("kind", "reason"), [("sms", "unsupported"), ("fax", "fax_logging_off")])
async def test_what_the_app_cannot_hold_is_skipped(kind: str, reason: str) -> None:
    hooks = FakeHooks(caps=BASE - {Capability.SMS})
    outcome = await run(Job(event=event(kind), hooks=hooks, ctx=context(fax_logging=False)),  # type: ignore[arg-type]
                        FakeDirectory([OLD]))
    assert (outcome.status, outcome.reason) == (OutcomeStatus.SKIPPED, reason)


async def test_a_skip_from_the_log_hook_is_the_outcome() -> None:
    hooks = FakeHooks()

    async def log_call(ctx: Any, *, event: Any, target: Any) -> LogResult:
        raise SkipEvent("no_matter", "No matter to file it under.")
    hooks.log_call = log_call  # type: ignore[assignment]
    outcome = await run(Job(event=event("completed"), hooks=hooks, ctx=context()), FakeDirectory([]))  # type: ignore[arg-type]
    assert (outcome.status, outcome.reason) == (OutcomeStatus.SKIPPED, "no_matter")

