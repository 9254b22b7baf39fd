"""``callbridge tenants``: list, add, change and remove the firms of a tenants directory.

A file is checked before it is put in place (the same checks as the server's, the
plugins' options included) and put there by a rename, so a running ``callbridge
serve`` never reads half of it; the server picks the change up on its next reload.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from callbridge.commands import fail, runtime
from callbridge.console import line
from callbridge.console import out as console
from callbridge.errors import ConfigError


def _folder(config: Path | None) -> tuple[Path, dict[str, object]]:
    rt = runtime(config)
    settings = rt.settings.current()
    if rt.settings.path is None or settings.tenants_dir is None:
        raise fail("the settings file names no tenants_dir: add tenants_dir = \"tenants\" to it "
                   "to keep one file per tenant", 2)
    return (rt.settings.path.parent / settings.tenants_dir).resolve(), dict(
        rt.settings.plugin_models)


def list_(config: Path | None, as_json: bool) -> None:
    rt = runtime(config)
    settings = rt.settings.current()
    rows = [{"tenant": key, "apps": sorted(t.apps), "name": t.name}
            for key, t in sorted(settings.tenants.items())]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        console.print(line(str(row["tenant"]), "  ", ", ".join(row["apps"]) or "(no apps)"))
    console.print(line(f"{len(rows)} tenant(s)"))


def add(config: Path | None, key: str, file: Path, replace: bool) -> None:
    import re

    from callbridge.settings import parse_tenant
    from callbridge.settings_base import KEY_PATTERN
    from callbridge.settings_source import read_toml

    if not re.match(KEY_PATTERN, key) or len(key) > 100:
        raise fail("KEY: 1 to 100 letters, digits, '.', '_' or '-'", 2)
    folder, models = _folder(config)
    target = folder / f"{key}.toml"
    if target.exists() and not replace:
        raise fail(f"tenant {key!r} exists ({target}); give --replace to change it", 1)
    try:
        parse_tenant(key, read_toml(file), origin=str(file),
                     plugin_models=models)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(file.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    console.print(line(("changed" if replace else "added"), f" tenant {key} ({target})"))


def remove(config: Path | None, key: str) -> None:
    folder, _ = _folder(config)
    target = folder / f"{key}.toml"
    if not target.is_file():
        raise fail(f"no tenant {key!r} in {folder}", 1)
    target.unlink()
    console.print(line(f"removed tenant {key}; its events and outcomes stay in the ledger"))
