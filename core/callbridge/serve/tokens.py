"""Operator tokens: making one, and what the settings keep of it (its SHA-256).

No web library is needed here: ``callbridge operator-token`` runs without the serve
extra.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

from callbridge.settings_base import KEY_PATTERN

__all__ = ["TOKEN_PREFIX", "new_token", "print_token", "token_hash", "token_instructions"]

#: Every operator token starts with this, so a leaked one is easy to recognise.
TOKEN_PREFIX = "cbo_"


def new_token() -> str:
    """A new operator token: the prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the settings keep of a token (``token_sha256``)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_instructions(name: str, tenants: Iterable[str] | None) -> tuple[str, str]:
    """A new token for operator ``name`` and the settings lines that admit it:
    ``(token, lines)``. ``tenants`` None means every tenant."""
    if not re.match(KEY_PATTERN, name) or len(name) > 100:
        raise ValueError("name: 1 to 100 letters, digits, '.', '_' or '-'")
    chosen = None if tenants is None else sorted(set(tenants))
    for tenant in chosen or ():
        if not re.match(KEY_PATTERN, tenant) or len(tenant) > 100:
            raise ValueError("tenant: 1 to 100 letters, digits, '.', '_' or '-'")
    token = new_token()
    scope = '"all"' if chosen is None else "[" + ", ".join(f'"{t}"' for t in chosen) + "]"
    lines = (f"[operators.{name}]\n"
             f'token_sha256 = "{token_hash(token)}"\n'
             f"tenants = {scope}\n")
    return token, lines


def print_token(name: str, tenants: Iterable[str] | None) -> None:
    """``callbridge operator-token``: the token on standard output (for a script to
    capture), the settings lines on standard error."""
    import sys

    from callbridge.commands import fail

    try:
        token, lines = token_instructions(name, tenants or None)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    print(token)
    # Written as is (not through rich, which would wrap the hash): every part was checked.
    sys.stderr.write("Give the token above to the operator (it is not shown again) and add "
                     "these lines to the settings file:\n\n" + lines)
