"""Building the host's parts from a settings file: plugins, settings, ledger, engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from callbridge.engine import Engine
from callbridge.errors import ConfigError
from callbridge.ledger import Ledger
from callbridge.plugins import Registry, discover
from callbridge.settings import Settings, SettingsSource

ENV_CONFIG = "CALLBRIDGE_CONFIG"


def config_path(explicit: Path | None) -> Path | None:
    """``--config``, else ``$CALLBRIDGE_CONFIG``, else ./callbridge.toml if it exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    default = Path("callbridge.toml")
    return default if default.exists() else None


def ledger_url(settings: Settings, path: Path | None) -> str:
    """The ledger URL; a relative SQLite path is taken from the settings file's folder."""
    url = settings.ledger.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and path is not None:
        return prefix + str((path.parent / url[len(prefix):]).resolve())
    return url


@dataclass
class Runtime:
    registry: Registry
    settings: SettingsSource
    path: Path | None

    def ledger(self) -> Ledger:
        current = self.settings.current()
        ledger = Ledger(ledger_url(current, self.path),
                        deadline_hours=current.ledger.deadline_hours)
        ledger.migrate()
        return ledger

    def engine(self, **kwargs: object) -> Engine:
        return Engine(settings=self.settings, registry=self.registry, ledger=self.ledger(), **kwargs)  # type: ignore[arg-type]


def load(path: Path | None, *, strict: bool | None = None) -> Runtime:
    registry = discover(strict=strict)
    if path is not None and not path.exists():
        raise ConfigError(f"{path}: no such settings file")
    source = SettingsSource(path, plugin_models=registry.settings_models())
    return Runtime(registry=registry, settings=source, path=path)
