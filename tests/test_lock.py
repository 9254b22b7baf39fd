"""The dependency locks: written from the packages' own bounds, pinned with hashes,
and used by the sessions CI runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_inputs_match_the_packages_dependencies() -> None:
    assert _tool().main(["--check"]) == 0, "run: python tools/lock.py"


def test_every_library_of_the_inputs_is_pinned_with_hashes() -> None:
    for name in ("runtime", "dev", "docs"):
        wanted = (ROOT / "requirements" / f"{name}.in").read_text()
        lock = (ROOT / "requirements" / f"{name}.txt").read_text()
        pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==([^\s;]+)", lock, re.MULTILINE))
        assert pins, name
        for line in wanted.splitlines():
            if line and not line.startswith("#"):
                library = re.split(r"[<>=\[ ;]", line, maxsplit=1)[0].lower().replace("_", "-")
                assert library in {p.lower() for p in pins}, f"{library} not pinned in {name}.txt"
        blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", lock.split("\n\n", 1)[-1])
        for block in blocks:
            if "==" in block.split("\n", 1)[0]:
                assert "--hash=sha256:" in block, block.split("\n", 1)[0]
        assert "file://" not in lock and "/work/" not in lock and "--find-links" not in lock


def test_ci_sessions_install_the_lock_with_hashes() -> None:
    nox = (ROOT / "noxfile.py").read_text()
    assert '"--require-hashes", "-r", DEV_LOCK' in nox and '"--no-deps"' in nox
    assert "install_locked(session, *map(with_test_extra" in nox
    assert '"--require-hashes", "-r", "requirements/docs.txt"' in nox
