"""``callbridge purge``, ``erase`` and ``rotate-key``: the ledger's data kept lawful."""

from __future__ import annotations

from pathlib import Path

from callbridge.commands import fail, runtime
from callbridge.console import line
from callbridge.console import out as console


def purge(config: Path | None) -> None:
    """Erase event contents past each tenant's retention period (outcomes stay)."""
    from callbridge.quarantine import Quarantine

    rt = runtime(config)
    settings = rt.settings.current()
    retention = {name: t.retention_days for name, t in settings.tenants.items()}
    ledger = rt.ledger()
    n = ledger.purge(retention)
    q = Quarantine(ledger, settings.quarantine).purge(retention)
    console.print(line(f"erased the contents of {n} event(s); dropped {q} quarantined line(s)"))


def erase(tenant: str, number: str, config: Path | None) -> None:
    """Erase a person's data on request: the contents of the tenant's events with this number."""
    from callbridge.phones import UnreadableNumber, mask_number, search_forms, to_e164
    from callbridge.quarantine import Quarantine

    rt = runtime(config)
    try:
        region = rt.settings.current().tenant(tenant).default_region
    except KeyError:
        raise fail(f"no tenant {tenant!r} in the settings", 2) from None
    try:
        e164 = to_e164(number, region)
    except UnreadableNumber as exc:
        raise fail(f"the number cannot be read ({exc})", 2) from None
    ledger = rt.ledger()
    n = ledger.erase_person(tenant, e164)
    Quarantine(ledger).erase_number(tenant, search_forms(e164))
    from callbridge.closing.erasure import erase_number

    erase_number(ledger, tenant, rt.settings.current().tenant(tenant), e164)
    console.print(line(f"erased the contents of {n} event(s) of {mask_number(e164)}; "
                       "outcomes stay"))


def rotate_key(config: Path | None) -> None:
    """Re-encrypt the ledger under CALLBRIDGE_NEW_SECRET_KEY."""
    from callbridge.errors import ConfigError
    from callbridge.rotation import NEW_KEY_ENV
    from callbridge.rotation import rotate_key as rotate

    rt = runtime(config)
    try:
        done = rotate(rt.ledger().engine)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    console.print(line(f"re-encrypted {done.rewritten} value(s) ({done.already_new} were already "
                       f"under the new key); now set CALLBRIDGE_SECRET_KEY to {NEW_KEY_ENV}'s value"))
