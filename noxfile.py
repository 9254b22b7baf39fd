"""Sessions: tests, lint, typecheck, demo, bench (run `nox -l`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# The app plugins shipped in this repository, and the example plugins the tests use.
APP_PLUGINS = sorted(str(p.parent) for p in (ROOT / "plugins").glob("*/pyproject.toml"))
TEST_PLUGINS = ["tests/plugins/notebook", "tests/plugins/broken"]


def with_test_extra(plugin: str) -> str:
    """The plugin with its ``test`` extra where it declares one (test-only libraries)."""
    data = tomllib.loads((Path(plugin) / "pyproject.toml").read_text())
    extras = data.get("project", {}).get("optional-dependencies", {})
    return f"{plugin}[test]" if "test" in extras else plugin


def install_host(session: nox.Session, *extra: str) -> None:
    session.install("-e", ".[testing]", *[arg for p in extra for arg in ("-e", p)])


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, offline, cassettes in replay-only mode."""
    install_host(session, *map(with_test_extra, APP_PLUGINS), *TEST_PLUGINS)
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]),
                env={"CALLBRIDGE_RECORD_MODE": "none"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", "core", "tests", "plugins", "noxfile.py", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the host, then on every app plugin's source."""
    install_host(session, *APP_PLUGINS)
    session.install("mypy>=1.13")
    session.run("mypy")
    session.run("mypy", "--strict", *[f"{plugin}/src" for plugin in APP_PLUGINS])


@nox.session
def demo(session: nox.Session) -> None:
    """The demo: a firm, a day of calls, SMS and faxes, logged into the Clio sandbox."""
    install_host(session, *APP_PLUGINS, "tests/plugins/notebook")
    session.run("callbridge", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput figures (see docs/benchmarks.md)."""
    install_host(session, *APP_PLUGINS, "tests/plugins/notebook")
    session.run("python", "benchmarks/bench.py", *session.posargs)
