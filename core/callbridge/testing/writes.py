"""The contract kit's standard cases that write: logs, updates, batches, and retries.

Mixed into :class:`callbridge.testing.suite.ContractSuite`. The retry cases
follow the host's write protocol: the kit lets the app do a create, drops its
answer (at replay too, after the request matched its recording), moves its
clock past the plugin's declared ``consistency_delay``, and runs attempt 2
with the records attempt 1 kept. Attempt 2 must find what attempt 1 wrote and
send that write no second time.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import pytest

from callbridge.capabilities import Capability
from callbridge.context import HookContext
from callbridge.events import AnyEvent, CallEvent
from callbridge.facade import Hooks
from callbridge.models import BatchItem, BatchResult, Contact, LogResult, LogStatus, Record
from callbridge.testing.kit import LOG_CAP, LOG_HOOK, Kit, KitSession, covers
from callbridge.testing.services import KitDelivery

T = TypeVar("T")


def _ids_in(body: bytes) -> set[str]:
    """Every string and number in a JSON answer: the id the dropped answer held is among them."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            found.add(str(value))

    try:
        walk(json.loads(body or b"null"))
    except ValueError:
        pass
    return found


def _same_record(record_id: str, ids: set[str]) -> bool:
    """Whether the id (or a part of a composite id such as ``matter/fee``) was in the answer."""
    return record_id in ids or any(part in ids for part in re.split(r"[/:#|]", record_id))


def _unkept(result: LogResult, delivery: KitDelivery) -> list[Record]:
    return [r for r in result.records if r not in delivery.records]


class WriteCases:
    """Logs of each kind, late details, batches, confirmations, and retries after a lost answer."""

    kit: ClassVar[Kit]

    # -- first attempts ------------------------------------------------------------------

    def _first_kind(self) -> str:
        declaration = self.kit.declaration()
        caps = declaration.capabilities if declaration else frozenset()
        for kind, cap in LOG_CAP.items():
            if cap in caps:
                return kind
        pytest.skip("the plugin declares no log hook")

    def _log(self, kind: str) -> None:
        hook = LOG_HOOK[kind]
        self.kit.require(hook, hook, LOG_CAP[kind])
        sc = self.kit.scenarios
        event = sc.event(kind)

        async def body() -> tuple[LogResult, KitDelivery]:
            async with self.kit.session(hook) as s:
                delivery = s.delivery(event.marker)
                result: LogResult = await getattr(s.hooks, hook)(
                    s.context(delivery), event=event, target=sc.log_target)
                return result, delivery

        result, delivery = asyncio.run(body())
        assert result.records, f"{hook} returned no record"
        assert all(r.kind and r.id for r in result.records)
        missing = _unkept(result, delivery)
        assert not missing, (f"{hook} kept no record of {', '.join(f'{r.kind} {r.id}' for r in missing)}"
                             " (write through ctx.delivery.step, or call ctx.delivery.remember); "
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

        logged, updated = self.kit.run("update_log", body, marker=first.marker)
        assert {(r.kind, r.id) for r in updated.records} <= {(r.kind, r.id)
                                                            for r in logged.records}, (
            "update_log returned a record the first log did not write: never write a second log")

    # -- retries after a lost answer (hook API 2.0) ----------------------------------------

    def _retry(self, case: str, call: Callable[[KitSession, KitDelivery], Awaitable[T]],
               markers: tuple[str, ...],
               before: Callable[[KitSession], Awaitable[tuple[str, ...]]] | None = None,
               ) -> tuple[T, KitDelivery, set[str]]:
        """Attempt 1 loses the answer to the write carrying a marker; attempt 2 must not repeat it.

        ``markers[0]`` is the delivery's marker; a write whose URL or body holds
        any of ``markers`` is the one whose answer is dropped.
        """
        declaration = self.kit.declaration()
        assert declaration is not None
        delay = declaration.consistency_delay
        print(f"{declaration.name} declares consistency_delay={delay:g}s: a retry after a lost "
              "answer waits this long; a look-up sooner could miss the record (the duplicate "
              "window)")

        async def body() -> tuple[T, KitDelivery, set[str]]:
            async with self.kit.session(case) as s:
                # ``before`` writes what the case needs first, and names more markers.
                more = await before(s) if before is not None else ()
                s.traffic.lose = (*markers, *more)
                first = s.delivery(markers[0])
                try:
                    await call(s, first)
                except Exception:
                    s.raise_misses()  # a missing recording is the news, not the lost answer
                    # otherwise the answer was lost: any error will do, the host retries
                else:
                    # A batch may answer the lost write with an error per item instead.
                    if s.traffic.lost is not None and not case.startswith("log_batch"):
                        pytest.fail(f"the kit dropped the answer to {s.traffic.lost[0]}, but the "
                                    "hook returned as if it had it; let the error out so the "
                                    "host retries", pytrace=False)
                if s.traffic.lost is None:
                    pytest.fail(f"{case}: no write carried the marker, so the kit had no answer "
                                "to drop; put ctx.delivery.marker on every record the app lets "
                                "you (a contact: its number), or skip this case with the reason "
                                "your app cannot", pytrace=False)
                s.traffic.lose = None
                lost, body = s.traffic.lost
                s.clock.advance(delay)
                sent_before = len(s.traffic.sent)
                second = first.next_attempt()
                result = await call(s, second)
                # A create sent again is a duplicate; an update in place may be sent again,
                # but must create nothing.
                again = [w for w in s.traffic.sent[sent_before:]
                         if ((w == lost) if lost.startswith("POST ") else w.startswith("POST "))]
                assert not again, (
                    f"attempt 2 sent {', '.join(again)} after the answer to {lost} was lost: a "
                    "duplicate. Give ctx.delivery.step a find= that looks the record up by "
                    "ctx.delivery.marker (for a contact: by number, created since "
                    "ctx.delivery.first_attempt_at)")
                return result, second, _ids_in(body)

        return asyncio.run(body())

    @covers("create_contact")
    def test_create_contact_retry_after_a_lost_answer(self) -> None:
        self.kit.require("create_contact-retry", "create_contact", Capability.CONTACT_CREATION,
                         since="2.0")
        sc = self.kit.scenarios
        party = sc.party(sc.unknown_number)

        async def call(s: KitSession, d: KitDelivery) -> Contact:
            return await s.hooks.create_contact(s.context(d), party=party,
                                                name=sc.new_contact_name)

        national = (party.e164 or "")[-7:]  # a contact carries its number, not the marker
        marker = sc.event("call").marker  # the delivery is the sample call's
        contact, _d, ids = self._retry("create_contact-retry", call, (marker, national))
        assert _same_record(contact.id, ids), ("attempt 2 returned another contact than the one attempt 1 "
                                   "created")

    def _log_retry(self, kind: str) -> None:
        hook = LOG_HOOK[kind]
        self.kit.require(f"{hook}-retry", hook, LOG_CAP[kind], since="2.0")
        sc = self.kit.scenarios
        event = sc.event(kind)

        async def call(s: KitSession, d: KitDelivery) -> LogResult:
            result: LogResult = await getattr(s.hooks, hook)(s.context(d), event=event,
                                                             target=sc.log_target)
            return result

        result, delivery, ids = self._retry(f"{hook}-retry", call, (event.marker,))
        assert any(_same_record(r.id, ids) for r in result.records), (
            f"attempt 2 of {hook} returned {', '.join(f'{r.kind} {r.id}' for r in result.records)}"
            ", not the record attempt 1 wrote")
        assert not _unkept(result, delivery), f"attempt 2 of {hook} kept not every record"

    @covers("log_call")
    def test_log_call_retry_after_a_lost_answer(self) -> None:
        self._log_retry("call")

    @covers("log_sms")
    def test_log_sms_retry_after_a_lost_answer(self) -> None:
        self._log_retry("sms")

    @covers("log_fax")
    def test_log_fax_retry_after_a_lost_answer(self) -> None:
        self._log_retry("fax")

    @covers("update_log")
    def test_update_log_retry_after_a_lost_answer(self) -> None:
        self.kit.require("update_log-retry", "update_log", Capability.LATE_DETAILS, since="2.0")
        declaration = self.kit.declaration()
        if declaration is None or Capability.CALLS not in declaration.capabilities:
            pytest.skip("late details are checked on a call; the plugin declares no calls")
        sc = self.kit.scenarios
        first, late = sc.event("call"), sc.late_call()
        logged: list[Record] = []

        async def log_first(s: KitSession) -> tuple[str, ...]:
            assert isinstance(first, CallEvent)
            result = await s.hooks.log_call(s.context(s.delivery(first.marker)), event=first,
                                            target=sc.log_target)
            logged.extend(result.records)
            return tuple(f"/{r.id}" for r in logged)  # an update's URL names the record

        async def call(s: KitSession, d: KitDelivery) -> LogResult:
            return await s.hooks.update_log(s.context(d), event=late, records=logged)

        result, _d, _ids = self._retry("update_log-retry", call, (first.marker,),
                                       before=log_first)
        assert {(r.kind, r.id) for r in result.records} <= {(r.kind, r.id) for r in logged}, (
            "update_log returned a record the first log did not write: never write a second log")

    # -- batches and confirmations (hook API 2.0) ------------------------------------------

    def _batch(self, s: KitSession, kind: str, deliveries: list[KitDelivery],
               events: list[AnyEvent]) -> Awaitable[list[BatchResult]]:
        items = [BatchItem(event=e, target=self.kit.scenarios.log_target, delivery=d)
                 for e, d in zip(events, deliveries, strict=True)]
        return s.hooks.log_batch(s.context(), kind=kind, items=items)  # type: ignore[arg-type]

    @covers("log_batch")
    def test_log_batch(self) -> None:
        self.kit.require("log_batch", "log_batch", Capability.BATCH_WRITES, since="2.0")
        kind = self._first_kind()
        events = [self.kit.scenarios.event(kind, n) for n in (1, 2)]

        async def body() -> tuple[list[BatchResult], list[KitDelivery]]:
            async with self.kit.session("log_batch") as s:
                deliveries = [s.delivery(e.marker) for e in events]
                return await self._batch(s, kind, deliveries, events), deliveries

        results, deliveries = asyncio.run(body())
        for n, (result, delivery) in enumerate(zip(results, deliveries, strict=True), 1):
            assert result.ok is not None, f"item {n} failed: {type(result.error).__name__}"
            assert result.ok.records and not _unkept(result.ok, delivery), (
                f"item {n}: every record written must be kept with that item's delivery")

    @covers("log_batch")
    def test_log_batch_retry_after_a_lost_answer(self) -> None:
        self.kit.require("log_batch-retry", "log_batch", Capability.BATCH_WRITES, since="2.0")
        kind = self._first_kind()
        events = [self.kit.scenarios.event(kind, n) for n in (1, 2)]
        earlier: list[KitDelivery] = []

        async def call(s: KitSession, d: KitDelivery) -> list[BatchResult]:
            # The first item's delivery is the case's; the others follow it attempt by attempt.
            others = ([x.next_attempt() for x in earlier[1:]] if d.attempt > 1
                      else [s.delivery(e.marker) for e in events[1:]])
            earlier[:] = [d, *others]
            return await self._batch(s, kind, earlier, events)

        results, _d, _ids = self._retry("log_batch-retry", call,
                                        tuple(e.marker for e in events))
        assert all(r.ok is not None and r.ok.records for r in results), (
            "attempt 2 of the batch did not log every item")

    @covers("confirm_accepted")
    def test_confirm_accepted(self) -> None:
        self.kit.require("confirm_accepted-after-log", "confirm_accepted", Capability.ASYNC_WRITES,
                         since="2.0")
        kind = self._first_kind()
        hook, event = LOG_HOOK[kind], self.kit.scenarios.event(kind)

        async def body() -> tuple[LogResult, dict[str, bool | None]]:
            async with self.kit.session("confirm_accepted-after-log") as s:
                delivery = s.delivery(event.marker)
                logged: LogResult = await getattr(s.hooks, hook)(
                    s.context(delivery), event=event, target=self.kit.scenarios.log_target)
                if logged.status != LogStatus.ACCEPTED:
                    pytest.fail(f"{hook} returned status {logged.status.value}; a plugin that "
                                "declares async_writes returns accepted for writes the app "
                                "does later", pytrace=False)
                answer = await s.hooks.confirm_accepted(
                    s.context(), records=list(logged.records), since=delivery.first_attempt_at)
                return logged, answer

        logged, answer = asyncio.run(body())
        assert set(answer) == {r.id for r in logged.records}, (
            "confirm_accepted must answer for every record it was given, and only those")
