"""What every settings model shares: strictness and the rule for a tenant's or app's key."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)

#: A tenant's key, as events name it (``tenant`` in the event JSON); apps' keys alike.
KEY_PATTERN = r"^[A-Za-z0-9._-]+$"
Key = Annotated[str, Field(min_length=1, max_length=100, pattern=KEY_PATTERN)]
_KEY_RULE = "is not valid: 1 to 100 letters, digits, '.', '_' or '-'"
