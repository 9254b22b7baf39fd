"""``/healthz``, ``/readyz`` and ``/metrics``.

* ``GET /healthz`` — the process answers (200 while it runs, shutting down included).
* ``GET /readyz`` — it should be sent traffic: the ledger answers a query, its schema
  is at the newest migration, and the server is not shutting down (else 503, with
  what is wrong). A settings file that no longer reads is reported (the last good
  settings stay in use) but does not make the server unready.
* ``GET /metrics`` — the Prometheus text format (:mod:`callbridge.serve.metrics`), for an
  operator of every tenant unless ``serve.metrics_access = "open"``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge.ledger import Ledger
from callbridge.ledger import tables as t
from callbridge.serve.auth import require_metrics_reader
from callbridge.serve.metrics import CONTENT_TYPE
from callbridge.serve.state import ServerState
from callbridge.settings import Settings


def migrations_current(ledger: Ledger) -> bool:
    """Whether the ledger's schema is at the newest migration this code ships."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from callbridge.ledger._base import MIGRATIONS

    heads = set(ScriptDirectory(str(MIGRATIONS)).get_heads())
    with ledger.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads


def delivery_counts(ledger: Ledger) -> list[tuple[str, str, str | None, int]]:
    """Deliveries by (app, status, reason)."""
    d = t.deliveries
    query = sa.select(d.c.app, d.c.status, d.c.reason, sa.func.count()).group_by(
        d.c.app, d.c.status, d.c.reason)
    with ledger.engine.connect() as conn:
        return [(r[0], r[1], r[2], int(r[3])) for r in conn.execute(query)]


def unready_sources(settings: Settings) -> list[str]:
    """``tenant/source: why`` for each source that cannot take events as configured."""
    from callbridge.serve.intake import secrets_of
    from callbridge.sources.base import formats

    installed = formats()
    out = []
    for tenant_key, tenant in settings.tenants.items():
        for source_key, source in tenant.sources.items():
            if source.format not in installed:
                out.append(f"{tenant_key}/{source_key}: format {source.format!r} not installed")
            elif not secrets_of(source):
                out.append(f"{tenant_key}/{source_key}: its key ({source.secret_env}) is not set")
    return out


def routes(state: ServerState) -> list[BaseRoute]:
    engine = state.engine

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, Any] = {}
        problems: list[str] = []
        try:
            current = await engine.db(migrations_current, engine.ledger)
            checks["ledger"] = "ok"
            checks["migrations"] = "current" if current else "behind"
            if not current:
                problems.append("the ledger's schema is not at the newest migration")
        except Exception as exc:  # the ledger cannot be reached: say what kind, not where
            checks["ledger"] = f"unreachable ({type(exc).__name__})"
            problems.append("the ledger cannot be reached")
        if state.extra.get("stopping"):
            problems.append("shutting down")
        settings_error = getattr(state.runtime.settings, "error", None)
        checks["settings"] = "ok" if settings_error is None else "the last change did not load"
        broken = unready_sources(state.runtime.settings.current())
        checks["sources"] = "ok" if not broken else (
            f"{len(broken)} cannot take events (a key not set or a format not installed; "
            "the server's log names them)")
        body = {"status": "ready" if not problems else "not ready", "checks": checks,
                "problems": problems}
        return JSONResponse(body, status_code=503 if problems else 200)

    async def metrics(request: Request) -> Response:
        await require_metrics_reader(request, state)  # serve.metrics_access
        try:
            state.metrics.set_deliveries(await engine.db(delivery_counts, engine.ledger))
        except Exception:  # the counters of this process are still worth reading
            pass
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"])]
