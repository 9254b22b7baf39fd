"""Printing outside text: control characters out, markup off."""

from __future__ import annotations

import io

from callbridge.console import cell, clean, escaped, line
from rich.console import Console
from rich.table import Table


def render(*items: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    for item in items:
        console.print(item)
    return buffer.getvalue()


def test_control_characters_and_bidi_marks_are_taken_out() -> None:
    assert clean("a\x1b]0;title\x07b\rc\u202ed\x9b31m") == "a]0;titlebcd31m"
    assert clean("one\ntwo\tthree") == "one\ntwo\tthree"
    assert clean("one\ntwo", newlines=False) == "one two"


def test_markup_in_outside_text_is_printed_as_text() -> None:
    table = Table()
    table.add_column("name")
    table.add_row(cell("[/yellow] [bold]Dana[/bold]"))
    shown = render(table, line(("error:", "red"), " ", "bad key [/red]"))
    assert "[/yellow] [bold]Dana[/bold]" in shown and "error: bad key [/red]" in shown


def test_escaped_bytes_show_controls_and_bad_bytes_as_escapes() -> None:
    assert escaped(b"ok \x1b[31m \xff") == "ok \\x1b[31m \\xff"


def test_the_commands_print_plugin_and_check_texts_without_markup() -> None:
    """Every table cell and check line of the CLI goes through cell() or line()."""
    import ast
    from pathlib import Path

    import callbridge.cli

    folder = Path(callbridge.cli.__file__).parent
    sources = [folder / name for name in ("cli.py", "ingesting.py", "drain.py", "doctor.py")
               if (folder / name).exists()]
    sources += sorted((folder / "commands").glob("*.py"))
    for node in (n for src in sources for n in ast.walk(ast.parse(src.read_text()))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "add_row":
                for arg in node.args:  # outside text in a cell must be cell(...) or str(number)
                    assert isinstance(arg, ast.Call | ast.JoinedStr), ast.unparse(arg)
                    if isinstance(arg, ast.Call):
                        assert ast.unparse(arg.func) in ("cell", "str"), ast.unparse(arg)
            if node.func.attr == "print" and ast.unparse(node.func.value) in ("console", "err"):
                for arg in node.args:  # an f-string would be read as markup
                    assert not (isinstance(arg, ast.JoinedStr) and any(
                        isinstance(v, ast.FormattedValue) for v in arg.values)), ast.unparse(arg)
