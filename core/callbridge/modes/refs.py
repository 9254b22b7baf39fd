"""What the modes share: their refusal, finding an event by a user's reference, and
checking a contact a user chose through the app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability
from callbridge.errors import CallbridgeError
from callbridge.events import AnyEvent
from callbridge.ledger import ContentErased
from callbridge.models import Contact
from callbridge.modes import store

if TYPE_CHECKING:
    from callbridge.engine import Engine


class ManualRefused(CallbridgeError):
    """A user's request (a manual log, a contact chosen, notes) that the host refuses.

    ``field`` names what is wrong (``event``, ``app``, ``contact``, ``notes``...),
    ``problem`` says why in words a user can act on (never echoing a value they
    sent), ``status`` is the HTTP status an API answers with.
    """

    def __init__(self, problem: str, *, field: str = "event", status: int = 409) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


async def find_event(engine: Engine, event_ref: str, *,
                     tenant: str | None = None) -> tuple[int, AnyEvent]:
    """The event a user named (the source's id or the ledger's), and its contents."""
    if not event_ref or len(event_ref) > 200:
        raise ManualRefused("must be an event id of 1 to 200 characters", status=422)
    found = await engine.db(store.find_events, engine.ledger, event_ref, tenant=tenant)
    if not found:
        raise ManualRefused("no event with this id was received", status=404)
    if len(found) > 1:
        raise ManualRefused("this id names several events (of different tenants or sources); "
                            "use the ledger's id, written #N, as `callbridge history` shows it",
                            status=409)
    pk, _ = found[0]
    try:
        event = await engine.db(engine.ledger.load_event, pk)
    except ContentErased:
        raise ManualRefused("the event's contents were erased; it cannot be logged",
                            status=410) from None
    return pk, event


def check_app(engine: Engine, event: AnyEvent, app: str) -> None:
    """The app is one of the event's tenant's connected apps, its plugin loaded."""
    tenant = engine.config.tenants.get(event.tenant)
    if tenant is None or app not in tenant.apps:
        raise ManualRefused("the event's firm has no app by this name", field="app", status=422)
    if not tenant.apps[app].enabled:
        raise ManualRefused("this app is turned off for the event's firm", field="app",
                            status=422)
    if tenant.app_plugin(app) not in engine.registry.plugins:
        raise ManualRefused("this app's plugin is not installed", field="app", status=422)


async def check_contacts(engine: Engine, event: AnyEvent, app: str, contact_ids: Sequence[str],
                         candidates: Sequence[Contact] = ()) -> list[Contact]:
    """The contacts a user chose, each one of the event's candidates or confirmed by the
    app: its contact search for the event's party returns it. Refused otherwise."""
    chosen: list[Contact] = []
    known = {c.id: c for c in candidates}
    missing = []
    for cid in contact_ids:
        if not cid or len(cid) > 200:
            raise ManualRefused("must be a contact id of 1 to 200 characters", field="contact",
                                status=422)
        if cid in known:
            chosen.append(known[cid])
        else:
            missing.append(cid)
    if not missing:
        return chosen
    tenant = engine.config.tenant(event.tenant)
    hooks = engine.hooks_for(tenant, app)
    if not event.external.matchable:
        raise ManualRefused("the event's party is withheld or a short code, so the app cannot "
                            "confirm this contact; choose one of the event's candidates",
                            field="contact", status=422)
    if not (hooks.supports(Capability.CONTACT_SEARCH_PHONE)
            or hooks.supports(Capability.CONTACT_SEARCH_EMAIL)):
        raise ManualRefused("this app has no contact search to confirm a contact with; choose "
                            "one of the event's candidates", field="contact", status=422)
    # Asked live: the app says whether the contact exists now (an index may lag).
    found = {c.id: c for c in await engine.index.live(
        engine.context(event.tenant, app), hooks, event.external)}
    for cid in missing:
        if cid not in found:
            raise ManualRefused(
                "the app does not confirm this contact: it is not among the event's "
                "candidates, and the app's contact search for the event's number does not "
                "return it", field="contact", status=422)
        chosen.append(found[cid])
    return chosen
