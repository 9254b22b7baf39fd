"""The plugin's options, its declaration and its connection to Clio."""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Literal

from callbridge.capabilities import Capability, Connection, Declaration, OAuth2Config, RateBucket
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from callbridge.context import HookContext

try:
    __version__ = version("callbridge-clio")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

HOSTS = {"US": "app.clio.com", "EU": "eu.app.clio.com", "CA": "ca.app.clio.com", "AU": "au.app.clio.com"}
#: The minor API version every request asks for (X-API-VERSION), so behaviour cannot change silently.
API_VERSION = "4.0.13"
#: Matter statuses that count as open for linking a log.
OPEN_STATUSES = "open,pending"
#: How long the firm's users and activity descriptions are kept.
CACHE_FOR = timedelta(minutes=15)
#: Uploads retried by the host this many times before the log is kept without its document.
UPLOAD_ATTEMPTS = 3


class ClioSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.clio.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Literal["US", "EU", "CA", "AU"] = "US"
    api_base_url: str | None = Field(
        default=None, description="override the API base (a sandbox); default from the region")
    fax_folder: str | None = Field(default="Faxes", description="folder for fax documents; none: the root")
    activity_description: str | None = Field(
        default=None, description="name of an existing Clio activity description for call time entries")
    time_entry_note: str = "Phone call"
    time_entry_billable: bool | None = Field(
        default=None, description="billable status of call time entries; none: the app's default_billable")
    api_version: str = Field(
        default=API_VERSION, pattern=r"^4\.0\.\d+$", description="the X-API-VERSION every request pins")
    matter_staleness_seconds: float = Field(
        default=300.0, ge=0, le=86400,
        description="how old the matter index may be before an event that needs it syncs it")

    @property
    def host(self) -> str:
        return f"https://{HOSTS[self.region]}"

    @property
    def base_url(self) -> str:
        return self.api_base_url or f"{self.host}/api/v4"

    @property
    def oauth_base(self) -> str:
        return self.base_url.removesuffix("/api/v4") if self.api_base_url else self.host


def options(ctx: HookContext) -> ClioSettings:
    return ctx.options if isinstance(ctx.options, ClioSettings) else ClioSettings()


def declaration() -> Declaration:
    return Declaration(
        name="clio", title="Clio", version=__version__, hook_api_version="2.1",
        capabilities=frozenset({
            Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION, Capability.CONTACTS_CHANGED,
            Capability.MATTERS, Capability.USERS, Capability.LATE_DETAILS, Capability.FILE_ATTACHMENTS,
            Capability.CUSTOM_FIELDS, Capability.MULTI_CONTACT_LINK, Capability.ACTIVITY_CODES,
            Capability.CLOSED_MATTER_EVENTS, Capability.APP_EVENTS,
        }),
        without_contact=frozenset({"call", "sms", "fax"}),
        settings_model=ClioSettings,
        # Clio: 50 requests per minute per access token at peak hours.
        rate_limits=(RateBucket(name="api", requests=50, per_seconds=60.0, scope="token"),),
    )


def connection(opts: ClioSettings | None) -> Connection:
    opts = opts or ClioSettings()
    return Connection(
        base_url=opts.base_url, auth="oauth2", headers={"X-API-VERSION": opts.api_version},
        oauth2=OAuth2Config(
            authorize_url=f"{opts.oauth_base}/oauth/authorize", token_url=f"{opts.oauth_base}/oauth/token",
            revoke_url=f"{opts.oauth_base}/oauth/deauthorize",
            extra_authorize_params={"redirect_on_decline": "true"}))
