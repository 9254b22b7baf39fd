"""``callbridge doctor``: settings, plugins, credentials and ledger checked, and a
diagnostics dump with every secret and number redacted."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from callbridge import HOOK_API_VERSION, __version__
from callbridge.connections import NO_CONNECTION, Connections
from callbridge.errors import CallbridgeError, ConfigError
from callbridge.phones import mask_number
from callbridge.plugins import discover
from callbridge.settings import SettingsSource

SECRET_ENV = "CALLBRIDGE_SECRET_KEY"


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _check(name: str, status: str, detail: str) -> dict[str, str]:
    return {"name": name, "status": status, "detail": detail}


def diagnose(path: Path | None) -> dict[str, Any]:
    """Run every check; return a JSON-able report holding no secret or full number."""
    checks: list[dict[str, str]] = []
    registry = discover(strict=False)
    for plugin in registry.plugins.values():
        checks.append(_check(f"plugin {plugin.name}", "ok",
                             f"{plugin.distribution} {plugin.dist_version}, hooks: {', '.join(plugin.hooks)}"))
    for error in registry.errors:
        checks.append(_check(f"plugin {error.entry_point}", "fail", str(error)))
    checks.append(_check("encryption key", "ok" if os.environ.get(SECRET_ENV) else "fail",
                         "set" if os.environ.get(SECRET_ENV) else
                         f"{SECRET_ENV} is not set; make one with `callbridge keygen`"))
    dump: dict[str, Any] = {
        "callbridge": __version__, "hook_api": HOOK_API_VERSION,
        "python": platform.python_version(), "settings_file": str(path) if path else None,
        "plugins": {p.name: p.dist_version for p in registry.plugins.values()},
    }
    if path is None:
        checks.append(_check("settings", "warn", "no settings file (use --config or CALLBRIDGE_CONFIG)"))
        return {"checks": checks, "dump": dump}
    try:
        settings = SettingsSource(path, plugin_models=registry.settings_models()).current()
    except CallbridgeError as exc:
        checks.append(_check("settings", "fail", str(exc)))
        return {"checks": checks, "dump": dump}
    checks.append(_check("settings", "ok", f"{path}: {len(settings.tenants)} tenant(s)"))
    tenants: dict[str, Any] = {}
    connections = Connections(registry)
    for tname, tenant in settings.tenants.items():
        apps = {}
        for aname, app in tenant.apps.items():
            plugin_name = app.plugin or aname
            if plugin_name not in registry.plugins:
                checks.append(_check(f"{tname}/{aname}", "fail", f"plugin {plugin_name!r} is not loaded"))
                continue
            try:
                resolved = connections.resolve(tname, tenant, aname)
            except CallbridgeError as exc:
                checks.append(_check(f"{tname}/{aname}", "fail", str(exc)))
                continue
            options, conn = resolved.options, resolved.connection
            auth = conn.auth
            missing = []
            needed = {"api_key": ["api_key"], "bearer": ["token"],
                      "oauth2": ["client_id", "client_secret"]}.get(auth, [])
            if conn.send_api_key and "api_key" not in needed:
                needed = [*needed, "api_key"]
            for key in needed:
                if not getattr(resolved.credentials, key):
                    missing.append(f"{app.credentials_env or '<credentials_env>'}_{key.upper()}")
            checks.append(_check(f"{tname}/{aname} credentials", "fail" if missing else "ok",
                                 f"missing environment variables: {', '.join(missing)}" if missing
                                 else f"{auth} credentials present"))
            apps[aname] = {
                "plugin": plugin_name, "auth": auth,
                "base_url": conn.base_url if conn is not NO_CONNECTION else None,
                "settings": app.model_dump(mode="json", exclude={"options"}),
                "options": _redact_options(options.model_dump(mode="json") if options else {}),
            }
        tenants[tname] = {
            "time_zone": tenant.time_zone, "default_region": tenant.default_region,
            "own_numbers": sorted(mask_number(n) for n in tenant.own_numbers),
            "extensions": {ext: _mask_email(email) for ext, email in tenant.extensions.items()},
            "retention_days": tenant.retention_days, "apps": apps,
        }
    dump["tenants"] = tenants
    dump["ledger"] = {"url": _redact_url(settings.ledger.url)}
    checks += _unreadable_numbers(path, settings)
    return {"checks": checks, "dump": dump}


def _unreadable_numbers(path: Path, settings: Any) -> list[dict[str, str]]:
    """One warning per contact whose stored numbers the phone index could not read:
    app, contact id and the reason (a count, never the number)."""
    if not os.environ.get(SECRET_ENV):
        return []
    import json

    from callbridge.runtime import load

    try:
        ledger = load(path, strict=False).ledger()
    except ConfigError as exc:  # its message names the setting or variable, never a secret
        return [_check("ledger", "fail", f"cannot be opened: {exc}")]
    except Exception as exc:  # doctor reports; it never stops on a check
        return [_check("ledger", "fail", f"cannot be opened ({type(exc).__name__})")]
    out = []
    closing = [t for t in settings.tenants.values() if t.closed_matters is not None]
    registry = discover(strict=False) if closing else None
    for tname, tenant in settings.tenants.items():
        if registry is not None and tenant.closed_matters is not None:
            from callbridge.closing.check import doctor_checks

            out += doctor_checks(ledger, registry, tname, tenant)
        for aname in tenant.apps:
            out += _held(ledger, tname, aname)
            raw = ledger.kv_get(tname, aname, "index:unreadable")
            for contact_id, count in sorted((json.loads(raw) if raw else {}).items()):
                out.append(_check(
                    f"{tname}/{aname} contact {contact_id}", "warn",
                    f"{count} stored phone number(s) cannot be read as a number "
                    f"(region {tenant.default_region}); this contact is never matched by number"))
    return out


def _held(ledger: Any, tname: str, aname: str) -> list[dict[str, str]]:
    """Deliveries held back for the app: parked (by reason), and waiting for its daily limit."""
    out = []
    parked: dict[str, int] = {}
    for view in ledger.history(tenant=tname, app=aname, status="parked", limit=100_000):
        parked[view.reason or "unknown"] = parked.get(view.reason or "unknown", 0) + 1
    for reason, count in sorted(parked.items()):
        out.append(_check(f"{tname}/{aname} parked", "warn",
                          f"{count} deliveries parked ({reason}); see `callbridge history`"))
    daily = [v for v in ledger.history(tenant=tname, app=aname, status="waiting", limit=100_000)
             if v.reason == "daily_limit" or "daily" in (v.message or "").lower()]
    if daily:
        resume = min((v.next_attempt_at for v in daily if v.next_attempt_at), default=None)
        out.append(_check(f"{tname}/{aname} daily limit", "warn",
                          f"{len(daily)} deliveries wait for the app's daily limit to reset"
                          + (f"; they resume at {resume.isoformat()}" if resume else "")))
    return out


_SECRETISH = ("secret", "token", "password", "key", "signature")


def _redact_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if any(s in key.lower() for s in _SECRETISH):
            out[key] = "***"
        else:
            out[key] = value
    return out


def _redact_url(url: str) -> str:
    # postgresql://user:password@host/db -> postgresql://user:***@host/db
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
