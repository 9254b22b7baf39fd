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
"""

from __future__ import annotations

from datetime import datetime

import pluggy

from callbridge.capabilities import Connection, Declaration
from callbridge.context import HookContext
from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
from callbridge.models import (
    AppUser,
    ChangedContacts,
    Contact,
    LogResult,
    LogTarget,
    Matter,
    Record,
)

PROJECT = "callbridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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


@hookspec(firstresult=True)
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

    Capability: ``contact_search_phone`` (and ``contact_search_email``).

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:  # type: ignore[empty-body]
    """Create a contact for the party, with ``name`` and the party's number.

    Args:
        ctx: the context; ``ctx.delivery`` is set. A contact created by an
            earlier attempt of the same delivery is in ``ctx.delivery.records``
            (kind ``"contact"``) and the host does not call this hook again.
        party: the external party (``party.e164`` is set).
        name: the caller-ID name when it names someone, else the app's
            placeholder name.

    Returns:
        The created contact. If the app may have created one on an earlier
        attempt that timed out, look for it first (contacts created since
        ``ctx.delivery.first_attempt_at`` with this number) and return it.

    Capability: ``contact_creation``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:  # type: ignore[empty-body]
    """The contact's open matters (cases, projects).

    Returns:
        Every matter that counts as open and where the contact has a role that
        counts (the plugin's docs say which statuses and roles). The host links
        the log to a matter only when exactly one is returned.

    Capability: ``matters``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def find_user(ctx: HookContext, email: str | None, extension: str | None) -> AppUser | None:
    """The app's user for the firm's staff member on the event.

    Args:
        email: the internal user's email (from the event or the tenant's
            extension map), or None.
        extension: the internal user's extension, or None.

    Returns:
        The matching user, or None (the host then calls ``pick_default_user``).

    Capability: ``users``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The user to act as when no user matches the event's internal user.

    Returns:
        The app's default user (its docs say how it is chosen: e.g. the user who
        authorised the connection, or the first user by a stated sort key).

    Capability: ``users``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def ensure_activity_code(ctx: HookContext, label: str) -> str:  # type: ignore[empty-body]
    """Make sure the activity code that marks callbridge's entries exists.

    Find it by ``label``; create it only if missing; never create a second one.
    Hold ``ctx.lock("activity_code")`` while checking and creating.

    Returns:
        The code's id in the app.

    Capability: ``activity_codes``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write a call into the app.

    Args:
        ctx: the context; ``ctx.delivery`` holds the records earlier attempts
            wrote. Call ``await ctx.delivery.remember(record)`` after creating
            each record, so a retry resumes instead of writing it again.
        event: the call.
        target: the contacts, matter and user chosen by the host, and notes
            that override the event's (delayed and manual logging).

    Returns:
        A :class:`~callbridge.models.LogResult` with every record written.

    Duplicates: before creating a record, look for one carrying
    ``event.marker`` where the app lets you; the plugin's docs state the
    guarantee that remains where it does not.

    Raises:
        SkipEvent when the app cannot hold this call; the app errors above.

    Capability: ``calls``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write an SMS into the app. As :func:`log_call`.

    Capability: ``sms``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:  # type: ignore[empty-body]
    """Write a fax into the app, with its document where the app holds files.

    As :func:`log_call`. If the document upload fails after retries while the
    log entry was written, return ``LogResult(..., note="document missing")``.

    Capability: ``fax``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,  # type: ignore[empty-body]
                     records: list[Record]) -> LogResult:
    """Update a written log in place with late details (recording, transcript, summary).

    Args:
        event: the newest revision of the event.
        records: what the earlier log wrote.

    Returns:
        The records as they now stand. Never write a second log.

    Capability: ``late_details``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def contacts_changed_since(ctx: HookContext, since: datetime | None,  # type: ignore[empty-body]
                                 cursor: str | None) -> ChangedContacts:
    """One page of contacts created or changed since ``since`` (None: all).

    Feeds the host's phone index. The host calls it at low priority inside the
    app's rate limit, follows ``cursor`` to the end, and stores ``high_water``.

    Capability: ``contacts_changed``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def closed_matters_since(ctx: HookContext, since: datetime | None) -> list[dict[str, object]]:  # type: ignore[empty-body]
    """Matters closed since ``since``, with their client and custom-field values.

    Capability: ``closed_matter_events``.

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
async def send_closed_matter(ctx: HookContext, client: dict[str, object]) -> Record:  # type: ignore[empty-body]
    """Send a closed matter's client to a destination platform.

    Capability: ``closed_matter_destination``.

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


#: Hooks routed to exactly one app's plugin.
ROUTED_HOOKS = (
    "find_contact", "create_contact", "find_matters", "find_user", "pick_default_user",
    "ensure_activity_code", "log_call", "log_sms", "log_fax", "update_log",
    "contacts_changed_since", "closed_matters_since", "send_closed_matter",
)
#: Hooks every plugin may implement without a capability.
FREE_HOOKS = ("declare", "connection", "hook_called")
