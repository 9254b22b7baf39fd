"""The hook specifications: the whole API between the host and an app's plugin.

Each docstring here *is* the reference (docs/hooks.md is checked against it).

Rules for every hook:

* The first argument is ``ctx`` (:class:`~callbridge.context.HookContext`).
* An implementation may be ``async def`` or a plain function; a plain function
  runs in a worker thread and uses ``ctx.sync`` for HTTP and host services.
* An implementation may take fewer arguments than the spec (call by name), so
  hooks can grow new arguments without breaking older plugins.
* The host calls a hook only if the plugin's declaration lists a capability
  that needs it (:data:`callbridge.capabilities.REQUIRED_HOOKS`), and only for
  the app the event is being logged to.
* Failures are raised, never returned, as the host's exceptions
  (:mod:`callbridge.errors`): :class:`AuthenticationFailed`,
  :class:`RateLimited` (with ``retry_after``), :class:`NotFound`,
  :class:`TransientError` (retried), :class:`PermanentError`. The HTTP client in
  ``ctx.http`` already raises these for the app's answers. A log hook raises
  :class:`SkipEvent` when the app cannot hold the event. Anything else counts as
  a transient failure of that app alone.

Each routed hook is declared once, here, with the capabilities that need it
and its return type (:data:`SPECS`): the host's routing, the load-time checks
(:data:`callbridge.capabilities.REQUIRED_HOOKS`), the facade's result checks,
the capability table of the guide and the contract kit's skips all derive
from it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_type_hints

import pluggy

from callbridge.capabilities import Capability, Connection, Declaration
from callbridge.results import Check, checker, describe

if TYPE_CHECKING:  # the hooks' argument and return types; read by _table() on first use of SPECS
    from callbridge.context import HookContext
    from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
    from callbridge.models import (
        AppRequest,
        AppSubscription,
        AppUser,
        BatchItem,
        BatchResult,
        ChangedContacts,
        ClientContact,
        ClosedMatter,
        ClosedMatterPage,
        Contact,
        LogResult,
        LogTarget,
        Matter,
        MatterChanged,
        Record,
        WriteConfirmed,
        WriteFailed,
    )

PROJECT = "callbridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HookSpec:
    """One routed hook: the capabilities that need it and what it returns.

    ``exempt`` is a reason the hook has, for now, no call site in the host or
    no case in the contract kit (the coverage test accepts it only with one).
    """

    name: str
    capabilities: frozenset[Capability]
    returns: Any
    since: str
    exempt: str | None = None

    def accepts(self, value: object) -> bool:
        """Whether ``value`` is of the spec's return type."""
        return self._check(value)

    @functools.cached_property
    def _check(self) -> Check:
        return checker(self.returns)

    @property
    def expected(self) -> str:
        """The return type in words, for error messages."""
        return describe(self.returns)


_ROUTED: list[tuple[Callable[..., Any], frozenset[Capability], str, str | None]] = []


def _routed(*capabilities: Capability, since: str = "1.0",
            exempt: str | None = None) -> Callable[[F], F]:
    """Mark a routed hook spec: one app's plugin answers it, if a capability needs it."""

    def mark(fn: F) -> F:
        _ROUTED.append((fn, frozenset(capabilities), since, exempt))
        marked: F = hookspec(firstresult=True)(fn)
        return marked

    return mark


@hookspec(firstresult=True)
def declare() -> Declaration:  # type: ignore[empty-body]
    """Say who the plugin is and what it supports.

    Returns:
        A :class:`~callbridge.capabilities.Declaration`: the app's ``name`` (its
        key in settings), the plugin's ``version``, the ``hook_api_version`` it
        was built for, its ``capabilities``, its ``settings_model`` (validated
        against each app's ``options``) and its ``rate_limits``.

    Called once at load, with no context. The host refuses the plugin if the
    capabilities and the implemented hooks disagree, or if the hook API version
    is not compatible (same major; minor not above the host's).

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
def connection(options: object) -> Connection:  # type: ignore[empty-body]
    """How to reach the app for one connection's options (e.g. its region).

    Args:
        options: the plugin's validated settings model instance, or None.

    Returns:
        A :class:`~callbridge.capabilities.Connection`: the API base URL, the
        kind of credentials (none, API key, bearer token, OAuth 2.0 with its
        endpoints) and default headers. The host builds ``ctx.http`` from it;
        secrets come from the environment, never from here.

    .. versionadded:: 1.0
    """


@_routed(Capability.CONTACT_SEARCH_PHONE, Capability.CONTACT_SEARCH_EMAIL)
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:  # type: ignore[empty-body]
    """Find the app's contacts for the external party, by phone and/or email.

    Args:
        ctx: the context.
        party: the external party; ``party.e164`` is its number in E.164 and
            ``party.email`` its email when the event has one. Withheld callers
            and short codes never reach this hook.

    Returns:
        Every contact whose stored number reads as ``party.e164`` (or whose
        email equals ``party.email``), each with its stored ``phones`` and
        ``updated_at``; an empty list when none match. Never create a contact
        here. The host re-checks every candidate's numbers in E.164 and applies
        the several-matches policy itself.

    Raises:
        AuthenticationFailed, RateLimited, TransientError, PermanentError.

    .. versionadded:: 1.0
    """


@_routed(Capability.CONTACT_CREATION)
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:  # type: ignore[empty-body]
    """Create a contact for the party, with ``name`` and the party's number.

    Args:
        ctx: the context; ``ctx.delivery`` is set. The host remembers the
            returned contact (kind ``"contact"``, step ``"create_contact"``)
            and does not call this hook again for the same delivery.
        party: the external party (``party.e164`` is set).
        name: the caller-ID name when it names someone, else the app's
            placeholder name.

    Returns:
        The created contact. If the app may have created one on an earlier
        attempt whose answer was lost (``ctx.delivery.attempt > 1``), look for
        it first (contacts created since ``ctx.delivery.first_attempt_at`` with
        this number) and return it instead of creating a second one.

    .. versionadded:: 1.0
    """


@_routed(Capability.MATTERS)
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:  # type: ignore[empty-body]
    """The contact's open matters (cases, projects).

    Returns:
        Every matter that counts as open and where the contact has a role that
        counts (the plugin's docs say which statuses and roles). The host links
        the log to a matter only when exactly one is returned.

    .. versionadded:: 1.0
    """


@_routed(Capability.USERS)
async def find_user(ctx: HookContext, email: str | None, extension: str | None) -> AppUser | None:
    """The app's user for the firm's staff member on the event.

    Args:
        email: the internal user's email (from the event or the tenant's
            extension map), or None.
        extension: the internal user's extension, or None.

    Returns:
        The matching user, or None (the host then calls ``pick_default_user``).

    .. versionadded:: 1.0
    """


@_routed(Capability.USERS)
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The user to act as when no user matches the event's internal user.

    Returns:
        The app's default user (its docs say how it is chosen: e.g. the user who
        authorised the connection, or the first user by a stated sort key).

    .. versionadded:: 1.0
    """


@_routed(Capability.ACTIVITY_CODES)
async def ensure_activity_code(ctx: HookContext, label: str) -> str:  # type: ignore[empty-body]
    """Make sure the activity code that marks callbridge's entries exists.

    The host calls it once per (tenant, app), before the first log, and keeps
    the answer in ``ctx.cache``; ``label`` is the app's ``activity_code_label``
    setting. Find the code by ``label``; create it only if missing; never
    create a second one: hold ``ctx.lock("activity_code")`` while checking and
    creating.

    Returns:
        An opaque reference to the code (its id, or whatever the log hooks
        need), passed back in every :class:`~callbridge.models.LogTarget` as
        ``activity_code``. A log hook that finds the reference no longer valid
        raises :class:`~callbridge.errors.UnknownActivityCode`: the host drops
        the cached reference, calls this hook again and retries the log once.

    .. versionchanged:: 2.0
       Called by the host; the result is an opaque reference.

    .. versionadded:: 1.0
    """


@_routed(Capability.CALLS)
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write a call into the app.

    Args:
        ctx: the context; ``ctx.delivery`` holds the records earlier attempts
            wrote. Write each record through
            ``await ctx.delivery.step(kind, key, create=..., find=...)``: the
            host returns the record an earlier attempt kept, else runs
            ``find`` when an earlier attempt may have written it without
            keeping the answer, else runs ``create`` and keeps its id at once.
        event: the call.
        target: the contacts, matter and user chosen by the host, the
            activity code's reference, and notes that override the event's
            (delayed and manual logging). ``contacts`` is empty when no
            contact matched and none was created; the host then calls this
            hook only if the declaration's ``without_contact`` holds the
            event's kind, and skips the event otherwise.

    Returns:
        A :class:`~callbridge.models.LogResult` with every record written.

    Duplicates: ``find`` looks the record up by ``ctx.delivery.marker`` (put
    it on every record where the app lets you); the plugin's docs state the
    guarantee that remains where it does not. A retry after a lost answer runs
    no sooner than the declaration's ``consistency_delay`` after the first
    attempt, so the app's lookups see what it wrote.

    Raises:
        SkipEvent when the app cannot hold this call; the app errors above.

    .. versionadded:: 1.0
    """


@_routed(Capability.SMS)
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write an SMS into the app. As :func:`log_call`.

    .. versionadded:: 1.0
    """


@_routed(Capability.FAX)
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write a fax into the app, with its document where the app holds files.

    As :func:`log_call`. Read the document with
    ``await ctx.documents.fetch(event.document)``, never from its URL
    yourself. If the upload fails after retries while the log entry was
    written, return ``LogResult(records=..., missing=("document",))``.

    .. versionadded:: 1.0
    """


@_routed(Capability.LATE_DETAILS)
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,  # type: ignore[empty-body]
                     records: list[Record]) -> LogResult:
    """Update a written log in place with late details (recording, transcript, summary).

    Args:
        event: the newest revision of the event.
        records: what the earlier log wrote.

    Returns:
        The records as they now stand. Never write a second log.

    .. versionadded:: 1.0
    """


@_routed(Capability.BATCH_WRITES, since="2.0")
async def log_batch(ctx: HookContext, kind: Literal["call", "sms", "fax"],  # type: ignore[empty-body]
                    items: list[BatchItem]) -> list[BatchResult]:
    """Write several events of one kind in one request, where the app has a batch API.

    The host hands up to ``Declaration.batch_size`` due deliveries of one
    connection at once, instead of one ``log_<kind>`` call each.

    Args:
        kind: ``"call"``, ``"sms"`` or ``"fax"``; every item is of this kind.
        items: each :class:`~callbridge.models.BatchItem` holds an event, its
            target and its own delivery (``item.delivery``: records, marker,
            attempt, step); keep each written record with that delivery.

    Returns:
        One :class:`~callbridge.models.BatchResult` per item, in the items'
        order: ``ok`` with the item's LogResult, or ``error`` with the
        :class:`~callbridge.errors.AppError` that item met. Raise only when
        the whole batch failed (every item then shares the outcome).

    Duplicates: when an earlier batch's answer was lost, find the items it
    wrote by their markers first and create only the rest.

    .. versionadded:: 2.0
    """


@_routed(Capability.ASYNC_WRITES, since="2.0")
async def confirm_accepted(ctx: HookContext, records: list[Record],  # type: ignore[empty-body]
                           since: datetime) -> dict[str, bool | None]:
    """Check whether writes the app accepted for later processing were done.

    For apps that answer a write with "accepted" (the log hook returned a
    LogResult with status ``accepted``); the host checks again later.

    Args:
        records: the accepted records to check.
        since: when the oldest of them was accepted.

    Returns:
        For each record's ``id``: True when the app holds it now, False when
        the app refused or lost it (the host writes it again), None when still
        unknown (the host asks again later).

    .. versionadded:: 2.0
    """


@_routed(Capability.APP_EVENTS, since="2.1")
async def subscribe_app_events(ctx: HookContext, url: str) -> AppSubscription:  # type: ignore[empty-body]
    """Ask the app to send its events for this connection to ``url``.

    The host calls it once per (tenant, app) when ``callbridge serve`` runs with
    a public URL and no subscription is kept, and again when
    :func:`renew_app_events` finds the subscription gone.

    Args:
        url: the host's callback URL for this tenant and app
            (``{public URL}/v1/apps/{tenant}/{app}/events``).

    Returns:
        The :class:`~callbridge.models.AppSubscription`: the app's id for it,
        when it expires (None if it does not), and the secret the app signs its
        requests with. When the app takes a key from the subscriber, make one
        (``secrets.token_hex(32)``) and return it; when the app gives one,
        return the app's. Subscribe to the events :func:`parse_app_event` reads
        and no others. The host keeps the subscription in the ledger, encrypted.

    .. versionadded:: 2.1
    """


@_routed(Capability.APP_EVENTS, since="2.1")
async def renew_app_events(ctx: HookContext, subscription: AppSubscription,  # type: ignore[empty-body]
                           url: str) -> AppSubscription:
    """Keep the subscription standing: extend it before it expires, or make it again.

    The host calls it ahead of ``subscription.expires_at`` (a day before, or
    halfway through a shorter life), and once a day for a subscription that
    does not expire, since an app may drop one (e.g. when the connection's
    authorisation ends).

    Returns:
        The subscription as it now stands: the same one with its new expiry, or
        a new one when the app no longer had it (subscribe again to ``url``).

    .. versionadded:: 2.1
    """


@_routed(Capability.APP_EVENTS, since="2.1")
async def verify_app_event(ctx: HookContext, request: AppRequest,
                           subscription: AppSubscription) -> None:
    """Check that ``request`` comes from the app: its signature, and its age where signed.

    Compare signatures in constant time (``hmac.compare_digest``) with
    ``subscription.secret``; refuse a signed timestamp far from
    ``request.received_at`` (a replay). Read nothing but the request: no
    network here.

    Raises:
        AppEventRefused: with the problem in words ("the signature does not
            match"), never a value from the request. The host answers 401 and
            keeps the request in the quarantine; it is never parsed.

    .. versionadded:: 2.1
    """


@_routed(Capability.APP_EVENTS, since="2.1")
async def parse_app_event(ctx: HookContext, request: AppRequest,  # type: ignore[empty-body]
                          subscription: AppSubscription
                          ) -> list[WriteConfirmed | WriteFailed | MatterChanged]:
    """What a verified request means for the host.

    Returns:
        A list (often of one item; empty for a request that concerns nothing
        the host wrote or follows):

        * :class:`~callbridge.models.WriteConfirmed`: a write a log hook
          returned as ``accepted`` is done. Identify it by the marker the write
          carried (``ctx.delivery.marker`` at the time: put it in whatever the
          app echoes back, such as a request id header) and the record's kind.
          The host settles the delivery *logged* once all its records are
          confirmed, without waiting for :func:`confirm_accepted`.
        * :class:`~callbridge.models.WriteFailed`: such a write failed; the host
          drops the delivery's records and retries it, and the retry looks the
          record up by its marker (``find``) before creating it again.
        * :class:`~callbridge.models.MatterChanged`: a matter changed (the
          closed-matter sync reads it).

        The same request may arrive twice, and requests out of order: the host
        makes a repeat change nothing. Requests about records the host did not
        write give an empty list.

    .. versionadded:: 2.1
    """


@_routed(Capability.CONTACTS_CHANGED)
async def contacts_changed_since(ctx: HookContext, since: datetime | None,  # type: ignore[empty-body]
                                 cursor: str | None) -> ChangedContacts:
    """One page of contacts created or changed since ``since`` (None: all).

    Feeds the host's phone index. The host calls it at low priority inside the
    app's rate limit, follows ``cursor`` to the end, and stores ``high_water``.

    .. versionadded:: 1.0
    """


@_routed(Capability.CLOSED_MATTER_EVENTS)
async def closed_matters_since(ctx: HookContext, position: str | None, since: datetime,  # type: ignore[empty-body]
                               contact_fields: list[str],
                               matter_fields: list[str]) -> ClosedMatterPage:
    """One page of matters closed since a position, with their clients (closed-matter sync).

    Args:
        ctx: the context (no delivery: this is a read).
        position: what the last page returned as ``position`` (the host keeps it
            in the ledger); None on the first call for the firm.
        since: where to start when ``position`` is None: the moment the firm's
            sync began. Never report a matter closed before it.
        contact_fields: custom fields of the client contact whose values to
            return, by exact, case-sensitive name.
        matter_fields: custom fields of the matter, likewise.

    Returns:
        A :class:`~callbridge.models.ClosedMatterPage`: the matters whose status
        became closed since the position (each with its close date, its client's
        name, email and numbers, and the asked fields' values: a checkbox as
        True/False, a field left unset as None), the next ``position``, ``more``
        when another page is ready now, and ``fields``: the definition of every
        asked field (``field_type`` None when the app has no field of exactly that
        name). The host checks the definitions, applies the firm's triggers and
        sends each client once per closed matter, so a matter returned again (a
        page read twice after a restart) is harmless; a matter must never be
        missed. Return the fields' definitions even when no matter closed.

    .. versionchanged:: 2.0
       Typed: a page with a position, the client and the custom fields' values
       and definitions.

    .. versionadded:: 1.0
    """


@_routed(Capability.CLOSED_MATTER_DESTINATION)
async def send_closed_matter(ctx: HookContext, client: ClientContact,  # type: ignore[empty-body]
                             matter: ClosedMatter) -> Record:
    """Send a closed matter's client to a destination platform (a review or marketing tool).

    Args:
        ctx: the context; ``ctx.delivery`` is this send's: ``ctx.delivery.marker``
            is its idempotency id (the same on every attempt; send it where the
            platform lets you, so it drops a repeat after a lost answer), and
            ``ctx.delivery.step`` keeps what was made.
        client: the client to send (``matter.client``).
        matter: the closed matter, for context (its id, name and close date).

    Returns:
        The record made on the platform (kind and id; for a webhook, its
        delivery id). Raise :class:`~callbridge.errors.TransientError` for a
        failure worth retrying (the host retries with backoff until its
        deadline), :class:`~callbridge.errors.PermanentError` for one that is not.

    .. versionchanged:: 2.0
       Typed: the client and its matter as models, the idempotency id in
       ``ctx.delivery.marker``.

    .. versionadded:: 1.0
    """


# --- observer hooks: every plugin that implements them sees every call --------


@hookspec
def hook_called(tenant: str, app: str, hook: str, seconds: float, error: str | None) -> None:
    """Observe a hook call after it finished (timing, audit, tracing).

    Args:
        tenant, app: whose call it was.
        hook: the hook's name.
        seconds: how long the awaited call took.
        error: the exception's class name, or None on success.

    Plain functions only; keep them quick. Exceptions raised here are logged
    and ignored.

    .. versionadded:: 1.0
    """


def _table() -> dict[str, HookSpec]:
    # The return types name the host's models: imported here, when the table is first
    # read, so that loading the specs (every plugin does) loads neither the models nor
    # the HTTP client the context brings.
    from callbridge import context, events, models

    hints_ns = {**vars(models), **vars(events), "HookContext": context.HookContext, **globals()}
    out = {}
    for fn, capabilities, since, exempt in _ROUTED:
        returns = get_type_hints(fn, globalns=hints_ns)["return"]
        out[fn.__name__] = HookSpec(fn.__name__, capabilities, returns, since, exempt)
    return out


if TYPE_CHECKING:
    #: Every routed hook, in reference order: the one list the host, the loader,
    #: the facade, the docs and the kit read (built on first use, see __getattr__).
    SPECS: dict[str, HookSpec]


def __getattr__(name: str) -> Any:
    """:data:`SPECS`, built on first use (its return types need the host's models)."""
    if name != "SPECS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    specs = _table()
    globals()["SPECS"] = specs
    return specs


#: Hooks routed to exactly one app's plugin (the names of :data:`SPECS`), in reference order.
ROUTED_HOOKS: tuple[str, ...] = tuple(fn.__name__ for fn, *_ in _ROUTED)
#: Hooks every plugin may implement without a capability.
FREE_HOOKS = ("declare", "connection", "hook_called")
#: Every hook name, for "did you mean" hints.
ALL_HOOKS: tuple[str, ...] = (*FREE_HOOKS, *ROUTED_HOOKS)


def hooks_needing(capability: Capability) -> frozenset[str]:
    """The routed hooks a declared capability obliges a plugin to implement."""
    return frozenset(fn.__name__ for fn, capabilities, *_ in _ROUTED if capability in capabilities)
