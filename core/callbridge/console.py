"""Printing text that came from outside: from input files, apps, settings or users.

Such text never reaches a terminal as it is: control characters (escape
sequences, carriage returns, bidirectional overrides) are taken out, and it is
printed with rich's markup off, so ``[/yellow]`` in a contact's name is printed
as those characters instead of ending the command with a ``MarkupError``.

Use :func:`cell` for table cells, :func:`line` to join the host's own styled
labels with outside text, and :func:`say` / :func:`warn` to print.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text

__all__ = ["cell", "clean", "err", "escaped", "line", "out", "say", "warn"]

#: Standard output and standard error. Highlighting is off: rich would otherwise
#: colour parts of outside text (numbers, URLs) as if they meant something.
out = Console(highlight=False)
# Messages on standard error are never broken by the console (the terminal wraps them), so
# a file path or a command in them can be copied whole.
err = Console(stderr=True, highlight=False, soft_wrap=True)

# C0 and C1 controls and DEL; bidirectional embedding, override and isolate marks
# (they reorder what a terminal shows); line and paragraph separators.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
                       r"\u2028\u2029]")
_NEWLINES = re.compile(r"[\n\t]")


def clean(text: object, *, newlines: bool = True) -> str:
    """``text`` as a string with every control character taken out.

    Line feeds and tabs are kept when ``newlines`` is true (multi-line messages),
    else each becomes a space (table cells, one-line labels).
    """
    value = _CONTROLS.sub("", str(text))
    return value if newlines else _NEWLINES.sub(" ", value)


def cell(text: object | None) -> Text:
    """A table cell holding outside text: cleaned, on one line, never read as markup."""
    return Text("" if text is None else clean(text, newlines=False))


def line(*parts: str | tuple[str, str]) -> Text:
    """A line from the host's own styled labels and outside text.

    Each part is either outside text (a string: cleaned, printed as is) or a
    ``(label, style)`` pair the host chose, e.g. ``line(("error:", "red"), " ", message)``.
    """
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(clean(part))
    return text


def say(*parts: str | tuple[str, str], console: Console | None = None) -> None:
    """Print :func:`line` of ``parts`` on standard output (or ``console``)."""
    (console or out).print(line(*parts))


def warn(*parts: str | tuple[str, str]) -> None:
    """Print :func:`line` of ``parts`` on standard error."""
    err.print(line(*parts))


def escaped(data: bytes) -> str:
    """Bytes for a person to read: UTF-8 text as it is, control characters and bytes
    that are not UTF-8 written as escapes (``\\x1b``), so nothing reaches the terminal raw."""
    text = data.decode("utf-8", "backslashreplace")
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                         else f"\\u{ord(m.group()):04x}", text)
