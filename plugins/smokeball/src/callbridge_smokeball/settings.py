"""The plugin's options and how a connection reaches Smokeball."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: (auth host, API host) per region, production and staging (Smokeball's introduction page).
HOSTS: dict[tuple[str, bool], tuple[str, str]] = {
    ("US", False): ("https://auth.smokeball.com", "https://api.smokeball.com"),
    ("AU", False): ("https://auth.smokeball.com.au", "https://api.smokeball.com.au"),
    ("UK", False): ("https://auth.smokeball.co.uk", "https://api.smokeball.co.uk"),
    ("US", True): ("https://datastaging-auth.smokeball.com", "https://stagingapi.smokeball.com"),
    ("AU", True): ("https://datastaging-auth.smokeball.com.au",
                   "https://stagingapi.smokeball.com.au"),
    ("UK", True): ("https://datastaging-auth.smokeball.co.uk",
                   "https://stagingapi.smokeball.co.uk"),
}


class SmokeballSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.smokeball.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Literal["US", "AU", "UK"] = "US"
    staging: bool = Field(default=False, description="use Smokeball's staging hosts")
    api_base_url: str | None = Field(
        default=None, pattern=r"^https?://", description="override the API host (a sandbox)")
    auth_base_url: str | None = Field(
        default=None, pattern=r"^https?://", description="override the OAuth host (a sandbox)")
    grant: Literal["authorization_code", "client_credentials"] = Field(
        default="authorization_code",
        description="authorization_code: act as the Smokeball user who authorised; "
                    "client_credentials: the account's service access (account_id needed)")
    account_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the Smokeball account id, first in every path under client credentials")
    acting_user_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the Smokeball user id sent as the UserId header under client credentials")
    activity_code: str = Field(
        default="CB-CALL", min_length=1, max_length=20,
        description="the activity code that marks call fees, on a host without the "
                    "app setting activity_code_label")
    activity_code_description: str = Field(
        default="Phone call (logged by callbridge)", max_length=200,
        description="the description a newly created activity code gets")
    billing_unit_minutes: int = Field(
        default=6, ge=1, le=60,
        description="the firm's billing unit: talk time is billed in whole units, rounded up")
    fee_billable: bool | None = Field(
        default=None, description="billable flag of call fees; none: the app's default_billable")
    default_user_sort: Literal["last_name", "display_name"] = Field(
        default="last_name",
        description="the default user is the first enabled staff member by this key: "
                    "last_name (last name, then first name) or display_name (first then last)")
    matters_ttl_seconds: float = Field(
        default=300.0, ge=0, le=86400,
        description="how long a contact's open matters are kept before Smokeball is asked "
                    "again (0: every event asks)")
    fax_folder: str | None = Field(
        default="Faxes", max_length=200,
        description="folder path for fax documents on the matter; none: the root")

    @model_validator(mode="after")
    def _account(self) -> Self:
        if self.grant == "client_credentials" and not self.account_id:
            raise ValueError("account_id is required when grant is client_credentials")
        return self

    @property
    def auth_url(self) -> str:
        return (self.auth_base_url or HOSTS[(self.region, self.staging)][0]).rstrip("/")

    @property
    def api_url(self) -> str:
        return (self.api_base_url or HOSTS[(self.region, self.staging)][1]).rstrip("/")

    @property
    def base_url(self) -> str:
        """Where relative paths go: under client credentials, the account id comes first."""
        if self.grant == "client_credentials":
            return f"{self.api_url}/{self.account_id}"
        return self.api_url
