"""SPEC §2: one event and one connected app -> one :class:`Outcome`.

The steps, in order: what the app can hold; internal calls; contact matching
(with the several-matches policy); contact creation (by the app's policy);
exclusive contact association; matter association; the user; the log; the
outcome. Exceptions from hooks are turned into outcomes by
:func:`outcome_for_error`, so one app's failure never touches another's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from callbridge.capabilities import Capability
from callbridge.context import HookContext, find_record
from callbridge.errors import (
    AppError,
    AuthenticationFailed,
    RateLimited,
    SkipEvent,
)
from callbridge.events import (
    AnyEvent,
    CallEvent,
    CallOutcome,
    Direction,
    FaxEvent,
    PartyKind,
    SmsEvent,
)
from callbridge.facade import Hooks
from callbridge.models import (
    Contact,
    LogResult,
    LogStatus,
    LogTarget,
    Matter,
    Outcome,
    OutcomeStatus,
    Record,
)
from callbridge.phoneindex import PhoneIndex
from callbridge.redact import describe_error
from callbridge.settings import EventType, SeveralMatches

KIND_CAPABILITY = {"call": Capability.CALLS, "sms": Capability.SMS, "fax": Capability.FAX}


@dataclass(frozen=True)
class Job:
    """What the pipeline needs besides the event: the delivery's state and choices."""

    event: AnyEvent
    hooks: Hooks
    ctx: HookContext
    chosen_contact_ids: tuple[str, ...] | None = None
    notes: str | None = None
    needs_update: bool = False


def event_types(event: AnyEvent) -> frozenset[EventType]:
    """The types the contact creation policy compares (SPEC §2 step 2)."""
    if isinstance(event, FaxEvent):
        return frozenset({EventType.FAX})
    types = {EventType.INCOMING if event.direction == Direction.INBOUND else EventType.OUTGOING}
    if isinstance(event, CallEvent):
        if event.outcome == CallOutcome.COMPLETED:
            types.add(EventType.COMPLETED)
        elif event.outcome in (CallOutcome.MISSED, CallOutcome.VOICEMAIL):
            types.add(EventType.MISSED)
    return frozenset(types)


def is_internal(event: AnyEvent, ctx: HookContext) -> bool:
    """A call between the firm's own numbers or extensions."""
    party = event.external
    if party.kind == PartyKind.NUMBER and party.number in ctx.tenant.own_numbers:
        return True
    return party.kind == PartyKind.SHORT_CODE and party.number in ctx.tenant.extensions


def skipped(reason: str, message: str, records: tuple[Record, ...] = ()) -> Outcome:
    return Outcome(status=OutcomeStatus.SKIPPED, reason=reason, message=message, records=records)


def most_recent(contacts: list[Contact]) -> Contact:
    """The contact updated last; ties (and unknown times) broken by id."""
    floor = datetime.min.replace(tzinfo=UTC)
    return max(contacts, key=lambda c: (c.updated_at or floor, _id_key(c.id)))


def _id_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


async def run(job: Job, index: PhoneIndex) -> Outcome:
    """Run one event through the pipeline for one app."""
    event, hooks, ctx = job.event, job.hooks, job.ctx
    app = ctx.settings
    name = hooks.declaration.title or hooks.declaration.name
    earlier = ctx.delivery.records if ctx.delivery else ()

    if not hooks.supports(KIND_CAPABILITY[event.kind]):
        return skipped("unsupported", f"{name} cannot hold {event.kind} events.")
    if isinstance(event, FaxEvent) and not app.fax_logging:
        return skipped("fax_logging_off", f"Fax logging is off for {name}.")
    if is_internal(event, ctx):
        return skipped("internal", "A call between the firm's own numbers or extensions.")

    if job.needs_update and earlier:
        return await _update(job, earlier, name)

    # 1. Contact matching.
    contacts: list[Contact] = []
    party = event.external
    if job.chosen_contact_ids is not None:
        contacts = [Contact(id=cid) for cid in job.chosen_contact_ids]
    elif party.matchable and (hooks.supports(Capability.CONTACT_SEARCH_PHONE)
                              or hooks.supports(Capability.CONTACT_SEARCH_EMAIL)):
        created = find_record(earlier, "contact", "create_contact")
        if created is not None:
            contacts = [Contact(id=created.id)]
        else:
            matches = await index.lookup(ctx, hooks, party)
            contacts = _apply_policy(matches, app.several_matches, hooks)
            if len(matches) > 1 and not contacts:
                return Outcome(status=OutcomeStatus.UNRESOLVED, reason="several_contacts",
                               message=f"{len(matches)} contacts in {name} share this number; "
                                       "a user must choose.",
                               candidates=tuple(matches))

    # 2. Contact creation.
    if (not contacts and party.matchable and hooks.supports(Capability.CONTACT_CREATION)
            and app.admits(event_types(event))):
        contact = await hooks.create_contact(ctx, party=party,
                                             name=party.display_name or app.placeholder_name)
        if ctx.delivery is not None and find_record(ctx.delivery.records, "contact", "create_contact") is None:
            await ctx.delivery.remember(Record(kind="contact", id=contact.id, step="create_contact"))
        await index.add(ctx, hooks, contact)
        contacts = [contact]

    # 3. Exclusive contact association.
    if not contacts and app.exclusive_contact_association:
        why = ("the party is withheld or a short code" if not party.matchable
               else "no contact matched and none was created")
        return skipped("no_contact", f"Skipped: no contact ({why}); exclusive contact association is on.")
    if not contacts and not party.matchable and not hooks.logs_without_contact(event.kind):
        return skipped("no_contact", f"Skipped: no contact (the party is withheld or a short code) "
                                     f"and {name} cannot log without one.")

    # 4. Matter association.
    matter: Matter | None = None
    if contacts and app.matter_association and hooks.supports(Capability.MATTERS):
        found: dict[str, Matter] = {}
        for contact in contacts:
            for m in await hooks.find_matters(ctx, contact=contact):
                found.setdefault(m.id, m)
        if len(found) == 1:
            matter = next(iter(found.values()))

    # The user.
    user = None
    if hooks.supports(Capability.USERS):
        email = event.internal.email
        if email is None and event.internal.extension:
            email = ctx.tenant.extensions.get(event.internal.extension)
        user = await hooks.find_user(ctx, email=email, extension=event.internal.extension)
        if user is None:
            user = await hooks.pick_default_user(ctx)

    # 5. Log.
    target = LogTarget(contacts=tuple(contacts), matter=matter, user=user, notes=job.notes)
    try:
        if isinstance(event, CallEvent):
            result = await hooks.log_call(ctx, event=event, target=target)
        elif isinstance(event, SmsEvent):
            result = await hooks.log_sms(ctx, event=event, target=target)
        else:
            result = await hooks.log_fax(ctx, event=event, target=target)
    except SkipEvent as skip:
        return skipped(skip.reason, skip.message)
    # 6. The outcome.
    return await _logged(ctx, result)


def _apply_policy(matches: list[Contact], policy: SeveralMatches, hooks: Hooks) -> list[Contact]:
    if len(matches) <= 1:
        return matches
    if policy == SeveralMatches.ASK:
        return []
    if policy == SeveralMatches.ALL and hooks.supports(Capability.MULTI_CONTACT_LINK):
        return sorted(matches, key=lambda c: _id_key(c.id))
    return [most_recent(matches)]


async def _update(job: Job, earlier: tuple[Record, ...], name: str) -> Outcome:
    hooks, ctx = job.hooks, job.ctx
    if not hooks.supports(Capability.LATE_DETAILS):
        return Outcome(status=OutcomeStatus.LOGGED, records=earlier, reason="update_unsupported",
                       message=f"Logged; {name} takes no updates, so late details were not added.")
    result = await hooks.update_log(ctx, event=job.event, records=list(earlier))
    return await _logged(ctx, result)


async def _logged(ctx: HookContext, result: LogResult) -> Outcome:
    if ctx.delivery is not None:
        known = {(r.kind, r.step) for r in ctx.delivery.records}
        for record in result.records:
            if (record.kind, record.step) not in known:
                await ctx.delivery.remember(record)
    status = OutcomeStatus.ACCEPTED if result.status == LogStatus.ACCEPTED else OutcomeStatus.LOGGED
    reason = "document_missing" if result.note == "document missing" else None
    message = f"Logged, {result.note}." if result.note else None
    return Outcome(status=status, records=result.records, reason=reason, message=message)


def backoff(attempt: int, *, base: float = 4.0, cap: float = 3600.0) -> float:
    """Seconds before retry ``attempt`` + 1: exponential with full jitter."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


def outcome_for_error(exc: BaseException, *, attempt: int, max_attempts: int,
                      now: datetime | None = None) -> Outcome:
    """SPEC §2 step 6: a hook's exception as a failed outcome, retried while a retry can help."""
    now = now or datetime.now(UTC)
    message = describe_error(exc)  # never the input values a pydantic error quotes
    if isinstance(exc, SkipEvent):
        return skipped(exc.reason, exc.message)
    if isinstance(exc, AuthenticationFailed):
        return Outcome(status=OutcomeStatus.FAILED, reason=exc.code, retryable=False,
                       message=message + " (re-authorise with `callbridge auth`)")
    if isinstance(exc, AppError) and not exc.retryable:
        return Outcome(status=OutcomeStatus.FAILED, reason=exc.code, retryable=False, message=message)
    reason = exc.code if isinstance(exc, AppError) else "error"
    if attempt >= max_attempts:
        return Outcome(status=OutcomeStatus.FAILED, reason=reason, retryable=False,
                       message=f"gave up after {attempt} attempts: {message}")
    wait = backoff(attempt)
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        wait = max(exc.retry_after, 0.0)
    return Outcome(status=OutcomeStatus.FAILED, reason=reason, retryable=True, message=message,
                   next_attempt_at=now + timedelta(seconds=wait))
