"""SPEC §2: one event and one connected app -> one :class:`Outcome`.

The pipeline is a list of small steps over one typed :class:`State`. Each step
reads and fills the state, or ends the run with an outcome:

1. :func:`can_hold` — the app can hold this kind of event (and fax logging is on);
2. :func:`not_internal` — calls between the firm's own numbers are skipped;
3. :func:`match_contacts` — the index or a live search, then the several-matches policy;
4. :func:`create_contact` — by the app's creation policy, serialised per number;
5. :func:`exclusive_association` — no contact: skipped where the settings or the app say so;
6. :func:`find_matter` — exactly one open matter across the contacts;
7. :func:`find_user` — by email, then extension, else the app's default user;
8. :func:`activity_code` — ensured once per (tenant, app), through ``ctx.cache``;
9. :func:`write_log` — the log hook, retried once after ``UnknownActivityCode``.

A delivery asking for an update (a late detail of a logged event) runs
:func:`update_log` instead. Exceptions from hooks are left to the worker, which
turns them into outcomes (:mod:`callbridge.outcomes`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from callbridge.capabilities import Capability
from callbridge.context import HookContext, find_record
from callbridge.errors import SkipEvent, UnknownActivityCode
from callbridge.events import (
    AnyEvent,
    CallEvent,
    CallOutcome,
    Direction,
    ExternalParty,
    FaxEvent,
    PartyKind,
    SmsEvent,
)
from callbridge.facade import Hooks
from callbridge.models import (
    AppUser,
    Contact,
    LogResult,
    LogStatus,
    LogTarget,
    Matter,
    Outcome,
    OutcomeStatus,
    Record,
)
from callbridge.outcomes import backoff, outcome_for_error
from callbridge.settings import EventType, SeveralMatches

__all__ = ["STEPS", "Directory", "Job", "State", "backoff", "outcome_for_error", "run"]

KIND_CAPABILITY = {"call": Capability.CALLS, "sms": Capability.SMS, "fax": Capability.FAX}
#: How long an ensured activity code is trusted before it is ensured again.
ACTIVITY_CODE_TTL = 24 * 3600.0


class Directory(Protocol):
    """Where the pipeline finds contacts and notes the ones it created (the phone index)."""

    async def lookup(self, ctx: HookContext, hooks: Hooks, party: ExternalParty, *,
                     confirm_miss: bool = True) -> list[Contact]: ...
    async def add(self, ctx: HookContext, hooks: Hooks, contact: Contact) -> None: ...
    async def created_for(self, ctx: HookContext, e164: str) -> list[str]: ...
    async def note_created(self, ctx: HookContext, e164: str, contact_id: str) -> None: ...


@dataclass(frozen=True)
class Job:
    """What the pipeline needs besides the event: the delivery's state and choices."""

    event: AnyEvent
    hooks: Hooks
    ctx: HookContext
    chosen_contact_ids: tuple[str, ...] | None = None
    notes: str | None = None
    needs_update: bool = False


@dataclass
class State:
    """What the steps have found so far for one event and one app."""

    job: Job
    directory: Directory
    #: Where the log goes instead of ``log_<kind>`` (the batch work unit), if set.
    writer: Callable[[State], Awaitable[LogResult]] | None = None
    contacts: list[Contact] = field(default_factory=list)
    matches: list[Contact] = field(default_factory=list)
    matter: Matter | None = None
    user: AppUser | None = None
    activity_code: str | None = None

    @property
    def event(self) -> AnyEvent:
        return self.job.event

    @property
    def hooks(self) -> Hooks:
        return self.job.hooks

    @property
    def ctx(self) -> HookContext:
        return self.job.ctx

    @property
    def name(self) -> str:
        return self.hooks.declaration.title or self.hooks.declaration.name

    @property
    def earlier(self) -> tuple[Record, ...]:
        return self.ctx.delivery.records if self.ctx.delivery else ()

    def target(self) -> LogTarget:
        return LogTarget(contacts=tuple(self.contacts), matter=self.matter, user=self.user,
                         notes=self.job.notes, activity_code=self.activity_code)


Step = Callable[[State], Awaitable[Outcome | None]]


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


def most_recent(contacts: Sequence[Contact]) -> Contact:
    """The contact updated last; ties (and unknown times) broken by id."""
    floor = datetime.min.replace(tzinfo=UTC)
    return max(contacts, key=lambda c: (c.updated_at or floor, _id_key(c.id)))


def _id_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


def logs_without_contact(hooks: Hooks, kind: str) -> bool:  # the app holds a ``kind`` with no contact
    return hooks.logs_without_contact(kind)


def apply_policy(matches: Sequence[Contact], policy: SeveralMatches, hooks: Hooks) -> list[Contact]:
    """The contacts to log to among ``matches`` (none under ``ask`` with several)."""
    if len(matches) <= 1:
        return list(matches)
    if policy == SeveralMatches.ASK:
        return []
    if policy == SeveralMatches.ALL and hooks.supports(Capability.MULTI_CONTACT_LINK):
        return sorted(matches, key=lambda c: _id_key(c.id))
    return [most_recent(matches)]


# --- the steps ------------------------------------------------------------------------


async def can_hold(s: State) -> Outcome | None:
    if not s.hooks.supports(KIND_CAPABILITY[s.event.kind]):
        return skipped("unsupported", f"{s.name} cannot hold {s.event.kind} events.")
    if isinstance(s.event, FaxEvent) and not s.ctx.settings.fax_logging:
        return skipped("fax_logging_off", f"Fax logging is off for {s.name}.")
    return None


async def not_internal(s: State) -> Outcome | None:
    if is_internal(s.event, s.ctx):
        return skipped("internal", "A call between the firm's own numbers or extensions.")
    return None


def _searchable(s: State) -> bool:
    return s.event.external.matchable and (
        s.hooks.supports(Capability.CONTACT_SEARCH_PHONE)
        or s.hooks.supports(Capability.CONTACT_SEARCH_EMAIL))


async def match_contacts(s: State) -> Outcome | None:
    if s.job.chosen_contact_ids is not None:  # a user's choice, named as a match would be
        known = {c.id: c for c in await s.directory.lookup(s.ctx, s.hooks, s.event.external, confirm_miss=False)} if _searchable(s) else {}
        s.contacts = [known.get(cid) or Contact(id=cid) for cid in s.job.chosen_contact_ids]
        return None
    if not _searchable(s):
        return None
    created = find_record(s.earlier, "contact", "create_contact")
    if created is not None:
        s.contacts = [Contact(id=created.id)]
        return None
    # A miss is worth confirming (a catch-up sync) only when a contact would be created.
    s.matches = await s.directory.lookup(s.ctx, s.hooks, s.event.external,
                                         confirm_miss=_would_create(s))
    return _choose(s)


def _choose(s: State) -> Outcome | None:
    s.contacts = apply_policy(s.matches, s.ctx.settings.several_matches, s.hooks)
    if len(s.matches) > 1 and not s.contacts:
        return Outcome(status=OutcomeStatus.UNRESOLVED, reason="several_contacts",
                       message=f"{len(s.matches)} contacts in {s.name} share this number; "
                               "a user must choose.",
                       candidates=tuple(s.matches))
    return None


def _would_create(s: State) -> bool:
    return (s.job.chosen_contact_ids is None and s.event.external.matchable
            and s.hooks.supports(Capability.CONTACT_CREATION)
            and s.ctx.settings.admits(event_types(s.event)))


async def create_contact(s: State) -> Outcome | None:
    party = s.event.external
    if s.contacts or not _would_create(s):
        return None
    if party.e164 is None:  # matchable by email only: nothing to serialise on
        return await _create(s)
    # One creation at a time per number; inside, a second look: the contacts the
    # host remembers creating for it (an app may not show them in a search yet),
    # then, if another holder had the lock first, the app.
    async with s.ctx.lock(f"contact:{party.e164}") as held:
        remembered = await s.directory.created_for(s.ctx, party.e164)
        if remembered:
            s.contacts = [Contact(id=remembered[-1])]
            return None
        if getattr(held, "waited", True):
            s.matches = await s.directory.lookup(s.ctx, s.hooks, party)
            if s.matches:
                return _choose(s)
        return await _create(s)


async def _create(s: State) -> Outcome | None:
    party = s.event.external
    contact = await s.hooks.create_contact(
        s.ctx, party=party, name=party.display_name or s.ctx.settings.placeholder_name)
    if s.ctx.delivery is not None:
        await s.ctx.delivery.remember(Record(kind="contact", id=contact.id, step="create_contact"))
    if party.e164 is not None:
        await s.directory.note_created(s.ctx, party.e164, contact.id)
    await s.directory.add(s.ctx, s.hooks, contact)
    s.contacts = [contact]
    return None


async def exclusive_association(s: State) -> Outcome | None:
    if s.contacts:
        return None
    party = s.event.external
    if s.ctx.settings.exclusive_contact_association:
        why = ("the party is withheld or a short code" if not party.matchable
               else "no contact matched and none was created")
        return skipped("no_contact", f"Skipped: no contact ({why}); exclusive contact association is on.")
    if not party.matchable and not logs_without_contact(s.hooks, s.event.kind):
        return skipped("no_contact", f"Skipped: no contact (the party is withheld or a short code) "
                                     f"and {s.name} cannot log without one.")
    return None


async def find_matter(s: State) -> Outcome | None:
    if not (s.contacts and s.ctx.settings.matter_association
            and s.hooks.supports(Capability.MATTERS)):
        return None
    found: dict[str, Matter] = {}
    for contact in s.contacts:
        for m in await s.hooks.find_matters(s.ctx, contact=contact):
            found.setdefault(m.id, m)
    if len(found) == 1:
        s.matter = next(iter(found.values()))
    return None


async def find_user(s: State) -> Outcome | None:
    if not s.hooks.supports(Capability.USERS):
        return None
    internal = s.event.internal
    email = internal.email
    if email is None and internal.extension:
        email = s.ctx.tenant.extensions.get(internal.extension)
    s.user = await s.hooks.find_user(s.ctx, email=email, extension=internal.extension)
    if s.user is None:
        s.user = await s.hooks.pick_default_user(s.ctx)
    return None


def _code_key(s: State) -> str:
    return f"activity_code:{s.ctx.settings.activity_code_label}"


async def activity_code(s: State) -> Outcome | None:
    if not s.hooks.supports(Capability.ACTIVITY_CODES):
        return None
    label = s.ctx.settings.activity_code_label

    async def ensure() -> str:
        return await s.hooks.ensure_activity_code(s.ctx, label=label)

    cache = s.ctx.cache
    code = await (ensure() if cache is None else
                  cache.get_or_load(_code_key(s), ensure, ttl=ACTIVITY_CODE_TTL))
    s.activity_code = str(code)
    return None


async def write_log(s: State) -> Outcome | None:
    try:
        try:
            result = await _log(s)
        except UnknownActivityCode:
            if s.activity_code is None:
                raise
            # The app lost the code (deleted, renamed): ensure it again, once.
            if s.ctx.cache is not None:
                await s.ctx.cache.invalidate(_code_key(s))
            await activity_code(s)
            result = await _log(s)
    except SkipEvent as skip:
        return skipped(skip.reason, skip.message)
    return await logged(s.ctx, result)


async def _log(s: State) -> LogResult:
    if s.writer is not None:
        return await s.writer(s)
    return await log_one(s)


async def log_one(s: State) -> LogResult:
    """The log hook of the event's kind, for this one event."""
    event, target = s.event, s.target()
    if isinstance(event, CallEvent):
        return await s.hooks.log_call(s.ctx, event=event, target=target)
    if isinstance(event, SmsEvent):
        return await s.hooks.log_sms(s.ctx, event=event, target=target)
    return await s.hooks.log_fax(s.ctx, event=event, target=target)


STEPS: tuple[Step, ...] = (can_hold, not_internal, match_contacts, create_contact,
                           exclusive_association, find_matter, find_user, activity_code, write_log)


async def run(job: Job, directory: Directory, steps: Sequence[Step] = STEPS, *,
              writer: Callable[[State], Awaitable[LogResult]] | None = None) -> Outcome:
    """Run one event through the pipeline for one app (``writer``: see :class:`State`)."""
    state = State(job=job, directory=directory, writer=writer)
    if job.needs_update and state.earlier:
        for check in (can_hold, not_internal):
            if (early := await check(state)) is not None:
                return early
        return await update_log(state)
    for step in steps:
        outcome = await step(state)
        if outcome is not None:
            return outcome
    raise AssertionError("the pipeline ended without an outcome")  # write_log always returns


async def update_log(s: State) -> Outcome:
    """A late detail for a logged event: the app updates the log in place, where it can."""
    if not s.hooks.supports(Capability.LATE_DETAILS):
        return Outcome(status=OutcomeStatus.LOGGED, records=s.earlier, reason="update_unsupported",
                       message=f"Logged; {s.name} takes no updates, so late details were not added.")
    result = await s.hooks.update_log(s.ctx, event=s.event, records=list(s.earlier))
    return await logged(s.ctx, result)


async def logged(ctx: HookContext, result: LogResult) -> Outcome:
    """The outcome of a log hook's result; records it did not keep itself are kept now."""
    if ctx.delivery is not None:
        known = {(r.kind, r.step) for r in ctx.delivery.records}
        for record in result.records:
            if (record.kind, record.step) not in known:
                await ctx.delivery.remember(record)
    status = OutcomeStatus.ACCEPTED if result.status == LogStatus.ACCEPTED else OutcomeStatus.LOGGED
    missing = result.missing_parts
    if not missing:
        return Outcome(status=status, records=result.records)
    return Outcome(status=status, records=result.records, reason="_".join(missing) + "_missing",
                   message=f"Logged without: {', '.join(m.replace('_', ' ') for m in missing)}.")
