"""Checks a hook's result against the return type its spec declares.

The facade uses these so a plugin that returns the wrong thing fails with a
clear message ("returned dict from find_contact; expected a list of Contact")
instead of an attribute error deep in the pipeline. Only the shapes the hook
specs use are understood: a class, ``None``, a union, ``list[X]``,
``tuple[X, ...]`` and ``dict[K, V]``.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin


def conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (one level of containers deep)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is tuple:
        return isinstance(value, tuple) and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    raise TypeError(f"cannot check a value against {hint!r}")


def describe(hint: Any) -> str:
    """The type in words, for error messages: ``a list of Contact``, ``an AppUser or None``."""
    if hint is None or hint is type(None):
        return "None"
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in args]
        return " or ".join(parts)
    if origin in (list, tuple):
        return f"a {origin.__name__} of {_bare(args[0])}"
    if origin is dict:
        return f"a dict of {_bare(args[0])} to {_bare(args[1])}"
    name = getattr(hint, "__name__", str(hint))
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _bare(hint: Any) -> str:
    text = describe(hint)
    for article in ("a ", "an "):
        if text.startswith(article):
            return text[len(article):]
    return text
