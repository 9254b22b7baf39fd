"""The plugin's options, its declaration and its connection."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability, Connection, Declaration
from callbridge.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from callbridge.context import HookContext

try:
    __version__ = version("callbridge-webhook-out")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"


class WebhookOutSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.<name>.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(max_length=2000, description="where each client is POSTed (https)")
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$",
                            description="the environment variable holding the shared secret "
                                        "the signature is made with")
    timeout: float = Field(default=10.0, gt=0, le=60,
                           description="seconds to wait for the receiver's answer")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("https", "http") or not rest or "@" in rest.split("/")[0]:
            raise ValueError("must be an https URL without a user name")
        return value


def options(ctx: HookContext) -> WebhookOutSettings:
    if not isinstance(ctx.options, WebhookOutSettings):
        raise ConfigError("the webhook's options (url, secret_env) are not set")
    return ctx.options


def shared_secret(opts: WebhookOutSettings) -> str:
    from callbridge.redact import register_secret  # loads the phone numbers' library: at send
    from callbridge.settings_source import secret_variable

    secret = secret_variable(opts.secret_env) or ""
    if not secret:
        raise ConfigError(f"the shared secret is not set: put it in the environment variable "
                          f"{opts.secret_env} (or the host's secrets file)")
    register_secret(secret, slot=f"webhook_out:{opts.secret_env}")
    return secret


def declaration_of() -> Declaration:
    return Declaration(
        name="webhook_out", title="Signed webhook", version=__version__, hook_api_version="2.0",
        capabilities=frozenset({Capability.CLOSED_MATTER_DESTINATION}),
        settings_model=WebhookOutSettings)


def connection_for(opts: WebhookOutSettings | None) -> Connection:
    url = opts.url if opts is not None else "https://webhook.invalid/"
    return Connection(base_url=url, auth="none", outbound=True)
