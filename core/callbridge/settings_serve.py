"""Settings of ``callbridge serve``: the server, its phone-system sources and its operators."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from callbridge.settings_base import _STRICT, Key


class SourceSettings(BaseModel):
    """One phone system that sends a tenant's events to ``callbridge serve``
    (``POST /v1/sources/{tenant}/{source}``)."""

    model_config = _STRICT

    format: str = Field(default="callbridge", min_length=1, max_length=100,
                        pattern=r"^[A-Za-z0-9._-]+$",
                        description="the source adapter (entry point group callbridge.sources)")
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$",
                            description="the environment variable holding the signing key")
    previous_secret_env: str | None = Field(
        default=None, pattern=r"^[A-Z][A-Z0-9_]*$",
        description="the key being rotated out, accepted as well until removed")
    options: dict[str, Any] = Field(default_factory=dict, description="the adapter's own settings")


class ServeSettings(BaseModel):
    """``callbridge serve``: where it listens and what it takes."""

    model_config = _STRICT

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, max_length=2000, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the address senders use (behind a proxy); default http://host:port")
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=32 * 1024 * 1024,
        description="the largest request body taken; a larger one is refused (413)")
    read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600,
        description="how long a request's body may take to arrive; a slower one is refused (408)")
    replay_window_seconds: float = Field(
        default=300.0, ge=30, le=3600,
        description="how far a signature's time may be from the server's (either way)")
    shutdown_grace_seconds: float = Field(
        default=10.0, ge=0, le=600,
        description="on shutdown, how long deliveries being worked may take to finish")
    metrics_access: Literal["operator", "open"] = Field(
        default="operator",
        description='who may read /metrics: "operator" (an operator token for every tenant) '
                    'or "open" (anyone who reaches the server)')


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
    tenants: frozenset[Key] | None = Field(
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
