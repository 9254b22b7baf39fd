"""A closed-matter destination: each client POSTed to a URL as a signed webhook.

The body is JSON of a documented, versioned schema (:mod:`.payload`,
``callbridge.closed_matter.v1``); the ``Callbridge-Signature`` header carries a
timestamp and an HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with a shared secret,
in the style Stripe uses; ``Idempotency-Key`` carries the send's id, the same on
every attempt. The request goes through the host's outbound address policy (https,
never a loopback, private, link-local or metadata address): the connection declares
``outbound``. A 2xx answer is a delivery; a 5xx, a 408/425/429 or no answer is
retried by the host with backoff until its deadline; another 4xx fails the send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callbridge.capabilities import Connection, Declaration
from callbridge.errors import ConfigError
from callbridge.hookspecs import hookimpl

from callbridge_webhook_out.settings import (
    WebhookOutSettings,
    __version__,
    connection_for,
    declaration_of,
    options,
    shared_secret,
)

if TYPE_CHECKING:
    from callbridge.context import HookContext
    from callbridge.models import ClientContact, ClosedMatter, Record

__all__ = ["WebhookOutSettings", "__version__", "connection", "declare", "send_closed_matter"]


@hookimpl
def declare() -> Declaration:
    return declaration_of()


@hookimpl
def connection(options: WebhookOutSettings | None) -> Connection:
    return connection_for(options)


@hookimpl
async def send_closed_matter(ctx: HookContext, client: ClientContact,
                             matter: ClosedMatter) -> Record:
    # Imported at the first send: loading the plugin (``callbridge plugins`` lists it)
    # does not load the HTTP client or the host's models.
    from callbridge.models import Record
    from callbridge.outbound import AddressPolicy, AddressRefused, check_url

    from callbridge_webhook_out import payload as wire

    opts = options(ctx)
    try:
        check_url(opts.url, AddressPolicy())
    except AddressRefused as exc:
        raise ConfigError(f"the webhook's url is refused: {exc}") from None
    secret = shared_secret(opts)
    closed = getattr(ctx.tenant, "closed_matters", None)
    source = closed.source if closed is not None else ""
    marker = ctx.delivery.marker if ctx.delivery is not None else f"matter-{matter.id}"

    async def post() -> str:
        now = ctx.clock.now()
        raw = wire.body(wire.payload(idempotency_id=marker, created_at=now,
                                     tenant=ctx.tenant_id, source=source, client=client,
                                     matter=matter))
        answer = await ctx.http.post(opts.url, content=raw, timeout=opts.timeout, headers={
            "Content-Type": "application/json",
            wire.SIGNATURE_HEADER: wire.signature(secret, int(now.timestamp()), raw),
            wire.IDEMPOTENCY_HEADER: marker})
        return _delivery_id(answer, marker)

    if ctx.delivery is None:
        return Record(kind="webhook", id=await post(), step="send")
    return await ctx.delivery.step("webhook", "send", create=post)


def _delivery_id(answer: Any, marker: str) -> str:
    """The receiver's id for the delivery when its JSON answer names one, else the marker."""
    try:
        data = answer.json()
    except ValueError:
        return marker
    given = data.get("id") if isinstance(data, dict) else None
    return given if isinstance(given, str) and 0 < len(given) <= 200 else marker
