"""Where the settings come from: one file, a directory of tenant files, a secrets file.

A deployment for many firms keeps the shared settings in one file and each firm in a
file of its own, ``{tenants_dir}/{key}.toml`` (the same keys as a ``[tenants.KEY]``
table); its secrets are read from a secrets file (``secrets_file``: variable names to
values, e.g. ``ACME_CLIO_CLIENT_SECRET = "..."``) as well as from the environment.

:meth:`SettingsSource.refresh` re-reads only what changed: a tenant whose file did
not change keeps its very objects, so its connection, cache and client are kept; a
changed tenant gets new ones from its next delivery. ``callbridge serve`` calls it
off the event loop; :meth:`SettingsSource.current` never scans the directory once
it is loaded.
"""

from __future__ import annotations

import os
import stat
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbridge.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from callbridge.settings import Settings, TenantSettings

Stamp = tuple[int, int]


def _stamp(path: Path) -> Stamp:
    info = path.stat()
    return (info.st_mtime_ns, info.st_size)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; ConfigError naming the file (never its content) otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (at byte {exc.start + 1})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


# --- secrets ----------------------------------------------------------------------------

_secrets_lock = threading.Lock()
_secrets: dict[str, str] = {}
_secrets_file: tuple[Path, Stamp] | None = None


def load_secrets_file(path: Path | None) -> None:
    """Use ``path`` as this process's secrets file (None: none); read again when it changed.

    The file must be readable by its owner only (``chmod 600``), as an SSH key must.
    """
    global _secrets_file, _secrets
    with _secrets_lock:
        if path is None:
            _secrets_file, _secrets = None, {}
            return
        try:
            info = path.stat()
        except OSError as exc:
            raise ConfigError(f"secrets_file {path}: cannot be read ({exc.strerror})") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"secrets_file {path}: other users may read it; allow only its "
                              "owner (chmod 600)")
        stamp = (info.st_mtime_ns, info.st_size)
        if _secrets_file == (path, stamp):
            return
        data = read_toml(path)
        bad = [name for name, value in data.items() if not isinstance(value, str)]
        if bad:
            # The names are variable names, never secrets; the values are not shown.
            raise ConfigError(f"secrets_file {path}: {', '.join(sorted(bad)[:5])}: each value "
                              "must be a string")
        _secrets = dict(data)
        _secrets_file = (path, stamp)


def secret_variable(variable: str) -> str | None:
    """The secret named ``variable``: from the environment, else from the secrets file."""
    value = os.environ.get(variable)
    return value if value is not None else _secrets.get(variable)


def secret(env_prefix: str | None, name: str) -> str | None:
    """A secret: ``{env_prefix}_{NAME}`` from the environment, else from the secrets file."""
    if not env_prefix:
        return None
    return secret_variable(f"{env_prefix}_{name.upper()}")


# --- the source -------------------------------------------------------------------------


@dataclass
class Refreshed:
    """What one :meth:`SettingsSource.refresh` changed."""

    whole: bool = False  # the main file changed: everything was read again
    tenants: set[str] = field(default_factory=set)  # tenants added, changed or removed


class SettingsSource:
    """The current settings: the main file and, if it names one, its tenants directory.

    ``watch`` (the default, for commands that run once) re-reads the main file when
    it changed at each :meth:`current`; a long-running server passes ``watch=False``
    and calls :meth:`refresh` off its event loop instead.
    """

    def __init__(self, path: Path | None, *, default: Settings | None = None,
                 plugin_models: Mapping[str, type[BaseModel] | None] | None = None,
                 watch: bool = True) -> None:
        from callbridge.settings import Settings

        self.path = path
        self.plugin_models = dict(plugin_models or {})
        self.watch = watch
        self._stamp: Stamp | None = None
        self._settings = default or Settings()
        self._files: dict[str, tuple[Path, Stamp]] = {}  # tenant -> its file, as last read
        self._lock = threading.Lock()
        if path is not None:
            self.refresh()

    def current(self) -> Settings:
        if self.path is not None and self.watch and _stamp(self.path) != self._stamp:
            self.refresh()
        return self._settings

    # --- reading ------------------------------------------------------------------------

    def _dir(self, settings: Settings) -> Path | None:
        if settings.tenants_dir is None or self.path is None:
            return None
        return (self.path.parent / settings.tenants_dir).resolve()

    def _tenant(self, key: str, path: Path) -> TenantSettings:
        from callbridge.settings import parse_tenant

        return parse_tenant(key, read_toml(path), origin=str(path),
                            plugin_models=self.plugin_models)

    def refresh(self) -> Refreshed:
        """Read again what changed since the last call; what it changed.

        Raises :class:`ConfigError` (the settings in use stay) for a file that does not read.
        """
        from callbridge.settings import load_settings

        assert self.path is not None
        with self._lock:
            stamp = _stamp(self.path)
            old = self._settings
            if stamp != self._stamp:
                fresh = load_settings(self.path, self.plugin_models)
                files: dict[str, tuple[Path, Stamp]] = {}
                tenants = dict(fresh.tenants)
                folder = self._dir(fresh)
                if folder is not None:
                    for key, (path, file_stamp) in self._scan(folder).items():
                        if key in tenants:
                            raise ConfigError(f"{path}: tenant {key!r} is also in {self.path}; "
                                              "keep it in one place")
                        tenants[key] = self._tenant(key, path)
                        files[key] = (path, file_stamp)
                self._load_secrets(fresh)
                tenants = _keep_unchanged(old.tenants, tenants)
                changed = {k for k in old.tenants.keys() | tenants.keys()
                           if old.tenants.get(k) is not tenants.get(k)}
                self._settings = fresh.model_copy(update={"tenants": tenants})
                self._files, self._stamp = files, stamp
                return Refreshed(whole=True, tenants=changed)
            folder = self._dir(old)
            self._load_secrets(old)
            if folder is None:
                return Refreshed()
            return self._refresh_tenants(folder)

    def _load_secrets(self, settings: Settings) -> None:
        if settings.secrets_file is None or self.path is None:
            load_secrets_file(None)
            return
        load_secrets_file((self.path.parent / settings.secrets_file).resolve())

    @staticmethod
    def _scan(folder: Path) -> dict[str, tuple[Path, Stamp]]:
        import re

        from callbridge.settings_base import KEY_PATTERN

        key_rule = re.compile(KEY_PATTERN)
        found: dict[str, tuple[Path, Stamp]] = {}
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise ConfigError(f"tenants_dir {folder}: cannot be read ({exc.strerror})") from None
        for entry in entries:
            if not entry.name.endswith(".toml") or entry.name.startswith("."):
                continue
            key = entry.name[:-len(".toml")]
            if not key_rule.match(key):
                raise ConfigError(f"{entry.path}: a tenant file's name must be its key (1 to 100 "
                                  "letters, digits, '.', '_' or '-') and .toml")
            info = entry.stat()
            found[key] = (Path(entry.path), (info.st_mtime_ns, info.st_size))
        return found

    def _refresh_tenants(self, folder: Path) -> Refreshed:
        """Only the tenant files added, changed or removed since the last read."""
        seen = self._scan(folder)
        old = self._settings
        tenants = dict(old.tenants)
        files = dict(self._files)
        changed: set[str] = set()
        for key in [k for k in files if k not in seen]:
            del files[key]
            tenants.pop(key, None)
            changed.add(key)
        for key, (path, file_stamp) in seen.items():
            if files.get(key) == (path, file_stamp):
                continue
            if key not in files and key in old.tenants:
                raise ConfigError(f"{path}: tenant {key!r} is also in {self.path}; keep it in "
                                  "one place")
            tenant = self._tenant(key, path)
            if old.tenants.get(key) != tenant:
                tenants[key] = tenant
                changed.add(key)
            files[key] = (path, file_stamp)
        if changed:
            self._settings = old.model_copy(update={"tenants": tenants})
        self._files = files
        return Refreshed(tenants=changed)


def _keep_unchanged(old: Mapping[str, TenantSettings],
                    new: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
    """``new``, where a tenant equal to its old settings keeps the old object (and so its
    connection and caches)."""
    return {key: (old[key] if key in old and old[key] == tenant else tenant)
            for key, tenant in new.items()}
