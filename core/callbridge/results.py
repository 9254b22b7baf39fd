"""Checks a hook's result against the return type its spec declares.

The facade uses these so a plugin that returns the wrong thing fails with a
clear message ("returned dict from find_contact; expected a list of Contact")
instead of an attribute error deep in the pipeline. Only the shapes the hook
specs use are understood: a class, ``None``, a union, ``list[X]``,
``tuple[X, ...]`` and ``dict[K, V]``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin


def conforms(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (one level of containers deep)."""
    return checker(hint)(value)


Check = Callable[[object], bool]


@functools.cache
def checker(hint: Any) -> Check:
    """``hint`` made once into a function answering :func:`conforms` (every hook call
    checks its result: the type hint is read once, not on every call)."""
    if hint is Any or hint is object:
        return _anything
    if hint is None or hint is type(None):
        return _is_none
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if all(a is None or (isinstance(a, type) and get_origin(a) is None) for a in args):
            classes = tuple(type(None) if a is None else a for a in args)
            return lambda value: isinstance(value, classes)
        parts = tuple(checker(arg) for arg in args)
        return lambda value: any(part(value) for part in parts)
    if origin is list or origin is tuple:
        item, container = checker(args[0]), origin
        return lambda value: isinstance(value, container) and all(item(v) for v in value)
    if origin is dict:
        key, val = checker(args[0]), checker(args[1])
        return lambda value: isinstance(value, dict) and all(
            key(k) and val(v) for k, v in value.items())
    if isinstance(hint, type):
        return lambda value: isinstance(value, hint)
    raise TypeError(f"cannot check a value against {hint!r}")


def _anything(value: object) -> bool:
    return True


def _is_none(value: object) -> bool:
    return value is None


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
