"""The settings of one operator of the operator API (``[operators.NAME]``), in a
module of their own so :mod:`callbridge.settings` stays one page per concern."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["OperatorSettings"]

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)
# As callbridge.settings.Key (kept here: that module imports this one).
_Key = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]


class OperatorSettings(BaseModel):
    """One operator of the operator API (``[operators.NAME]``): how its bearer token is
    checked, and the tenants it may act for.

    The token itself is never in the file: ``token_sha256`` is its SHA-256 (hex), as
    ``callbridge operator-token`` prints it, or ``token_env`` names the environment
    variable holding it.
    """

    model_config = _STRICT

    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                     description="the token's SHA-256, 64 lower-case hex digits")
    token_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$",
                                  description="the environment variable holding the token")
    tenants: frozenset[_Key] | None = Field(
        description='the tenants this operator may act for: a list of keys, or "all"')

    @field_validator("tenants", mode="before")
    @classmethod
    def _tenants(cls, value: Any) -> Any:
        if value == "all":
            return None
        if value is None or isinstance(value, str):
            raise ValueError('must be a list of tenant keys, or "all"')
        return value

    @model_validator(mode="after")
    def _one_token(self) -> OperatorSettings:
        if (self.token_sha256 is None) == (self.token_env is None):
            raise ValueError("give exactly one of token_sha256 and token_env")
        return self
