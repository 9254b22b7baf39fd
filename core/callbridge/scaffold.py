"""``callbridge new-plugin NAME``: write a new plugin package from the template in the wheel.

The template (``callbridge/templates/plugin``) is rendered with
:class:`string.Template`: a handful of names (``$name``, ``$module``, ``$dist``,
``$title``, ``$class_prefix``, ``$callbridge_version``) and no logic, so no
template engine is needed and the command works offline in any install. The
package it writes passes callbridge's contract suite at once: its cassettes,
recorded against its own sandbox, ship with the template.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from callbridge import __version__
from callbridge.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PATH_MODULE = "_module_"
_SUFFIX = ".tmpl"


def template_root() -> Traversable:
    """The template folder inside the installed package."""
    return files("callbridge").joinpath("templates", "plugin")


def names_for(name: str, title: str | None = None) -> dict[str, str]:
    """The template's values for the app ``name`` (its key in settings)."""
    if not NAME.match(name):
        raise ConfigError("NAME: must be lower case letters, digits and underscores, starting "
                          "with a letter (at most 40), e.g. acme_crm")
    words = name.split("_")
    return {
        "name": name,
        "module": f"callbridge_{name}",
        "dist": f"callbridge-{name.replace('_', '-')}",
        "title": title or " ".join(w.capitalize() for w in words),
        "class_prefix": "".join(w.capitalize() for w in words),
        "callbridge_version": _release(__version__),
    }


def _release(version: str) -> str:
    """The lowest version the generated package may depend on (this one, without local parts)."""
    found = re.match(r"^\d+(\.\d+)*", version)
    return found.group(0) if found else "0"


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    out = []
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            out += _walk(item, (*prefix, item.name))
        else:
            out.append(((*prefix, item.name), item))
    return out


def render(name: str, dest: Path, *, title: str | None = None) -> list[Path]:
    """Write the package for ``name`` into ``dest`` (which must be absent or empty)."""
    values = names_for(name, title)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest}: exists and is not empty; choose a new folder")
    written = []
    for parts, item in _walk(template_root()):
        rel = [p.replace(_PATH_MODULE, values["module"]) for p in parts]
        text = item.read_text(encoding="utf-8")
        if rel[-1].endswith(_SUFFIX):
            rel[-1] = rel[-1][: -len(_SUFFIX)]
            text = Template(text).substitute(values)
        target = dest.joinpath(*rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
