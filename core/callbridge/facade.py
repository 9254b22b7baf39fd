"""The typed facade: the one way the host calls a plugin's hooks.

One method per hook, keyword arguments, one target plugin per call (an event
for Clio reaches the Clio plugin only). Each method forwards to :meth:`Hooks._call`,
which checks the result against the spec's return type
(:data:`callbridge.hookspecs.SPECS`); a test holds the methods' signatures to
the specs'. Cross-cutting concerns live here,
around the *awaited* call, so they see real results and exceptions: timing,
the trace switch, dry run, result type checks, and the ``hook_called``
observers. A plain-function implementation runs in a worker thread with
``ctx.sync`` set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import datetime
from typing import Any, Literal, TypeVar

from callbridge.capabilities import Capability, Declaration
from callbridge.context import HookContext, SyncBridge, SyncHttp, SyncView
from callbridge.errors import CallbridgeError, PermanentError
from callbridge.events import AnyEvent, CallEvent, ExternalParty, FaxEvent, SmsEvent
from callbridge.hookspecs import SPECS
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
from callbridge.plugins import LoadedPlugin, Registry

log = logging.getLogger("callbridge.hooks")
T = TypeVar("T")

ENV_TRACE = "CALLBRIDGE_TRACE"


class HookNotDeclared(CallbridgeError):
    """The host was asked to call a hook the plugin does not declare. A host bug, never sent."""


class Hooks:
    """Calls into one plugin. Build with :meth:`Facade.for_app`."""

    def __init__(self, facade: Facade, plugin: LoadedPlugin) -> None:
        self._facade = facade
        self.plugin = plugin

    @property
    def declaration(self) -> Declaration:
        return self.plugin.declaration

    def supports(self, capability: Capability) -> bool:
        return capability in self.plugin.declaration.capabilities

    def implements(self, hook: str) -> bool:
        return hook in self.plugin.implementations

    def logs_without_contact(self, kind: str) -> bool:
        """Whether the app can log an event of ``kind`` that has no contact."""
        return self.plugin.declaration.logs_without_contact(kind)

    async def _call(self, hook: str, ctx: HookContext, **kwargs: Any) -> Any:
        spec = SPECS[hook]
        impl = self.plugin.implementations.get(hook)
        if impl is None:
            raise HookNotDeclared(f"plugin {self.plugin.name!r} does not implement {hook}")
        names = impl.argnames
        kwargs["ctx"] = ctx
        args = {name: value for name, value in kwargs.items() if name in names}
        facade = self._facade
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            if impl.is_async:
                result = await impl.function(**args)
            else:
                if "ctx" in args:
                    args["ctx"] = _with_sync(ctx)
                result = await asyncio.to_thread(impl.function, **args)
            if not spec.accepts(result):
                raise PermanentError(
                    f"plugin {self.plugin.name!r} returned {type(result).__name__} from {hook}; "
                    f"expected {spec.expected}")
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            facade._observe(ctx.tenant_id, ctx.app, hook, seconds, error)

    async def find_contact(self, ctx: HookContext, *, party: ExternalParty) -> list[Contact]:
        return await self._call("find_contact", ctx, party=party)  # type: ignore[no-any-return]

    async def create_contact(self, ctx: HookContext, *, party: ExternalParty, name: str) -> Contact:
        return await self._call("create_contact", ctx, party=party, name=name)  # type: ignore[no-any-return]

    async def find_matters(self, ctx: HookContext, *, contact: Contact) -> list[Matter]:
        return await self._call("find_matters", ctx, contact=contact)  # type: ignore[no-any-return]

    async def find_user(self, ctx: HookContext, *, email: str | None,
                        extension: str | None) -> AppUser | None:
        return await self._call("find_user", ctx,  # type: ignore[no-any-return]
                                email=email, extension=extension)

    async def pick_default_user(self, ctx: HookContext) -> AppUser | None:
        return await self._call("pick_default_user", ctx)  # type: ignore[no-any-return]

    async def ensure_activity_code(self, ctx: HookContext, *, label: str) -> str:
        return await self._call("ensure_activity_code", ctx, label=label)  # type: ignore[no-any-return]

    async def log_call(self, ctx: HookContext, *, event: CallEvent, target: LogTarget) -> LogResult:
        return await self._log("log_call", ctx, event, target)

    async def log_sms(self, ctx: HookContext, *, event: SmsEvent, target: LogTarget) -> LogResult:
        return await self._log("log_sms", ctx, event, target)

    async def log_fax(self, ctx: HookContext, *, event: FaxEvent, target: LogTarget) -> LogResult:
        return await self._log("log_fax", ctx, event, target)

    async def _log(self, hook: str, ctx: HookContext, event: AnyEvent, target: LogTarget) -> LogResult:
        if self._facade.dry_run:
            return LogResult(records=(Record(kind="dry_run", id=event.marker, step=hook),))
        return await self._call(hook, ctx, event=event, target=target)  # type: ignore[no-any-return]

    async def update_log(self, ctx: HookContext, *, event: AnyEvent, records: list[Record]) -> LogResult:
        if self._facade.dry_run:
            return LogResult(records=tuple(records))
        return await self._call("update_log", ctx,  # type: ignore[no-any-return]
                                event=event, records=records)

    async def log_batch(self, ctx: HookContext, *, kind: Literal["call", "sms", "fax"],
                        items: list[BatchItem]) -> list[BatchResult]:
        if self._facade.dry_run:
            return [BatchResult(ok=LogResult(records=(
                Record(kind="dry_run", id=item.event.marker, step="log_batch"),)))
                for item in items]
        results: list[BatchResult] = await self._call("log_batch", ctx, kind=kind, items=items)
        if len(results) != len(items):
            raise PermanentError(f"plugin {self.plugin.name!r} returned {len(results)} results "
                                 f"from log_batch for {len(items)} items; expected one per item")
        return results

    async def confirm_accepted(self, ctx: HookContext, *, records: list[Record],
                               since: datetime) -> dict[str, bool | None]:
        return await self._call("confirm_accepted", ctx, records=records, since=since)  # type: ignore[no-any-return]

    async def subscribe_app_events(self, ctx: HookContext, *, url: str) -> AppSubscription:
        return await self._call("subscribe_app_events", ctx, url=url)  # type: ignore[no-any-return]

    async def renew_app_events(self, ctx: HookContext, *, subscription: AppSubscription,
                               url: str) -> AppSubscription:
        return await self._call("renew_app_events", ctx,  # type: ignore[no-any-return]
                                subscription=subscription, url=url)

    async def verify_app_event(self, ctx: HookContext, *, request: AppRequest,
                               subscription: AppSubscription) -> None:
        await self._call("verify_app_event", ctx, request=request, subscription=subscription)

    async def parse_app_event(self, ctx: HookContext, *, request: AppRequest,
                              subscription: AppSubscription
                              ) -> list[WriteConfirmed | WriteFailed | MatterChanged]:
        return await self._call("parse_app_event", ctx,  # type: ignore[no-any-return]
                                request=request, subscription=subscription)

    async def contacts_changed_since(self, ctx: HookContext, *, since: datetime | None,
                                     cursor: str | None) -> ChangedContacts:
        return await self._call("contacts_changed_since", ctx, since=since, cursor=cursor)  # type: ignore[no-any-return]

    async def closed_matters_since(self, ctx: HookContext, *, position: str | None,
                                   since: datetime, contact_fields: list[str],
                                   matter_fields: list[str]) -> ClosedMatterPage:
        return await self._call("closed_matters_since", ctx,  # type: ignore[no-any-return]
                                position=position, since=since, contact_fields=contact_fields,
                                matter_fields=matter_fields)

    async def send_closed_matter(self, ctx: HookContext, *, client: ClientContact,
                                 matter: ClosedMatter) -> Record:
        if self._facade.dry_run:
            return Record(kind="dry_run", id=f"closed-matter-{matter.id}", step="send")
        return await self._call("send_closed_matter", ctx,  # type: ignore[no-any-return]
                                client=client, matter=matter)


class Facade:
    """Routes calls to the right plugin and wraps them.

    ``trace`` (or ``CALLBRIDGE_TRACE=1``) prints each hook call to stderr;
    ``dry_run`` makes log hooks write nothing and return a placeholder record.
    """

    def __init__(self, registry: Registry, *, trace: bool | None = None, dry_run: bool = False) -> None:
        self.registry = registry
        self.trace = trace if trace is not None else os.environ.get(ENV_TRACE, "") in {"1", "true", "yes"}
        self.dry_run = dry_run
        self._hooks: dict[str, Hooks] = {}

    def for_plugin(self, name: str) -> Hooks:
        hooks = self._hooks.get(name)
        if hooks is None:
            hooks = self._hooks[name] = Hooks(self, self.registry.get(name))
        return hooks

    def _observe(self, tenant: str, app: str, hook: str, seconds: float, error: BaseException | None) -> None:
        err = type(error).__name__ if error is not None else None
        if self.trace:
            status = f"raised {err}" if err else "ok"
            print(f"[trace] {tenant}/{app} {hook} {seconds * 1000:.1f} ms {status}", file=sys.stderr)
        log.debug("hook %s for %s/%s took %.4fs (%s)", hook, tenant, app, seconds, err or "ok")
        observers = self.registry.manager.hook.hook_called
        if not observers.get_hookimpls():  # none installed: no call to make (every hook call)
            return
        try:
            observers(tenant=tenant, app=app, hook=hook, seconds=seconds, error=err)
        except Exception:  # an observer's bug must not fail the call it observes
            log.exception("a hook_called observer raised")


def _with_sync(ctx: HookContext) -> HookContext:
    if ctx.sync is not None:
        return ctx
    bridge = SyncBridge(asyncio.get_running_loop())
    view = SyncView(bridge=bridge, http=SyncHttp(ctx.http, bridge), bare_http=SyncHttp(ctx.bare_http, bridge))
    return HookContext(**{**ctx.__dict__, "sync": view})
