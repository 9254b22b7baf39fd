"""App events: the signed requests an app sends the host, and the subscriptions behind them.

An app that declares ``app_events`` is subscribed, once per (tenant, app), to send
its events to ``{public URL}/v1/apps/{tenant}/{app}/events`` (``callbridge serve``
answers there). Three parts, all here:

* the **subscription store**: the plugin's :class:`~callbridge.models.AppSubscription`
  (its secret included) kept in the ledger's key-value entries, encrypted, with the
  time of its next renewal: its timer lives in the ledger, so a restart loses none;
* the **renewal work unit** (:meth:`AppEvents.run_due`, run by the scheduler):
  subscribes where no subscription is kept, and renews each as it falls due (a day
  before it expires, halfway through a shorter life, daily for one without expiry),
  under a ledger-held lock so two processes never subscribe twice;
* the **dispatch** (:meth:`AppEvents.receive`): the plugin verifies the request
  (:class:`~callbridge.errors.AppEventRefused` when it is not the app's) and parses
  it into work. A write reported done settles its accepted delivery *logged* once
  every record of the delivery is reported (without waiting for the confirmation
  check); a write reported failed drops the delivery's records and retries it, as a
  check that finds a record missing does (:mod:`callbridge.confirming`). A report
  about a delivery that is not accepted (already settled, not yet recorded, or
  another write) changes nothing, so a repeated request is harmless. A matter
  changed goes to the handlers in :attr:`AppEvents.matter_handlers`: by default the
  closed-matter sync, whose next poll of the firm is brought forward when the app is
  the firm's closed-matter source (:func:`callbridge.closing.schedule.poll_soon`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability
from callbridge.confirming import RETRY_AFTER
from callbridge.errors import AppEventRefused, CallbridgeError
from callbridge.facade import Hooks
from callbridge.ledger import AcceptedDelivery
from callbridge.models import (
    AppRequest,
    AppSubscription,
    MatterChanged,
    WriteConfirmed,
    WriteFailed,
)

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.ledger import Ledger
    from callbridge.settings import TenantSettings

log = logging.getLogger("callbridge.appevents")

#: The ledger key (per tenant and app) of the kept subscription and its timer.
SUBSCRIPTION_KEY = "app_events:subscription"
#: Renew this many seconds before a subscription expires (at most half its life).
RENEW_BEFORE = 86_400.0
#: Ask again this often whether a subscription without expiry still stands.
RECHECK_EVERY = 86_400.0
#: After a failed subscribe or renew, try again this many seconds later.
RETRY_FAILED = 300.0
#: Look for due renewals at least this often (seconds), when none is known to be sooner.
LOOK_EVERY = 60.0
#: How long a partial confirmation (some of a delivery's records reported) is kept.
PARTIAL_TTL = 86_400.0
#: The path apps send their events to.
PATH = "/v1/apps/{tenant}/{app}/events"

MatterHandler = Callable[[str, str, MatterChanged], Awaitable[None]]


class UnknownTarget(CallbridgeError):
    """The URL names a tenant or an app that is not configured, or an app without app events."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Kept:
    """A subscription as the ledger keeps it: what the plugin returned, where it points,
    and when it is next renewed."""

    subscription: AppSubscription
    url: str
    renew_at: datetime

    def dumps(self) -> str:
        return json.dumps({"subscription": self.subscription.model_dump(mode="json"),
                           "url": self.url, "renew_at": self.renew_at.isoformat()})

    @classmethod
    def loads(cls, text: str) -> Kept:
        data = json.loads(text)
        return cls(subscription=AppSubscription.model_validate(data["subscription"]),
                   url=str(data["url"]), renew_at=datetime.fromisoformat(data["renew_at"]))


@dataclass
class Received:
    """What one request did."""

    confirmed: int = 0  # deliveries settled logged
    failed: int = 0  # deliveries reopened for a retry
    partial: int = 0  # records reported done whose delivery has others still unreported
    matters: int = 0  # matter changes handed on
    ignored: int = 0  # items about nothing accepted (repeats, other writes, unknown markers)

    def as_json(self) -> dict[str, int]:
        return {"confirmed": self.confirmed, "failed": self.failed, "partial": self.partial,
                "matters": self.matters, "ignored": self.ignored}


async def poll_closed_matters_soon(engine: Engine, tenant: str, app: str) -> None:
    """Bring the firm's closed-matter poll forward when ``app`` is its closed-matter source."""
    from callbridge.closing import schedule
    from callbridge.closing.sync import firm_settings

    closed = firm_settings(engine, tenant)
    if closed is not None and closed.source == app:
        await schedule.poll_soon(engine, tenant)


def recheck_soon(ledger: Ledger, tenant: str, app: str, now: datetime) -> bool:
    """Make a kept subscription due for renewal now (after a re-authorisation: an app
    may have dropped it with the old authorisation, as Smokeball does). Whether one
    was kept."""
    text = ledger.kv_get(tenant, app, SUBSCRIPTION_KEY)
    if not text:
        return False
    kept = Kept.loads(text)
    ledger.kv_set(tenant, app, SUBSCRIPTION_KEY,
                  Kept(kept.subscription, kept.url, min(kept.renew_at, now)).dumps())
    return True


def callback_url(base_url: str, tenant: str, app: str) -> str:
    """Where the app sends a tenant's events."""
    return base_url.rstrip("/") + PATH.format(tenant=tenant, app=app)


def renewal_time(subscription: AppSubscription, now: datetime) -> datetime:
    """When to renew: :data:`RENEW_BEFORE` before expiry, or halfway through a shorter
    life; :data:`RECHECK_EVERY` from now for a subscription that does not expire."""
    if subscription.expires_at is None:
        return now + timedelta(seconds=RECHECK_EVERY)
    life = max((subscription.expires_at - now).total_seconds(), 0.0)
    return subscription.expires_at - timedelta(seconds=min(RENEW_BEFORE, life / 2))


@dataclass
class AppEvents:
    """The host side of app events for one engine (``engine.app_events``)."""

    engine: Engine
    #: The public base URL apps reach this host at, when not the setting
    #: ``serve.public_url`` (read afresh, so a settings change applies). Neither: nothing
    #: is subscribed (an app cannot reach a loopback address).
    base_url: str | None = None
    #: Called with (tenant, app, MatterChanged) for each matter an app reports changed
    #: (by default :func:`poll_closed_matters_soon`).
    matter_handlers: list[MatterHandler] = field(default_factory=list)
    _next_look: datetime | None = None
    _failed_until: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.matter_handlers:
            engine = self.engine

            async def closed_matters(tenant: str, app: str, item: MatterChanged) -> None:
                await poll_closed_matters_soon(engine, tenant, app)

            self.matter_handlers.append(closed_matters)

    def public_url(self) -> str | None:
        """Where apps reach this host: :attr:`base_url`, else ``serve.public_url``."""
        if self.base_url is not None:
            return self.base_url
        serve = getattr(self.engine.config, "serve", None)
        url = getattr(serve, "public_url", None)
        return str(url) if url else None

    # -- the subscription store -------------------------------------------------------

    async def kept(self, tenant: str, app: str) -> Kept | None:
        """The subscription kept for (tenant, app), if any."""
        engine = self.engine
        text = await engine.db(engine.ledger.kv_get, tenant, app, SUBSCRIPTION_KEY)
        return Kept.loads(text) if text else None

    async def _keep(self, tenant: str, app: str, kept: Kept) -> None:
        engine = self.engine
        await engine.db(engine.ledger.kv_set, tenant, app, SUBSCRIPTION_KEY, kept.dumps())

    async def forget(self, tenant: str, app: str) -> None:
        """Drop the kept subscription (the next renewal run subscribes afresh)."""
        engine = self.engine
        await engine.db(engine.ledger.kv_delete, tenant, app, SUBSCRIPTION_KEY)

    def _enabled(self, tenant: TenantSettings) -> list[str]:
        """The tenant's enabled apps whose plugin is loaded (whether or not they log events)."""
        plugins = self.engine.registry.plugins
        return sorted(name for name, app in tenant.apps.items()
                      if app.enabled and (app.plugin or name) in plugins)

    def _apps(self) -> list[tuple[str, str, Hooks]]:
        engine = self.engine
        out = []
        for tenant_id, tenant in engine.config.tenants.items():
            for app in self._enabled(tenant):
                try:
                    hooks = engine.hooks_for(tenant, app)
                except KeyError:
                    continue
                if hooks.supports(Capability.APP_EVENTS):
                    out.append((tenant_id, app, hooks))
        return out

    # -- the renewal work unit ------------------------------------------------------------

    async def run_due(self, now: datetime | None = None, *, force: bool = False) -> int:
        """Subscribe where nothing is kept and renew what is due; how many changed.

        Looks at the ledger at most every :data:`LOOK_EVERY` seconds (sooner when a
        renewal is due sooner), unless ``force``."""
        engine = self.engine
        now = now or engine.clock.now()
        base_url = self.public_url()
        if base_url is None or (not force and self._next_look is not None
                                and now < self._next_look):
            return 0
        changed = 0
        next_look = now + timedelta(seconds=LOOK_EVERY)
        for tenant, app, hooks in self._apps():
            if self._failed_until.get((tenant, app), now) > now:
                next_look = min(next_look, self._failed_until[(tenant, app)])
                continue
            kept = await self.kept(tenant, app)
            url = callback_url(base_url, tenant, app)
            if kept is not None and kept.url == url and kept.renew_at > now:
                next_look = min(next_look, kept.renew_at)
                continue
            result = await self._renew_one(tenant, app, hooks, url, now)
            changed += result is not None
            if result is not None:
                next_look = min(next_look, result.renew_at)
        self._next_look = next_look
        return changed

    async def _renew_one(self, tenant: str, app: str, hooks: Hooks, url: str,
                         now: datetime) -> Kept | None:
        engine = self.engine
        ctx = engine.context(tenant, app)
        try:
            async with ctx.lock("app_events_subscription"):
                kept = await self.kept(tenant, app)  # another process may have done it
                if kept is not None and kept.url == url and kept.renew_at > now:
                    return None
                if kept is None or kept.url != url:
                    subscription = await hooks.subscribe_app_events(ctx, url=url)
                    what = "subscribed"
                else:
                    subscription = await hooks.renew_app_events(
                        ctx, subscription=kept.subscription, url=url)
                    what = "renewed"
                fresh = Kept(subscription, url, renewal_time(subscription, now))
                await self._keep(tenant, app, fresh)
        except Exception as exc:
            self._failed_until[(tenant, app)] = now + timedelta(seconds=RETRY_FAILED)
            log.warning("app events of %s/%s: subscribing or renewing failed (%s); tried "
                        "again in %d s", tenant, app, type(exc).__name__, RETRY_FAILED)
            return None
        self._failed_until.pop((tenant, app), None)
        log.info("app events of %s/%s %s; next renewal %s", tenant, app, what,
                 fresh.renew_at.isoformat())
        return fresh

    # -- requests -----------------------------------------------------------------------

    def _target(self, tenant: str, app: str) -> Hooks:
        engine = self.engine
        settings = engine.config.tenants.get(tenant)
        if settings is None:
            raise UnknownTarget("tenant", "no such tenant")
        if app not in self._enabled(settings):
            raise UnknownTarget("app", "the tenant has no such app")
        hooks = engine.hooks_for(settings, app)
        if not hooks.supports(Capability.APP_EVENTS):
            raise UnknownTarget("app", "the app sends no events")
        return hooks

    async def receive(self, tenant: str, app: str, request: AppRequest) -> Received:
        """Verify ``request`` with the app's plugin, parse it, and do what it says.

        Raises :class:`UnknownTarget` for a tenant or app not configured and
        :class:`~callbridge.errors.AppEventRefused` for a request that is not the
        app's (nothing is parsed then)."""
        hooks = self._target(tenant, app)
        kept = await self.kept(tenant, app)
        if kept is None or not kept.subscription.secret:
            raise AppEventRefused("no subscription is kept for this app, so no request "
                                  "can be verified", field="subscription")
        engine = self.engine
        ctx = engine.context(tenant, app)
        await hooks.verify_app_event(ctx, request=request, subscription=kept.subscription)
        work = await hooks.parse_app_event(ctx, request=request, subscription=kept.subscription)
        return await self.dispatch(tenant, app, work)

    async def dispatch(self, tenant: str, app: str,
                       work: list[WriteConfirmed | WriteFailed | MatterChanged]) -> Received:
        """Do the parsed work: settle reported writes, hand on changed matters."""
        engine = self.engine
        done = Received()
        writes = [w for w in work if isinstance(w, WriteConfirmed | WriteFailed)]
        found: dict[str, AcceptedDelivery] = {}
        if writes:
            found = await engine.db(engine.ledger.accepted_by_marker, tenant, app,
                                    {w.marker for w in writes}, now=engine.clock.now())
        for item in work:
            if isinstance(item, MatterChanged):
                for handler in self.matter_handlers:
                    await handler(tenant, app, item)
                done.matters += 1
                continue
            delivery = found.get(item.marker)
            records = [r for r in delivery.records if r.kind == item.kind
                       and (item.record_id is None or r.id == item.record_id)] \
                if delivery is not None else []
            if delivery is None or not records:
                done.ignored += 1
                continue
            if isinstance(item, WriteFailed):
                done.failed += await self._fail(delivery, item)
                found.pop(item.marker, None)
            else:
                settled = await self._confirm(delivery, {(r.kind, r.step) for r in records})
                if settled is None:
                    done.partial += 1
                else:
                    done.confirmed += settled
                    found.pop(item.marker, None)
        return done

    async def _confirm(self, delivery: AcceptedDelivery,
                       steps: set[tuple[str, str]]) -> int | None:
        """Note the records reported done; settle the delivery when all are. None: some
        of its records are still unreported."""
        engine = self.engine
        ledger = engine.ledger
        now = engine.clock.now()
        key = f"app_events:confirmed:{delivery.delivery_id}"
        everything = {(r.kind, r.step) for r in delivery.records}
        if steps != everything:
            earlier = await engine.db(ledger.cache_get, delivery.tenant, delivery.app, key,
                                      now=now)
            reported = steps | {tuple(s) for s in json.loads(earlier[0])} if earlier else steps
            if not everything <= reported:
                await engine.db(ledger.cache_put, delivery.tenant, delivery.app, key,
                                json.dumps(sorted(reported)), PARTIAL_TTL, now=now)
                return None
        settled = await engine.db(ledger.set_confirmed, delivery.delivery_id, now=now)
        if settled:
            log.info("delivery %d to %s/%s logged: the app reported its writes done",
                     delivery.delivery_id, delivery.tenant, delivery.app)
        return int(bool(settled))

    async def _fail(self, delivery: AcceptedDelivery, item: WriteFailed) -> int:
        engine = self.engine
        now = engine.clock.now()
        reopened = await engine.db(
            engine.ledger.reopen_unconfirmed, delivery.delivery_id,
            retry_at=now + timedelta(seconds=RETRY_AFTER),
            message=f"{item.reason.rstrip('.')}; it is written again.", now=now)
        if reopened:
            log.info("delivery %d to %s/%s retried: the app reported a write failed",
                     delivery.delivery_id, delivery.tenant, delivery.app)
        return int(bool(reopened))
