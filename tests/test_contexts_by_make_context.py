"""Every hook context in the tests and the plugin kit comes from
``callbridge.testing.make_context`` (or the host's connection factory behind it):
no test or kit module builds a ``HookContext`` by hand, so a field added to the
context reaches every test at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What builds a context around make_context: the class itself, the factory's
#: field-filtering helper, and the factory's own ``context()`` (make_context calls it).
BUILDERS = {"HookContext", "make_hook_context"}
FACTORIES = {"connections", "factory", "Connections"}
#: make_context itself.
MAKER = ROOT / "core" / "callbridge" / "testing" / "context.py"
#: Modules that call the factory's ``context()`` on purpose, with the reason.
FACTORY_TESTS = {
    "tests/test_connections.py": "the factory's own tests: pools, origins, documents per tenant",
}


def scanned() -> list[Path]:
    """The test modules (host and plugins) and the kit's."""
    files = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py"),
             *(ROOT / "core" / "callbridge" / "testing").glob("*.py")]
    return sorted(p for p in files if ".venv" not in p.parts and ".nox" not in p.parts
                  and p != MAKER)


def hand_built(source: str, *, factories: bool = True) -> list[int]:
    """Lines that call a context's constructor, subclass it, or (``factories``) ask a
    connection factory for a context."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Call):
            targets = [node.func]
        elif isinstance(node, ast.ClassDef):
            targets = list(node.bases)
        for target in targets:
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in BUILDERS or (factories and name == "context" and _factory(target)):
                lines.append(node.lineno)
    return lines


def _factory(target: ast.expr) -> bool:
    """Whether ``target`` is ``<a connection factory>.context``."""
    if not isinstance(target, ast.Attribute):
        return False
    owner = target.value
    if isinstance(owner, ast.Call):
        owner = owner.func
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name in FACTORIES


def test_no_test_or_kit_module_builds_a_hook_context_by_hand() -> None:
    files = scanned()
    assert len(files) > 50 and any("conftest" in p.name for p in files)
    found = {}
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        lines = hand_built(path.read_text(encoding="utf-8"), factories=name not in FACTORY_TESTS)
        if lines:
            found[name] = lines
    assert found == {}, f"build these with callbridge.testing.make_context: {found}"


def test_the_scan_finds_each_way_of_building_one_by_hand() -> None:
    assert hand_built("ctx = HookContext(tenant_id='a')\n") == [1]
    assert hand_built("import callbridge.context as c\nctx = c.HookContext()\n") == [2]
    assert hand_built("ctx = make_hook_context(app='x')\n") == [1]
    assert hand_built("class Ctx(HookContext):\n    pass\n") == [1]
    assert hand_built("ctx = self.connections.context('t', tenant, 'app')\n") == [1]
    assert hand_built("ctx = Connections(registry).context('t', tenant, 'app')\n") == [1]
    assert hand_built("ctx = make_context(plugin)\nnew = ctx.with_delivery(None)\n") == []
    assert hand_built("ctx = session.context(delivery)\n") == []
