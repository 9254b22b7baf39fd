"""What a plugin declares: who it is, which hooks it implements, what it supports.

Capabilities are data. The host checks them against the implemented hooks at
load time (a mismatch blocks that plugin alone) and routes by them: an event
kind or step the app does not support gets a clear *skipped* outcome, and a
hook that is not declared is never called.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callbridge.buckets import RateBucket as RateBucket

#: The kinds of event a plugin may log.
EventKind = Literal["call", "sms", "fax"]
EVENT_KINDS: frozenset[EventKind] = frozenset({"call", "sms", "fax"})


class Capability(StrEnum):
    """Features a plugin may support. Each needs the hooks in :data:`REQUIRED_HOOKS`."""

    CALLS = "calls"
    SMS = "sms"
    FAX = "fax"
    CONTACT_SEARCH_PHONE = "contact_search_phone"
    CONTACT_SEARCH_EMAIL = "contact_search_email"
    CONTACT_CREATION = "contact_creation"
    CONTACTS_CHANGED = "contacts_changed"  # feeds the host's phone index
    MATTERS = "matters"
    ACTIVITY_CODES = "activity_codes"
    USERS = "users"
    LATE_DETAILS = "late_details"  # update a written log in place
    FILE_ATTACHMENTS = "file_attachments"
    CUSTOM_FIELDS = "custom_fields"
    CLOSED_MATTER_EVENTS = "closed_matter_events"
    CLOSED_MATTER_DESTINATION = "closed_matter_destination"
    #: Deprecated in 2.0: declare ``without_contact`` per event kind instead.
    #: Still accepted, meaning every kind.
    LOG_WITHOUT_CONTACT = "log_without_contact"
    MULTI_CONTACT_LINK = "multi_contact_link"  # one log linked to several contacts
    BATCH_WRITES = "batch_writes"  # several events of one kind in one request
    ASYNC_WRITES = "async_writes"  # the app accepts writes and does them later
    APP_EVENTS = "app_events"  # the app sends signed requests to the host (webhooks)


#: What each capability means, for the guide's table and ``callbridge plugins``.
CAPABILITY_HELP: dict[Capability, str] = {
    Capability.CALLS: "calls are written into the app",
    Capability.SMS: "SMS are written",
    Capability.FAX: "faxes are written (with the document where the app holds files)",
    Capability.CONTACT_SEARCH_PHONE: "contacts are found by phone number",
    Capability.CONTACT_SEARCH_EMAIL: "... and by e-mail (`party.email`)",
    Capability.CONTACT_CREATION: "the host may create a contact when its policy admits the event",
    Capability.CONTACTS_CHANGED: "feeds the host's phone index for apps whose phone search is "
                                 "unreliable",
    Capability.MATTERS: "a log may be linked to the contact's only open matter",
    Capability.ACTIVITY_CODES: "entries carry an activity code the plugin makes sure exists",
    Capability.USERS: "the firm's staff member is matched to an app user",
    Capability.LATE_DETAILS: "a recording or transcript arriving later updates the log in place",
    Capability.FILE_ATTACHMENTS: "`log_fax` uploads the document",
    Capability.CUSTOM_FIELDS: "the app has custom fields the host may read (closed-matter sync)",
    Capability.CLOSED_MATTER_EVENTS: "the app reports closed matters",
    Capability.CLOSED_MATTER_DESTINATION: "the plugin is a destination for closed-matter sync",
    Capability.LOG_WITHOUT_CONTACT: "deprecated in 2.0: the app accepts a log of any kind with "
                                    "no contact (declare `without_contact` instead)",
    Capability.MULTI_CONTACT_LINK: "one log can be linked to several contacts (the `all` policy)",
    Capability.BATCH_WRITES: "up to `batch_size` events of one kind are written in one request",
    Capability.ASYNC_WRITES: "the app accepts writes to do later; the host confirms them",
    Capability.APP_EVENTS: "the app sends the host signed requests (webhooks): accepted writes "
                           "confirmed or failed, matters changed",
}


class _RequiredHooks(Mapping[Capability, frozenset[str]]):
    """Capability → the hooks it obliges, read from the hook specs on first use."""

    def __init__(self) -> None:
        self._data: dict[Capability, frozenset[str]] | None = None

    def _table(self) -> dict[Capability, frozenset[str]]:
        if self._data is None:
            from callbridge.hookspecs import hooks_needing  # the specs import this module

            self._data = {cap: hooks_needing(cap) for cap in Capability}
        return self._data

    def __getitem__(self, capability: Capability) -> frozenset[str]:
        return self._table()[capability]

    def __iter__(self) -> Iterator[Capability]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: Hooks a capability needs, derived from :data:`callbridge.hookspecs.SPECS`. A
#: declared capability whose hooks are missing, or an implemented hook that no
#: declared capability needs, is a load error.
REQUIRED_HOOKS: Mapping[Capability, frozenset[str]] = _RequiredHooks()


class Declaration(BaseModel):
    """What :func:`callbridge.hookspecs.declare` returns."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the app's key in settings")
    title: str | None = None
    """The app's name for people (e.g. ``Clio``); the name is used when absent."""
    version: str
    """The plugin's version."""
    hook_api_version: str = Field(pattern=r"^\d+\.\d+$")
    """The hook API the plugin was built for (``major.minor``)."""
    capabilities: frozenset[Capability]
    """What the plugin supports; each capability obliges its hooks."""
    settings_model: type[BaseModel] | None = None
    """The pydantic model of the app's ``options``, handed to hooks as ``ctx.options``."""
    rate_limits: tuple[RateBucket, ...] = ()
    """The app's limits, so the host slows down before a 429 (a connection may give its own)."""
    without_contact: frozenset[EventKind] = Field(
        default=frozenset(),
        description="event kinds the app can log with no contact; for the others the host "
                    "skips an event that has none (the deprecated log_without_contact "
                    "capability means all kinds)")
    batch_size: int = Field(default=20, ge=1, le=1000,
                            description="the most items log_batch is given at once")
    consistency_delay: float = Field(
        default=0.0, ge=0, le=3600,
        description="seconds after a write before the app's lookups are sure to see it; a "
                    "retry after a lost answer waits at least this long, and this is the "
                    "window in which a duplicate could otherwise be written")
    confirm_after: float | None = Field(
        default=None, ge=0, le=3600,
        description="for async_writes: seconds after an accepted write before the host first "
                    "checks it (confirm_accepted); default: consistency_delay, or 120 s "
                    "when that is 0")
    confirm_timeout: float = Field(
        default=1800.0, gt=0, le=7 * 86400,
        description="for async_writes: seconds after an accepted write during which a record "
                    "not yet visible is checked again (with backoff); after that it counts as "
                    "missing and the delivery is retried")

    @model_validator(mode="after")
    def _without_contact_alias(self) -> Declaration:
        if Capability.LOG_WITHOUT_CONTACT in self.capabilities and \
                self.without_contact != EVENT_KINDS:
            object.__setattr__(self, "without_contact", EVENT_KINDS)
        return self

    @field_validator("settings_model")
    @classmethod
    def _is_model(cls, value: type[BaseModel] | None) -> type[BaseModel] | None:
        if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("must be a pydantic BaseModel subclass")
        return value

    def supports(self, capability: Capability) -> bool:
        """Whether the plugin declares ``capability``."""
        return capability in self.capabilities

    def logs_without_contact(self, kind: str) -> bool:
        """Whether the app can log an event of ``kind`` that has no contact."""
        return kind in self.without_contact

    def required_hooks(self) -> frozenset[str]:
        out: set[str] = set()
        for cap in self.capabilities:
            out |= REQUIRED_HOOKS[cap]
        return frozenset(out)


ApiStatus = Literal["ok", "deprecated", "refused"]


def api_status(plugin_version: str, host_version: str) -> ApiStatus:
    """The hook API rule (docs/migrating-to-2.0.md).

    ``ok``: same major, the plugin's minor not above the host's. ``deprecated``:
    the plugin was built for the previous major, which the host still loads for
    one major version, with a warning. ``refused``: anything else.
    """
    p_major, p_minor = (int(x) for x in plugin_version.split("."))
    h_major, h_minor = (int(x) for x in host_version.split("."))
    if p_major == h_major and p_minor <= h_minor:
        return "ok"
    if p_major == h_major - 1 and p_major >= 1:
        return "deprecated"
    return "refused"


def api_compatible(plugin_version: str, host_version: str) -> bool:
    """Whether the host loads a plugin built for ``plugin_version`` (perhaps with a warning)."""
    return api_status(plugin_version, host_version) != "refused"


class OAuth2Config(BaseModel):
    """OAuth 2.0 authorization-code flow with refresh tokens.

    The client id and secret come from the environment
    (``{credentials_env}_CLIENT_ID`` / ``_CLIENT_SECRET``), never from a plugin.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    authorize_url: str
    """Where a person authorises the connection (``callbridge auth`` opens it)."""
    token_url: str
    """Where codes and refresh tokens are exchanged for access tokens."""
    revoke_url: str | None = None
    """Where a token is revoked when a connection is removed, if the app has it."""
    scope: str | None = None
    """The scopes to ask for, space-separated."""
    extra_authorize_params: dict[str, str] = Field(default_factory=dict)
    """More query parameters for the authorise URL."""
    #: ``client_credentials``: no user authorises; the host asks the token endpoint for a
    #: token with the client's own credentials whenever it has none or it expires.
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    #: How the client authenticates at the token endpoint: ``body`` (client_secret_post)
    #: or ``basic`` (an ``Authorization: Basic`` header, client_secret_basic).
    client_auth: Literal["body", "basic"] = "body"


class Connection(BaseModel):
    """What the ``connection`` hook returns: how the host builds ``ctx.http``.

    ``auth``: ``none``; ``api_key`` (the key from ``{credentials_env}_API_KEY``
    sent in ``api_key_header``); ``bearer`` (a static token from
    ``{credentials_env}_TOKEN``); ``oauth2`` (tokens from ``callbridge auth``,
    refreshed by the host).

    ``origins``: the app's other origins by role, besides the API's
    (``base_url``), e.g. ``{"storage": "https://files.example.com"}``; the OAuth
    origin is read from ``oauth2``. ``credentials_to``: the roles whose requests
    carry the credentials and ``headers`` (the API's only, by default); a
    request to any other origin carries none of them and counts in no bucket.
    ``rate_limits``: the buckets of this connection (e.g. by plan), instead of
    the declaration's; None keeps the declaration's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    """The API's base URL; hooks send relative URLs against it."""
    auth: Literal["none", "api_key", "bearer", "oauth2"] = "none"
    """How requests are authenticated (see above)."""
    api_key_header: str = "X-API-Key"
    """The header that carries the API key, for ``api_key``."""
    #: Also send the API key (``{credentials_env}_API_KEY``) in ``api_key_header`` beside
    #: a bearer or OAuth 2.0 token, for apps that want both (Smokeball).
    send_api_key: bool = False
    oauth2: OAuth2Config | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every request to the connection's credentialed origins."""
    origins: dict[str, str] = Field(default_factory=dict)
    """The app's other origins by role (``{"storage": "https://files.example.com"}``)."""
    credentials_to: frozenset[str] = frozenset({"api"})
    """The roles whose requests carry the credentials and ``headers``."""
    rate_limits: tuple[RateBucket, ...] | None = None
    """This connection's buckets (e.g. by plan); None keeps the declaration's."""
    outbound: bool = False
    """The base URL is one a user gave (an outgoing webhook), not the vendor's: every
    connection goes through the outbound address policy (:mod:`callbridge.outbound`:
    never a loopback, private, link-local or metadata address), as document fetches do."""

    def origin_urls(self) -> dict[str, str]:
        """Every declared origin by role: ``api``, ``oauth`` (when OAuth 2.0) and ``origins``."""
        out = {"api": self.base_url}
        if self.oauth2 is not None:
            out["oauth"] = self.oauth2.token_url
        out.update(self.origins)
        return out
