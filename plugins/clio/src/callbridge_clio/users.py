"""The firm's users: who a call's staff member is, and who the default user is.

Both lists are kept per tenant in the host's cache for :data:`CACHE_FOR`, so deliveries
running together load them once: a user added or disabled in Clio, or a connection
re-authorised by someone else, is seen within that time.
"""

from __future__ import annotations

from typing import Any

from callbridge.context import HookContext
from callbridge.models import AppUser

from callbridge_clio.api import ClioApi
from callbridge_clio.compat import cached
from callbridge_clio.settings import CACHE_FOR


async def users(ctx: HookContext) -> list[AppUser]:
    """The firm's enabled users."""
    async def load() -> list[dict[str, Any]]:
        return [AppUser(id=str(u.id), name=u.name, email=u.email).model_dump()
                for u in await ClioApi(ctx.http).users()]
    return [AppUser.model_validate(u) for u in await cached(ctx, "users", load, ttl=CACHE_FOR)]


async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    if not email:
        return None
    return next((u for u in await users(ctx) if (u.email or "").lower() == email.lower()), None)


async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The user who authorised the connection (``users/who_am_i``)."""
    async def load() -> dict[str, Any]:
        me = await ClioApi(ctx.http).who_am_i()
        return AppUser(id=str(me.id), name=me.name, email=me.email).model_dump()
    return AppUser.model_validate(await cached(ctx, "who_am_i", load, ttl=CACHE_FOR))
