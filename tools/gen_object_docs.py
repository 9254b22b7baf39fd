"""Write docs/objects.md: every data object a hook receives or returns, from the code.

Run after changing a model: `python tools/gen_object_docs.py`. tests/test_docs_objects.py
fails when the page and the code disagree, or an object or field has no description.
A field's description is its ``Field(description=...)``, else the docstring under it,
else the comment on its line.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import io
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: (section, module, names): the objects, in the order the page shows them.
OBJECTS: list[tuple[str, str, list[str]]] = [
    ("Events", "callbridge.events",
     ["CallEvent", "SmsEvent", "FaxEvent", "ExternalParty", "InternalUser", "FaxDocument",
      "Direction", "CallState", "CallOutcome", "DeliveryStatus", "FaxOutcome", "PartyKind"]),
    ("What hooks exchange", "callbridge.models",
     ["Contact", "Matter", "AppUser", "Record", "LogTarget", "LogResult", "LogStatus",
      "ChangedContacts", "BatchItem", "BatchResult", "ClosedMatterPage", "ClosedMatter",
      "ClientContact", "CustomField", "AppSubscription", "AppRequest", "WriteConfirmed",
      "WriteFailed", "MatterChanged"]),
    ("The context", "callbridge.context", ["HookContext"]),
    ("What a plugin declares", "callbridge.capabilities",
     ["Declaration", "Capability", "Connection", "OAuth2Config", "RateBucket"]),
    ("The host's settings a hook reads", "callbridge.settings", ["TenantSettings", "AppSettings"]),
]


def objects() -> list[tuple[str, list[type]]]:
    out = []
    for section, module_name, names in OBJECTS:
        module = importlib.import_module(module_name)
        out.append((section, [getattr(module, n) for n in names]))
    return out


def _type(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type(a) for a in args)
        return f"{name}[{inner}]" if inner else name
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _source_notes(cls: type) -> dict[str, str]:
    """Attribute docstrings and same-line comments in the class bodies of ``cls`` and its bases."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] != "callbridge":
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        source = inspect.cleandoc("\n" + source) if source.startswith(" ") else source
        tree = ast.parse(source)
        comments = {tok.start[0]: tok.string.lstrip("#: ").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for i, node in enumerate(body):
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if not isinstance(target, ast.Name):
                continue
            after = body[i + 1] if i + 1 < len(body) else None
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                    and isinstance(after.value.value, str):
                notes[target.id] = " ".join(inspect.cleandoc(after.value.value).split())
            elif node.lineno in comments:
                notes[target.id] = comments[node.lineno]
            elif node.lineno - 1 in comments:  # a "#:" comment on the line above
                notes[target.id] = comments[node.lineno - 1]
    return notes


def _attributes_section(cls: type) -> dict[str, str]:
    """``name: text`` entries of an ``Attributes:`` section in the class docstring."""
    notes: dict[str, str] = {}
    lines = doc(cls).splitlines()
    if "Attributes:" not in lines:
        return notes
    current = None
    for line in lines[lines.index("Attributes:") + 1:]:
        if line and not line.startswith(" "):
            break
        head, sep, rest = line.strip().partition(": ")
        if line.startswith("    ") and not line.startswith("        ") and sep:
            for name in head.split(", "):
                notes[name.strip()] = rest.strip()
            current = [n.strip() for n in head.split(", ")]
        elif current and line.strip():
            for name in current:
                notes[name] += " " + line.strip()
    return notes


def fields(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description) of each field."""
    notes = {**_attributes_section(cls), **_source_notes(cls)}
    out = []
    model_fields = getattr(cls, "model_fields", None)
    if model_fields is not None:
        for name, info in model_fields.items():
            default = "required" if info.is_required() else (
                "(computed)" if info.default_factory is not None else _default(info.default))
            desc = info.description or notes.get(name, "")
            out.append((name, _type(info.annotation), default, desc))
        return out
    if dataclasses.is_dataclass(cls):
        import asyncio

        import callbridge.context  # names that models import only for type checking
        import callbridge.settings
        import httpx2

        scope = {"asyncio": asyncio, "httpx2": httpx2, **vars(callbridge.settings),
                 **vars(callbridge.context), **vars(sys.modules[cls.__module__])}
        hints = typing.get_type_hints(cls, scope)
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            if f.default is not dataclasses.MISSING:
                default = _default(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = "(computed)"
            else:
                default = "required"
            out.append((f.name, _type(hints.get(f.name, f.type)), default, notes.get(f.name, "")))
    return out


def doc(cls: type) -> str:
    return inspect.cleandoc(cls.__dict__.get("__doc__") or "")


def _default(value: Any) -> str:
    """A default as code shows it; an object without its own repr by its class (no address)."""
    return re.sub(r" object at 0x[0-9a-fA-F]+", "", repr(value))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = ["# Data objects", "",
           "Every object a hook receives or returns, with its fields. Generated from the "
           "code's docstrings; the hooks that use them are in the [hook reference](hooks.md).",
           ""]
    for section, classes in objects():
        out += [f"## {section}", ""]
        for cls in classes:
            out += [f"### `{cls.__name__}`", "", f"`{cls.__module__}.{cls.__name__}`", "",
                    doc(cls), ""]
            if isinstance(cls, type) and issubclass(cls, enum.Enum):
                notes = {m.name: _meaning(cls, m) for m in cls}
                if any(notes.values()):
                    out += ["| value | meaning |", "|---|---|"]
                    out += [f"| `{m.value}` | {_cell(notes[m.name])} |" for m in cls]
                else:
                    out.append("Values: " + ", ".join(f"`{m.value}`" for m in cls) + ".")
                out.append("")
                continue
            rows = fields(cls)
            if rows:
                out += ["| field | type | default | description |", "|---|---|---|---|"]
                out += [f"| `{n}` | `{_cell(t)}` | `{_cell(d)}` | {_cell(x)} |"
                        for n, t, d, x in rows]
                out.append("")
    return "\n".join(out)


def _meaning(cls: type, member: Any) -> str:
    from callbridge.capabilities import CAPABILITY_HELP, Capability

    if cls is Capability:  # the capability table's own words
        return CAPABILITY_HELP[member]
    return _enum_notes(cls).get(member.name, "")


def _enum_notes(cls: type) -> dict[str, str]:
    """Docstrings or comments of enum members (``NAME = "value"`` lines)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    tree = ast.parse(inspect.cleandoc("\n" + source) if source.startswith(" ") else source)
    comments = {tok.start[0]: tok.string.lstrip("#: ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    notes = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            after = body[i + 1] if i + 1 < len(body) else None
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                    and isinstance(after.value.value, str):
                notes[name] = " ".join(inspect.cleandoc(after.value.value).split())
            elif node.lineno in comments:
                notes[name] = comments[node.lineno]
            elif node.lineno - 1 in comments:
                notes[name] = comments[node.lineno - 1]
    return notes


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "core"))
    (ROOT / "docs" / "objects.md").write_text(render())
    print("wrote docs/objects.md")
