"""The plugin's settings and the API client each hook gets (with the portal's daily state)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callbridge.errors import AppError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from callbridge_hubspot import limits

if TYPE_CHECKING:  # the API client is imported by the hooks that use it (it loads the HTTP client)
    from callbridge.context import HookContext

    from callbridge_hubspot.api import HubSpotApi

API_BASE = "https://api.hubapi.com"
#: How long HubSpot's search is given to see a write before a lost answer is looked for.
SEARCH_SETTLE_SECONDS = 10.0
#: The record kinds the plugin writes, by HubSpot object type.
OBJECT_KIND = {"calls": "call", "communications": "communication", "notes": "note"}


class HubSpotSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.hubspot.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Literal["private_app", "oauth"] = Field(
        default="private_app", description="a private app's access token, or OAuth 2.0")
    plan: limits.Plan = Field(default="starter", description="the portal's plan: sets the burst limit")
    api_limit_increases: int = Field(default=0, ge=0, le=2, description="API limit increase add-ons")
    api_base_url: str | None = Field(default=None, description="override the API base (a sandbox)")
    portal_time_zone: str | None = Field(
        default=None, description="IANA zone for the daily reset; none: read from the account")
    marker_property: str = Field(default="callbridge_event", pattern=r"^[a-z][a-z0-9_]{0,99}$")
    search_settle_seconds: float = Field(
        default=SEARCH_SETTLE_SECONDS, ge=0, le=600,
        description="wait this long after an uncertain write before searching for it")
    owners_cache_minutes: float = Field(default=15.0, gt=0)
    default_owner_email: str | None = Field(
        default=None, description="the owner of logs whose staff member matches no owner")
    fax_folder: str = Field(default="/callbridge/faxes", pattern=r"^/[^\\]{0,200}$")

    @field_validator("portal_time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not a known IANA time zone") from None
        return value

    @property
    def base_url(self) -> str:
        return (self.api_base_url or API_BASE).rstrip("/")


def options_of(ctx: HookContext) -> HubSpotSettings:
    return ctx.options if isinstance(ctx.options, HubSpotSettings) else HubSpotSettings()



DAILY_KEY = "daily_limit"


async def portal_time_zone(ctx: HookContext, api: HubSpotApi) -> str:
    """The portal's time zone: the setting, else the account's (cached a day)."""
    opts = options_of(ctx)
    if opts.portal_time_zone:
        return opts.portal_time_zone

    from callbridge_hubspot import host

    async def load() -> str:
        return (await api.account_details()).time_zone

    try:
        zone = str(await host.cached(ctx, "portal_time_zone", load, ttl=86400))
        ZoneInfo(zone)
        return zone
    except (AppError, ZoneInfoNotFoundError, ValueError):
        ctx.log.warning("the portal's time zone could not be read; the daily reset is taken "
                        "at midnight UTC")
        return "UTC"


async def api_for(ctx: HookContext) -> HubSpotApi:
    from callbridge_hubspot import host
    from callbridge_hubspot.api import HubSpotApi

    clock = host.clock(ctx)
    daily = limits.DailyState.load(await ctx.store.get(DAILY_KEY))

    async def keep(state: limits.DailyState) -> None:
        await ctx.store.set(DAILY_KEY, state.dump())

    api: HubSpotApi

    async def midnight() -> datetime:
        return limits.next_midnight(clock.now(), await portal_time_zone(ctx, api))

    api = HubSpotApi(ctx.http, daily, midnight=midnight, now=clock.now, on_exhausted=keep)
    return api
