"""The contract kit's standard cases that read: declaration, look-ups, errors, rows.

Mixed into :class:`callbridge.testing.suite.ContractSuite`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from callbridge.capabilities import Capability
from callbridge.context import HookContext
from callbridge.errors import AuthenticationFailed, RateLimited, TransientError
from callbridge.events import AnyEvent, parse_event
from callbridge.facade import Hooks
from callbridge.faults import Fault
from callbridge.hookspecs import ROUTED_HOOKS
from callbridge.models import Contact
from callbridge.phones import try_e164
from callbridge.testing.checker import cassette_files, check_cassettes
from callbridge.testing.kit import (
    LOG_CAP,
    LOG_HOOK,
    STANDARD_CASES,
    Kit,
    capability_of,
    covers,
    problems_of,
)
from callbridge.testing.scenarios import Row


def _contact(contact_id: str | None, what: str) -> Contact:
    if not contact_id:
        pytest.fail(f"Scenarios.{what} is needed: the id of such a contact in the sandbox",
                    pytrace=False)
    return Contact(id=contact_id)


def _reads_as(contact: Contact, e164: str, region: str) -> bool:
    return any(try_e164(phone, region) == e164 for phone in contact.phones)


class ReadCases:
    """The declaration, the look-ups, the error answers, the cassettes and the rows."""

    kit: ClassVar[Kit]

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
            pytest.fail(f"{self.kit.distribution}'s settings model {model.__name__} refuses the "
                        f"example settings: {problems_of(exc)}", pytrace=False)

    def test_skip_entries_name_known_tests(self) -> None:
        known = {name[len("test_"):] for name in dir(type(self)) if name.startswith("test_")}
        known |= set(ROUTED_HOOKS) | {c.value for c in Capability} | set(STANDARD_CASES)
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
        # The delivery is the sample call's, from a number no contact has.
        created = self.kit.run("create_contact", lambda h, ctx: h.create_contact(
            ctx, party=party, name=sc.new_contact_name), marker=sc.event("call").marker)
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


    # -- users, the activity code, changed contacts (hook API 2.0) -----------------------

    @covers("find_user")
    def test_find_user_by_email(self) -> None:
        self.kit.require("find_user-by-email", "find_user", Capability.USERS, since="2.0")
        email = self.kit.scenarios.known_user_email
        if not email:
            pytest.fail("Scenarios.known_user_email is needed: the plugin declares users",
                        pytrace=False)
        user = self.kit.run("find_user-by-email", lambda h, ctx: h.find_user(
            ctx, email=email, extension=None))
        assert user is not None and user.id, "find_user found no user for known_user_email"

    def test_find_user_unknown_is_none(self) -> None:
        self.kit.require("find_user-unknown", "find_user", Capability.USERS, since="2.0")
        user = self.kit.run("find_user-unknown", lambda h, ctx: h.find_user(
            ctx, email="nobody@firm.example", extension=None))
        assert user is None, "find_user must return None for a staff email no user has"

    @covers("pick_default_user")
    def test_pick_default_user(self) -> None:
        self.kit.require("pick_default_user", "pick_default_user", Capability.USERS, since="2.0")
        user = self.kit.run("pick_default_user", lambda h, ctx: h.pick_default_user(ctx))
        assert user is not None and user.id, "pick_default_user found no user in the sandbox"

    @covers("ensure_activity_code")
    def test_ensure_activity_code_twice_creates_once(self) -> None:
        """The host asks again after a restart or an UnknownActivityCode: never a second code."""
        self.kit.require("ensure_activity_code", "ensure_activity_code",
                         Capability.ACTIVITY_CODES, since="2.0")
        label = self.kit.scenarios.activity_code_label

        async def body() -> tuple[str, str, list[str]]:
            async with self.kit.session("ensure_activity_code") as s:
                first = await s.hooks.ensure_activity_code(s.context(), label=label)
                before = len(s.traffic.sent)
                again = await s.hooks.ensure_activity_code(s.context(), label=label)
                return first, again, [w for w in s.traffic.sent[before:]
                                      if not w.startswith("GET ")]

        first, again, writes = asyncio.run(body())
        assert first, "ensure_activity_code returned an empty reference"
        assert again == first, "a second call returned another reference: a second code?"
        assert not writes, (f"the second call wrote {', '.join(writes)}: find the code by its "
                            "label before creating one")

    @covers("contacts_changed_since")
    def test_contacts_changed_since_pages_to_the_end(self) -> None:
        self.kit.require("contacts_changed_since", "contacts_changed_since",
                         Capability.CONTACTS_CHANGED, since="2.0")
        sc = self.kit.scenarios

        async def body(h: Hooks, ctx: HookContext) -> list[Contact]:
            found: list[Contact] = []
            cursor: str | None = None
            for _ in range(50):
                page = await h.contacts_changed_since(ctx, since=None, cursor=cursor)
                found += page.contacts
                if not page.cursor:
                    return found
                assert page.cursor != cursor, "the same cursor twice: the pages never end"
                cursor = page.cursor
            pytest.fail("more than 50 pages; the kit's sandbox should hold a few contacts",
                        pytrace=False)

        found = self.kit.run("contacts_changed_since", body)
        assert any(_reads_as(c, sc.known_number, sc.region) for c in found), (
            "no contact in the changed-since feed has Scenarios.known_number")

    # -- the app's error answers -------------------------------------------------------

    def _probe(self) -> tuple[str, Callable[[Hooks, HookContext], Awaitable[Any]]]:
        """The first declared hook to send an error answer to."""
        sc = self.kit.scenarios
        declaration = self.kit.declaration()
        caps = declaration.capabilities if declaration else frozenset()
        if Capability.CONTACT_SEARCH_PHONE in caps:
            party = sc.party(sc.known_number)
            return "find_contact", lambda h, ctx: h.find_contact(ctx, party=party)
        for kind, cap in LOG_CAP.items():
            if cap in caps:
                hook, event = LOG_HOOK[kind], sc.event(kind)

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
        capability = row.capability or capability_of(row.hook)
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
        event = args.get("event")
        marker = str(getattr(event, "marker", ""))  # a delivery's marker is its event's
        if isinstance(row.expect, type) and issubclass(row.expect, BaseException):
            with pytest.raises(row.expect):
                self.kit.run(case, body, fault=row.fault, marker=marker)
            return
        result = self.kit.run(case, body, fault=row.fault, marker=marker)
        if callable(row.expect):
            assert row.expect(result), f"row {row.id}: {row.hook} returned {result!r}"
        else:
            assert result == row.expect

