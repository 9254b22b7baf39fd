"""What a plugin declares: who it is, which hooks it implements, what it supports.

Capabilities are data. The host checks them against the implemented hooks at
load time (a mismatch blocks that plugin alone) and routes by them: an event
kind or step the app does not support gets a clear *skipped* outcome, and a
hook that is not declared is never called.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    LOG_WITHOUT_CONTACT = "log_without_contact"
    MULTI_CONTACT_LINK = "multi_contact_link"  # one log linked to several contacts


#: Hooks a capability needs. A declared capability whose hooks are missing, or
#: an implemented hook that no declared capability needs, is a load error.
REQUIRED_HOOKS: dict[Capability, frozenset[str]] = {
    Capability.CALLS: frozenset({"log_call"}),
    Capability.SMS: frozenset({"log_sms"}),
    Capability.FAX: frozenset({"log_fax"}),
    Capability.CONTACT_SEARCH_PHONE: frozenset({"find_contact"}),
    Capability.CONTACT_SEARCH_EMAIL: frozenset({"find_contact"}),
    Capability.CONTACT_CREATION: frozenset({"create_contact"}),
    Capability.CONTACTS_CHANGED: frozenset({"contacts_changed_since"}),
    Capability.MATTERS: frozenset({"find_matters"}),
    Capability.ACTIVITY_CODES: frozenset({"ensure_activity_code"}),
    Capability.USERS: frozenset({"find_user", "pick_default_user"}),
    Capability.LATE_DETAILS: frozenset({"update_log"}),
    Capability.FILE_ATTACHMENTS: frozenset(),
    Capability.CUSTOM_FIELDS: frozenset(),
    Capability.CLOSED_MATTER_EVENTS: frozenset({"closed_matters_since"}),
    Capability.CLOSED_MATTER_DESTINATION: frozenset({"send_closed_matter"}),
    Capability.LOG_WITHOUT_CONTACT: frozenset(),
    Capability.MULTI_CONTACT_LINK: frozenset(),
}


class RateBucket(BaseModel):
    """A rate limit the app enforces, declared so the host slows down before a 429.

    ``scope``: ``token`` (one bucket per access token / connection), ``tenant``
    (per firm), or ``partner`` (one bucket shared by every tenant of the app).
    ``purpose``: ``default`` for every request, or a name such as ``search``
    that a request opts into (``extensions={"callbridge_bucket": "search"}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    requests: int = Field(gt=0)
    per_seconds: float = Field(gt=0)
    burst: int | None = Field(default=None, gt=0)
    scope: Literal["token", "tenant", "partner"] = "token"
    purpose: str = "default"


class Declaration(BaseModel):
    """What :func:`callbridge.hookspecs.declare` returns."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the app's key in settings")
    title: str | None = None
    version: str
    hook_api_version: str = Field(pattern=r"^\d+\.\d+$")
    capabilities: frozenset[Capability]
    settings_model: type[BaseModel] | None = None
    rate_limits: tuple[RateBucket, ...] = ()

    @field_validator("settings_model")
    @classmethod
    def _is_model(cls, value: type[BaseModel] | None) -> type[BaseModel] | None:
        if value is not None and not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise ValueError("must be a pydantic BaseModel subclass")
        return value

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def required_hooks(self) -> frozenset[str]:
        out: set[str] = set()
        for cap in self.capabilities:
            out |= REQUIRED_HOOKS[cap]
        return frozenset(out)


def api_compatible(plugin_version: str, host_version: str) -> bool:
    """The hook API rule: same major, plugin minor not above the host's."""
    p_major, p_minor = (int(x) for x in plugin_version.split("."))
    h_major, h_minor = (int(x) for x in host_version.split("."))
    return p_major == h_major and p_minor <= h_minor


class OAuth2Config(BaseModel):
    """OAuth 2.0 authorization-code flow with refresh tokens.

    The client id and secret come from the environment
    (``{credentials_env}_CLIENT_ID`` / ``_CLIENT_SECRET``), never from a plugin.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    authorize_url: str
    token_url: str
    revoke_url: str | None = None
    scope: str | None = None
    extra_authorize_params: dict[str, str] = Field(default_factory=dict)


class Connection(BaseModel):
    """What the ``connection`` hook returns: how the host builds ``ctx.http``.

    ``auth``: ``none``; ``api_key`` (the key from ``{credentials_env}_API_KEY``
    sent in ``api_key_header``); ``bearer`` (a static token from
    ``{credentials_env}_TOKEN``); ``oauth2`` (tokens from ``callbridge auth``,
    refreshed by the host).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    auth: Literal["none", "api_key", "bearer", "oauth2"] = "none"
    api_key_header: str = "X-API-Key"
    oauth2: OAuth2Config | None = None
    headers: dict[str, str] = Field(default_factory=dict)
