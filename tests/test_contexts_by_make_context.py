"""Every hook context in the tests and the plugin kit comes from
``callbridge.testing.make_context`` (or the host's connection factory behind it):
no test or kit module builds a ``HookContext`` by hand, so a field added to the
context reaches every test at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What builds a context around the factory: the class itself and the factory's
#: field-filtering helper.
BUILDERS = {"HookContext", "make_hook_context"}


def scanned() -> list[Path]:
    """The test modules (host and plugins) and the kit's."""
    files = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py"),
             *(ROOT / "core" / "callbridge" / "testing").glob("*.py")]
    return sorted(p for p in files if ".venv" not in p.parts and ".nox" not in p.parts)


def hand_built(source: str) -> list[int]:
    """Lines that call a context's constructor or subclass it."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Call):
            targets = [node.func]
        elif isinstance(node, ast.ClassDef):
            targets = list(node.bases)
        for target in targets:
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in BUILDERS:
                lines.append(node.lineno)
    return lines


def test_no_test_or_kit_module_builds_a_hook_context_by_hand() -> None:
    files = scanned()
    assert len(files) > 50 and any("conftest" in p.name for p in files)
    found = {str(p.relative_to(ROOT)): lines for p in files
             if (lines := hand_built(p.read_text(encoding="utf-8")))}
    assert found == {}, f"build these with callbridge.testing.make_context: {found}"


def test_the_scan_finds_each_way_of_building_one_by_hand() -> None:
    assert hand_built("ctx = HookContext(tenant_id='a')\n") == [1]
    assert hand_built("import callbridge.context as c\nctx = c.HookContext()\n") == [2]
    assert hand_built("ctx = make_hook_context(app='x')\n") == [1]
    assert hand_built("class Ctx(HookContext):\n    pass\n") == [1]
    assert hand_built("ctx = make_context(plugin)\nnew = ctx.with_delivery(None)\n") == []
