"""The closed-matter sync's configuration checks, for ``callbridge check`` and ``doctor``.

``check`` asks the source now (one page from the kept position, which it does not
move) whether the fields of the firm's enabled triggers exist as checkboxes;
``doctor`` reads what the last run found (no request) and checks that the apps
named can play their parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callbridge.closing.store import ClosingStore
from callbridge.closing.sync import app_problems, firm_settings
from callbridge.closing.triggers import asked_fields, field_problems

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.plugins import Registry
    from callbridge.settings import TenantSettings


async def check_fields(engine: Engine, tenant_id: str) -> list[str]:
    """The firm's configuration errors, asked of the source now (the position stays)."""
    closed = firm_settings(engine, tenant_id)
    if closed is None:
        return []
    tenant = engine.config.tenant(tenant_id)
    problems = app_problems(engine, tenant, closed)
    if problems:
        return problems
    store = ClosingStore(engine, tenant_id, closed.source, closed.destination)
    contact_fields, matter_fields = asked_fields(closed)
    hooks = engine.hooks_for(tenant, closed.source)
    page = await hooks.closed_matters_since(
        engine.context(tenant_id, closed.source), position=await store.position(),
        since=closed.since or await store.start(engine.clock.now()),
        contact_fields=contact_fields, matter_fields=matter_fields)
    return field_problems(closed, page.fields, closed.source)


def doctor_checks(ledger: Any, registry: Registry, tenant_id: str,
                  tenant: TenantSettings) -> list[dict[str, str]]:
    """``doctor``'s lines for one firm: its apps, and the last run's configuration errors."""
    closed = tenant.closed_matters
    if closed is None or not closed.enabled:
        return []
    name = f"{tenant_id} closed-matter sync"
    out = []
    for app, capability in ((closed.source, "closed_matter_events"),
                            (closed.destination, "closed_matter_destination")):
        plugin = registry.plugins.get(tenant.app_plugin(app))
        if plugin is None:
            out.append({"name": name, "status": "fail",
                        "detail": f"app {app!r}: its plugin is not loaded"})
        elif capability not in {c.value for c in plugin.declaration.capabilities}:
            out.append({"name": name, "status": "fail",
                        "detail": f"app {app!r} does not declare {capability}"})
    import json

    raw = ledger.kv_get(tenant_id, closed.source, "closed:config_error")
    for problem in json.loads(raw) if raw else []:
        out.append({"name": name, "status": "fail",
                    "detail": f"{problem}; every send of this firm is held until it is fixed "
                              "(`callbridge check` asks the app again)"})
    if not out:
        out.append({"name": name, "status": "ok",
                    "detail": f"{closed.source} -> {closed.destination}"})
    return out
