"""Every routed hook has a call site in the host and a case in the contract kit.

The hook specs are the one list (``callbridge.hookspecs.SPECS``); a spec that
nothing calls, or that the kit never exercises, fails here unless the spec
itself carries a reason (``exempt``) or is listed below with one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

from callbridge import hookspecs
from callbridge.capabilities import Capability
from callbridge.hookspecs import HookSpec
from callbridge.testing.suite import kit_cases

CORE = Path(hookspecs.__file__).parent
#: Modules that define or forward hooks rather than call them for the host.
NOT_CALL_SITES = {"hookspecs.py", "facade.py", "results.py"}

#: Hooks whose host call site is being built, each with its reason.
AWAITING_HOST: dict[str, str] = {}
#: Hooks whose kit case is being built, each with its reason.
AWAITING_KIT: dict[str, str] = {}


def host_call_sites(paths: Iterable[Path], hooks: Iterable[str]) -> dict[str, list[str]]:
    """Hook → ``file:line`` of each ``<x>.<hook>(...)`` call in ``paths``."""
    wanted = set(hooks)
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in wanted:
                found.setdefault(node.func.attr, []).append(f"{path.name}:{node.lineno}")
    return found


def uncovered(specs: Mapping[str, HookSpec], calls: Mapping[str, list[str]],
              cases: Mapping[str, list[str]], awaiting_host: Mapping[str, str],
              awaiting_kit: Mapping[str, str]) -> list[str]:
    """What lacks a call site or a kit case without a written reason."""
    problems = []
    for name, spec in specs.items():
        if spec.exempt:
            continue
        if not calls.get(name) and not awaiting_host.get(name, "").strip():
            problems.append(f"{name}: no call site in the host")
        if not cases.get(name) and not awaiting_kit.get(name, "").strip():
            problems.append(f"{name}: no case in the contract kit")
    return problems


def host_modules() -> list[Path]:
    return [p for p in CORE.rglob("*.py")
            if p.name not in NOT_CALL_SITES and "testing" not in p.relative_to(CORE).parts]


def test_every_routed_hook_is_called_by_the_host_and_exercised_by_the_kit() -> None:
    calls = host_call_sites(host_modules(), hookspecs.ROUTED_HOOKS)
    problems = uncovered(hookspecs.SPECS, calls, kit_cases(), AWAITING_HOST, AWAITING_KIT)
    assert not problems, "\n".join(problems)


def test_the_waiting_lists_name_only_hooks_that_exist() -> None:
    assert set(AWAITING_HOST) <= set(hookspecs.SPECS)
    assert set(AWAITING_KIT) <= set(hookspecs.SPECS)


# -- the test of the test ------------------------------------------------------------------


def _spec(name: str, exempt: str | None = None) -> HookSpec:
    return HookSpec(name, frozenset({Capability.CALLS}), str, "2.0", exempt)


def test_a_spec_without_a_call_site_fails_the_coverage_check() -> None:
    specs = {"frobnicate": _spec("frobnicate")}
    assert uncovered(specs, {}, {"frobnicate": ["test_x"]}, {}, {}) == [
        "frobnicate: no call site in the host"]


def test_a_spec_without_a_kit_case_fails_the_coverage_check() -> None:
    specs = {"frobnicate": _spec("frobnicate")}
    assert uncovered(specs, {"frobnicate": ["engine.py:1"]}, {}, {}, {}) == [
        "frobnicate: no case in the contract kit"]


def test_a_waiting_entry_needs_a_reason_and_an_exempt_spec_passes() -> None:
    specs = {"frobnicate": _spec("frobnicate"), "closed": _spec("closed", exempt="no caller yet")}
    assert uncovered(specs, {}, {}, {"frobnicate": " "}, {"frobnicate": "soon"}) == [
        "frobnicate: no call site in the host"]


def test_the_call_site_scan_sees_calls_and_ignores_mentions(tmp_path: Path) -> None:
    module = tmp_path / "engine.py"
    module.write_text("async def go(hooks, ctx):\n"
                      "    name = 'log_call'  # a mention is not a call\n"
                      "    return await hooks.find_contact(ctx, party=None)\n")
    assert host_call_sites([module], ["find_contact", "log_call"]) == {
        "find_contact": ["engine.py:3"]}


def test_exempt_specs_say_why() -> None:
    # (none is exempt today: the closed-matter hooks have their caller and kit cases)
    silent = [h for h, s in hookspecs.SPECS.items() if s.exempt is not None and not s.exempt.strip()]
    assert not silent, f"an exemption needs its reason: {', '.join(silent)}"


def test_no_kit_waiting_entry_outlives_its_case() -> None:
    stale = sorted(set(AWAITING_KIT) & set(kit_cases()))
    assert not stale, f"remove from AWAITING_KIT, the kit has cases now: {', '.join(stale)}"


def test_no_host_waiting_entry_outlives_its_call_site() -> None:
    calls = host_call_sites(host_modules(), hookspecs.ROUTED_HOOKS)
    stale = sorted(name for name in AWAITING_HOST if calls.get(name))
    assert not stale, f"remove from AWAITING_HOST, the host calls them now: {', '.join(stale)}"
