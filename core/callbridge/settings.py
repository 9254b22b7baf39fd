"""Settings: per tenant and per connected app, from a TOML file and the environment.

The file names tenants and their apps; secrets (client secrets, the ledger's
encryption key) come from environment variables only. :class:`SettingsSource`
re-reads the file when it changes, so a changed setting applies from the next
event without a restart. Every error names the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from callbridge.errors import ConfigError
from callbridge.phones import UnreadableNumber, to_e164
from callbridge.settings_base import _KEY_RULE, _STRICT, Key
from callbridge.settings_base import KEY_PATTERN as KEY_PATTERN  # re-exported
from callbridge.settings_closing import ClosedMatterSettings as ClosedMatterSettings
from callbridge.settings_closing import ClosedTrigger as ClosedTrigger
from callbridge.settings_serve import OperatorSettings as OperatorSettings
from callbridge.settings_serve import ServeSettings as ServeSettings
from callbridge.settings_serve import SourceSettings as SourceSettings
from callbridge.settings_workers import WorkerSettings as WorkerSettings


class EventType(StrEnum):
    """The types a contact creation policy admits (SPEC §2 step 2)."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"
    MISSED = "missed"
    COMPLETED = "completed"
    FAX = "fax"


ALL_TYPES = frozenset({EventType.INCOMING, EventType.OUTGOING, EventType.MISSED, EventType.COMPLETED})


class SeveralMatches(StrEnum):
    ASK = "ask"
    MOST_RECENT = "most_recent"
    ALL = "all"




class AppSettings(BaseModel):
    """One connected app of one tenant."""

    model_config = _STRICT

    plugin: str | None = Field(default=None, description="plugin name; defaults to the app's key")
    enabled: bool = True
    contact_creation: frozenset[EventType] = frozenset()
    several_matches: SeveralMatches = SeveralMatches.ASK
    exclusive_contact_association: bool = False
    matter_association: bool = True
    fax_logging: bool = True
    placeholder_name: str = Field(default="New callbridge Contact", min_length=1, max_length=100)
    default_billable: bool = False
    automatic_logging: bool = True
    delayed_logging_minutes: float = Field(default=5.0, ge=0, le=7 * 24 * 60)
    activity_code_label: str = Field(
        default="CB-CALL", min_length=1, max_length=60,
        description="the activity code (or its app's equivalent) that marks the host's entries")
    credentials_env: str | None = Field(
        default=None, pattern=r"^[A-Z][A-Z0-9_]*$",
        description="prefix of environment variables holding this app's secrets")
    options: dict[str, Any] = Field(default_factory=dict, description="the plugin's own settings")

    @field_validator("contact_creation", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else list(value or [])
        out: set[str] = set()
        for item in items:
            if item == "all":
                out |= {t.value for t in ALL_TYPES}
            elif item == "none":
                continue
            else:
                out.add(item)
        return out

    def admits(self, types: frozenset[EventType]) -> bool:
        return bool(types & self.contact_creation)


class TenantSettings(BaseModel):
    """One firm."""

    model_config = _STRICT

    name: str = ""
    time_zone: str = "UTC"
    default_region: str = Field(default="US", min_length=2, max_length=2)
    own_numbers: frozenset[str] = frozenset()
    extensions: dict[Annotated[str, Field(pattern=r"^[0-9*#]{1,20}$")],
                     Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=dict, description="extension -> staff email")
    retention_days: int = Field(default=365, ge=1, le=36500)
    source_secret_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    document_hosts: frozenset[Annotated[str, Field(
        pattern=r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")]] = Field(
        default=frozenset(), max_length=100,
        description="hosts the host may fetch event documents from (e.g. files.example.com, "
                    "*.example.com); none by default")
    apps: dict[Key, AppSettings] = Field(default_factory=dict)
    closed_matters: ClosedMatterSettings | None = Field(
        default=None, description="the closed-matter sync (docs/closed-matters.md); off when absent")
    sources: dict[Key, SourceSettings] = Field(
        default_factory=dict, description="phone systems sending events to callbridge serve")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone name") from None
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("is not a region code phonenumbers knows (e.g. US, GB, AU)")
        return value.upper()

    @field_validator("own_numbers", mode="before")
    @classmethod
    def _own(cls, value: Any, info: Any) -> Any:
        region = info.data.get("default_region", "US")
        out = set()
        for i, text in enumerate(value or []):
            try:
                out.add(to_e164(str(text), region))
            except UnreadableNumber as exc:
                raise ValueError(f"entry {i} cannot be read as a phone number ({exc})") from None
        return out

    @model_validator(mode="after")
    def _closed_apps(self) -> TenantSettings:
        closed = self.closed_matters
        if closed is not None:
            for role in ("source", "destination"):
                if getattr(closed, role) not in self.apps:
                    raise ValueError(f"closed_matters.{role} names no app of this tenant")
            if closed.source == closed.destination:
                raise ValueError("closed_matters.destination must be another app than its source")
        return self

    def app_plugin(self, app: str) -> str:
        return self.apps[app].plugin or app


class LedgerSettings(BaseModel):
    """Where the ledger is, and how long a worker holds a delivery."""

    model_config = _STRICT

    url: str = Field(default="sqlite:///callbridge.db", max_length=2000)
    lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    max_attempts: int = Field(default=8, ge=1, le=1000)
    # Transient failures are retried until this long after the event (SPEC §2.6).
    deadline_hours: float = Field(default=72.0, gt=0, le=24 * 366)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_ledger_url(value)
        return value


def check_ledger_url(value: str) -> None:
    """Raise ValueError (never holding the URL, which may hold a password) unless
    ``value`` is a SQLite or PostgreSQL URL whose driver is installed."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(value)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError("is not a database URL (e.g. sqlite:///callbridge.db)") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError("names a database the ledger does not support (sqlite or postgresql)")
    try:
        dialect = url.get_dialect()
    except (sa.exc.NoSuchModuleError, ImportError):
        raise ValueError("names a database driver SQLAlchemy does not know") from None
    try:
        dialect.import_dbapi()
    except ImportError:
        raise ValueError(
            f"needs the {url.get_driver_name()} driver, which is not installed (install it, "
            "or name an installed driver, e.g. postgresql+psycopg://)") from None


class QuarantineSettings(BaseModel):
    """How much refused input is kept, and for how long (``callbridge quarantine``)."""

    model_config = _STRICT

    retention_days: int = Field(default=30, ge=1, le=36500,
                                description="for entries whose tenant is not known")
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_total_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=2**40)


class ModeSettings(BaseModel):
    model_config = _STRICT

    digest_every_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    digest_lookback_hours: float = Field(default=4, gt=0, le=24 * 366)
    notes_grace_seconds: float = Field(
        default=20, ge=0, le=3600,
        description="how long an ended call seen in progress waits before its automatic log, "
                    "for notes taken during the call that arrive after it ended")

    @property
    def digest_lookback(self) -> timedelta:
        return timedelta(hours=self.digest_lookback_hours)


class Settings(BaseModel):
    """The whole file."""

    model_config = _STRICT

    ledger: LedgerSettings = LedgerSettings()
    modes: ModeSettings = ModeSettings()
    quarantine: QuarantineSettings = QuarantineSettings()
    operators: dict[Key, OperatorSettings] = Field(default_factory=dict)
    serve: ServeSettings = ServeSettings()
    workers: WorkerSettings = WorkerSettings()
    tenants: dict[Key, TenantSettings] = Field(default_factory=dict)
    tenants_dir: str | None = Field(
        default=None, min_length=1, max_length=1000,
        description="a directory of one file per tenant, KEY.toml (relative to this file)")
    secrets_file: str | None = Field(
        default=None, min_length=1, max_length=1000,
        description="a TOML file of secrets by variable name (relative to this file; chmod 600)")

    def tenant(self, name: str) -> TenantSettings:
        try:
            return self.tenants[name]
        except KeyError:
            raise KeyError(name) from None


def _loc(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts)


def _problem(err: Any) -> str:
    """One validation error as ``key.path: problem``; a bad table key is not echoed."""
    loc = list(err["loc"])
    if "[key]" in loc:
        at = loc.index("[key]")
        return f"{_loc(tuple(loc[:at - 1]))}: a key {_KEY_RULE}"
    msg = str(err["msg"])
    return f"{_loc(err['loc'])}: {msg.removeprefix('Value error, ')}"


def _option_problems(tname: str, tenant: TenantSettings,
                     plugin_models: Mapping[str, type[BaseModel] | None] | None) -> list[str]:
    problems = []
    for aname, app in tenant.apps.items():
        model = (plugin_models or {}).get(app.plugin or aname)
        if model is None:
            if app.options and plugin_models is not None and (app.plugin or aname) in plugin_models:
                problems.append(f"tenants.{tname}.apps.{aname}.options: this plugin takes no options")
            continue
        try:
            model.model_validate(app.options)
        except ValidationError as exc:
            for e in exc.errors(include_input=False, include_url=False):
                problems.append(f"tenants.{tname}.apps.{aname}.options.{_loc(e['loc'])}: {e['msg']}")
    return problems


def _invalid(origin: str, problems: list[str]) -> ConfigError:
    return ConfigError(f"{origin}: invalid settings\n  - " + "\n  - ".join(problems))


def parse_settings(data: Mapping[str, Any], *, origin: str,
                   plugin_models: Mapping[str, type[BaseModel] | None] | None = None) -> Settings:
    """Validate settings; ``plugin_models`` maps plugin names to their settings models.

    Raises :class:`ConfigError` naming ``origin`` and every bad key.
    """
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _invalid(origin, [_problem(e) for e in exc.errors(
            include_input=False, include_url=False)]) from None
    problems = [p for tname, tenant in settings.tenants.items()
                for p in _option_problems(tname, tenant, plugin_models)]
    if problems:
        raise _invalid(origin, problems)
    return settings


def parse_tenant(key: str, data: Mapping[str, Any], *, origin: str,
                 plugin_models: Mapping[str, type[BaseModel] | None] | None = None
                 ) -> TenantSettings:
    """One tenant's settings from its own file (the keys of a ``[tenants.KEY]`` table)."""
    try:
        tenant = TenantSettings.model_validate(data)
    except ValidationError as exc:
        raise _invalid(origin, [f"tenants.{key}.{_problem(e)}" for e in exc.errors(
            include_input=False, include_url=False)]) from None
    problems = _option_problems(key, tenant, plugin_models)
    if problems:
        raise _invalid(origin, problems)
    return tenant


def load_settings(path: Path, plugin_models: Mapping[str, type[BaseModel] | None] | None = None) -> Settings:
    """The settings of one file (a ``tenants_dir`` it names is read by :class:`SettingsSource`)."""
    from callbridge.settings_source import read_toml

    return parse_settings(read_toml(path), origin=str(path), plugin_models=plugin_models)


# Where settings are read from (kept importable from here).
from callbridge.settings_source import SettingsSource as SettingsSource  # noqa: E402
from callbridge.settings_source import secret as secret  # noqa: E402
