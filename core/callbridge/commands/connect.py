"""``callbridge auth`` and ``check``: connecting a tenant's app and checking the connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

from callbridge.commands import fail, runtime
from callbridge.console import err, line
from callbridge.console import out as console
from callbridge.errors import CallbridgeError, ConfigError


def auth(app_name: str, tenant: str, redirect_uri: str, redirect_url: str | None,
         config: Path | None) -> None:
    """Connect an OAuth 2.0 app: print the authorise URL, then finish from the redirect URL."""
    from callbridge import oauth
    from callbridge.connections import Connections

    rt = runtime(config)
    settings = rt.settings.current()
    try:
        resolved = Connections(rt.registry).resolve(tenant, settings.tenant(tenant), app_name)
    except (CallbridgeError, KeyError) as exc:
        raise fail(str(exc) if isinstance(exc, CallbridgeError)
                   else f"tenant {tenant!r} has no app {app_name!r} in the settings") from None
    conn = resolved.connection
    if conn.auth != "oauth2" or conn.oauth2 is None:
        raise fail(f"{app_name} does not use OAuth 2.0; nothing to authorise")
    prefix = resolved.settings.credentials_env
    client_id, client_secret = resolved.credentials.client_id, resolved.credentials.client_secret
    if not client_id or not client_secret:
        raise fail(f"set {prefix or '<credentials_env>'}_CLIENT_ID and _CLIENT_SECRET first", 2)
    ledger = rt.ledger()
    if redirect_url is None:
        state = oauth.new_state()
        ledger.kv_set(tenant, app_name, "oauth:state", state)
        print(oauth.authorize_url(conn.oauth2, client_id=client_id, redirect_uri=redirect_uri,
                                  state=state))
        err.print("Open this URL, approve, then run this command again with --redirect-url "
                  "set to the address the browser was sent back to.")
        return
    expected = ledger.kv_get(tenant, app_name, "oauth:state")
    if expected is None:
        raise fail("no authorisation in progress: run without --redirect-url first")
    token = asyncio.run(oauth.exchange_code(
        conn.oauth2, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri,
        redirect_url_received=redirect_url, expected_state=expected))
    ledger.token_set(tenant, app_name, token)
    ledger.kv_delete(tenant, app_name, "oauth:state")
    # Deliveries parked for re-authorisation (and 1.x failures on authentication) run again now.
    released = oauth.reconnected(ledger, tenant, app_name)
    console.print(line(f"{tenant}/{app_name} connected; {released} delivery(ies) queued again"))


def check(tenant: str, app_name: str, config: Path | None) -> None:
    """Check one connection: credentials, token refresh and a cheap read from the app."""
    from callbridge.capabilities import Capability
    from callbridge.events import ExternalParty

    rt = runtime(config)
    engine = rt.engine()

    async def go() -> str:
        try:
            tenant_settings = engine.config.tenant(tenant)
            hooks = engine.hooks_for(tenant_settings, app_name)
            ctx = engine.context(tenant, app_name)
            closed = tenant_settings.closed_matters
            if closed is not None and closed.enabled and app_name == closed.source:
                from callbridge.closing.check import check_fields

                problems = await check_fields(engine, tenant)
                if problems:
                    raise ConfigError("closed-matter sync: " + "; ".join(problems))
                return ("ok: the app answered, and the closed-matter sync's fields exist "
                        "as checkboxes")
            if hooks.supports(Capability.USERS):
                user = await hooks.pick_default_user(ctx)
                return f"ok: the app answered (default user {'found' if user else 'not found'})"
            if hooks.supports(Capability.CONTACT_SEARCH_PHONE):
                party = ExternalParty.model_validate({"number": "+12125550100"})
                await hooks.find_contact(ctx, party=party)
                return "ok: the app answered a contact search"
            resolved = engine.connections.resolve(tenant, tenant_settings, app_name)
            if resolved.connection.outbound:  # a URL the user gave: where would it go?
                from callbridge.outbound import AddressPolicy, AddressRefused, check_outbound

                try:
                    await check_outbound(resolved.connection.base_url, AddressPolicy())
                except AddressRefused as exc:
                    raise ConfigError(f"the app's URL is refused: {exc}") from None
                return ("ok: settings present, and the app's URL is https on a public "
                        "address (nothing was sent)")
            return "ok: settings and credentials present (the plugin offers no cheap read)"
        finally:
            await engine.aclose()

    try:
        console.print(line(asyncio.run(go())))
    except KeyError as exc:
        raise fail(f"not configured: {exc}", 2) from None
    except CallbridgeError as exc:
        kind = getattr(exc, "code", "error")
        raise fail(f"{tenant}/{app_name}: {kind}: {exc}") from None
