"""Smokeball's ``Search`` query syntax, as its documentation describes it.

Each ``Search`` value is one term ``field<op>value``; several terms are ANDed. The
operators are ``:`` (equals), ``:!`` (not equal), ``:>``, ``:>=``, ``:<``,
``:<=``. A ``*`` in the value is a wildcard (prefix, suffix or contains); string
comparison is case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_TERM = re.compile(r"^(?P<field>[A-Za-z][A-Za-z0-9]*)(?P<op>:>=|:<=|:!|:>|:<|:)(?P<value>.*)$")


class SearchError(ValueError):
    """A term the syntax does not allow; its message names the problem, not the value."""


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str

    def matches(self, texts: Iterable[str]) -> bool:
        texts = [t for t in texts if t]
        if self.op in (":", ":!"):
            pattern = re.compile(
                "^" + ".*".join(re.escape(part) for part in self.value.split("*")) + "$",
                re.IGNORECASE | re.DOTALL)
            hit = any(pattern.match(t) for t in texts)
            return hit if self.op == ":" else not hit
        compare: Callable[[str, str], bool] = {
            ":>": lambda a, b: a > b, ":>=": lambda a, b: a >= b,
            ":<": lambda a, b: a < b, ":<=": lambda a, b: a <= b}[self.op]
        return any(compare(t.lower(), self.value.lower()) for t in texts)


def parse_terms(values: list[str], fields: set[str]) -> list[Term]:
    """The terms of a request's ``Search`` values, for a resource searchable by ``fields``."""
    terms = []
    for raw in values:
        m = _TERM.match(raw.strip())
        if m is None:
            raise SearchError("a Search term must read field:value (or :!, :>, :>=, :<, :<=)")
        name = m.group("field").lower()
        if name not in fields:
            raise SearchError(f"Search field '{name[:20]}' is not one of {', '.join(sorted(fields))}")
        terms.append(Term(name, m.group("op"), m.group("value")))
    return terms


def select(rows: list[dict[str, Any]], terms: list[Term],
           texts: Callable[[dict[str, Any], str], list[str]]) -> list[dict[str, Any]]:
    """The rows every term matches; ``texts(row, field)`` gives a row's values of a field."""
    return [r for r in rows if all(t.matches(texts(r, t.field)) for t in terms)]
