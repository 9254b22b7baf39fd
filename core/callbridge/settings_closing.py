"""Settings of the closed-matter sync (``[tenants.X.closed_matters]``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from callbridge.settings_base import _STRICT, Key


class ClosedTrigger(BaseModel):
    """One trigger of the closed-matter sync: a checkbox custom field, by exact name."""

    model_config = _STRICT

    enabled: bool = False
    field: str = Field(min_length=1, max_length=200,
                       description="the checkbox custom field's exact, case-sensitive name")


class ClosedMatterSettings(BaseModel):
    """A firm's closed-matter sync (``[tenants.X.closed_matters]``, docs/closed-matters.md).

    ``source`` and ``destination`` are keys of the tenant's ``apps``: the app that
    reports closed matters (Clio) and the platform the clients go to (a signed
    webhook). With neither trigger enabled nothing is sent unless
    ``send_every_closed_matter`` is set.
    """

    model_config = _STRICT

    enabled: bool = True
    source: Key
    destination: Key
    opt_out: ClosedTrigger = Field(
        default_factory=lambda: ClosedTrigger(field="BroadlyOptOut"),
        description="a checkbox on the client contact: checked means do not send")
    opt_in: ClosedTrigger = Field(
        default_factory=lambda: ClosedTrigger(field="SendBroadlyThankYou"),
        description="a checkbox on the matter: the client is sent only when it is checked")
    send_every_closed_matter: bool = Field(
        default=False, description="with no trigger enabled, send every closed matter's client")
    send_again_when_closed_again: bool = Field(
        default=False, description="a matter re-opened and closed again is sent again")
    poll_minutes: float = Field(default=15.0, ge=0.5, le=24 * 60,
                                description="how often `serve` polls the source")
    deadline_hours: float = Field(default=72.0, gt=0, le=24 * 366,
                                  description="how long a failing send is retried before it is dead")
    since: datetime | None = Field(
        default=None, description="where the firm's sync starts (aware time); default: its "
                                  "first run, so matters closed before it are never sent")

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-03-01T00:00:00Z)")
        return value
