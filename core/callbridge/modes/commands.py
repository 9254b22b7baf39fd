"""The bodies of ``callbridge log`` (and its alias ``resolve``) and ``callbridge digest``."""

from __future__ import annotations

import json
from datetime import datetime

from callbridge.console import line
from callbridge.console import out as console
from callbridge.models import Outcome
from callbridge.runtime import Runtime

#: Exit codes: 0 logged (or accepted); 3 not logged (skipped, unresolved, waiting...);
#: 4 refused (the message says why).
REFUSED = 4


async def run_log(rt: Runtime, event_ref: str, app: str | None, contact: str | None,
                  tenant: str | None, as_json: bool) -> int:
    """Log one event to one app by hand; print the outcome or the refusal."""
    from callbridge.modes.manual import ManualRefused, log_manually

    engine = rt.engine()
    try:
        if app is None:  # 1.x: `resolve DELIVERY --contact ID`
            event_ref, app = await _from_delivery(rt, event_ref)
        outcome = await log_manually(engine, event_ref, app, contact, tenant=tenant)
    except ManualRefused as exc:
        _print({"refused": {"field": exc.field, "problem": exc.problem}} if as_json else None,
               f"refused: {exc}")
        return REFUSED
    finally:
        await engine.aclose()
    _print(_outcome_json(app, outcome) if as_json else None,
           f"{app}: {outcome.status.value}" + (f" ({outcome.reason})" if outcome.reason else "")
           + (f" {outcome.message}" if outcome.message else "")
           + ("".join(f" {r.kind}:{r.id}" for r in outcome.records)))
    return 0 if outcome.status.value in ("logged", "accepted") else 3


async def _from_delivery(rt: Runtime, ref: str) -> tuple[str, str]:
    from callbridge.modes.refs import ManualRefused

    if not ref.isdigit():
        raise ManualRefused("name the app with --app (a delivery id alone is the 1.x form)",
                            field="app", status=422)
    try:
        view = rt.ledger().delivery(int(ref))
    except KeyError:
        raise ManualRefused("no delivery with this id", status=404) from None
    return f"#{view.event_pk}", view.app


def _outcome_json(app: str, outcome: Outcome) -> dict[str, object]:
    return {"app": app, "status": outcome.status.value, "reason": outcome.reason,
            "message": outcome.message, "records": [r.model_dump() for r in outcome.records],
            "candidates": [c.id for c in outcome.candidates]}


def _print(data: object, text: str) -> None:
    if data is not None:
        print(json.dumps(data, indent=2, default=str))
    else:
        console.print(line(text))


async def run_digest_command(rt: Runtime, tenant: str | None, as_json: bool,
                             now: datetime | None = None) -> int:
    """Run the digest once for each tenant (or one), work what it queued, print it."""
    from callbridge.modes.digest import run_digest

    if tenant is not None and tenant not in rt.settings.current().tenants:
        _print({"refused": {"field": "tenant", "problem": "is not in the settings"}}
               if as_json else None, "refused: tenant: is not in the settings")
        return 2
    engine = rt.engine()
    reports = []
    try:
        names = [tenant] if tenant is not None else sorted(engine.config.tenants)
        for name in names:
            reports.append(await run_digest(engine, name, now or engine.clock.now(), work=True))
    finally:
        await engine.aclose()
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2, default=str))
    else:
        for r in reports:
            console.print(line(r.summary()))
    return 0
