"""Sessions: tests, lint, typecheck, audit, demo, bench, scale (run `nox -l`).

tests and typecheck install the locked libraries (requirements/dev.txt, with
hashes; `python tools/lock.py` writes it), then this repository's packages
without their dependencies.
"""

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
    session.install("-e", ".[dev]", *[arg for p in extra for arg in ("-e", p)])


DEV_LOCK = "requirements/dev.txt"
RUNTIME_LOCK = "requirements/runtime.txt"


def install_locked(session: nox.Session, *extra: str) -> None:
    """The locked libraries, each checked against its hash; then the host and ``extra``
    (this repository's packages) without dependencies; then pip's consistency check."""
    session.install("--require-hashes", "-r", DEV_LOCK)
    session.install("--no-deps", "-e", ".[dev]", *[arg for p in extra for arg in ("-e", p)])
    session.run("python", "-m", "pip", "check", silent=True)


#: The test suite's workers: one per core, at most four; the slowest tests listed at the end.
PARALLEL = ["--numprocesses", "auto", "--maxprocesses", "4", "--durations", "25"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, offline, cassettes in replay-only mode."""
    install_locked(session, *map(with_test_extra, APP_PLUGINS), *TEST_PLUGINS)
    # On every core (pytest-xdist; at most 4 workers: each starts its own PostgreSQL).
    session.run("python", "-m", "pytest", *(session.posargs or ["-q", *PARALLEL]),
                env={"CALLBRIDGE_RECORD_MODE": "none"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.8")
    session.run("ruff", "check", "core", "tests", "plugins", "noxfile.py", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the host, then on every app plugin's source."""
    install_locked(session, *APP_PLUGINS)  # mypy is in the lock
    session.run("mypy")
    session.run("mypy", "--strict", *[f"{plugin}/src" for plugin in APP_PLUGINS])


#: The documentation site's tools. MkDocs is held to the 1.x line: MkDocs 2 drops the plugin
#: and theme interfaces that mkdocs-material and mkdocstrings are built on, and neither
#: supports it; 1.6 is the line both are tested with.
DOCS_DEPS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26,<2"]


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict: any warning (a broken link, a missing
    docstring reference) fails. The hook and object pages are generated from the code."""
    session.install("--require-hashes", "-r", "requirements/docs.txt")  # DOCS_DEPS, locked
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / ".nox" / "site"),
                env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def demo(session: nox.Session) -> None:
    """The demo: firms' days of calls, SMS and faxes logged into each app's sandbox."""
    install_host(session, *APP_PLUGINS, "tests/plugins/notebook")
    session.run("callbridge", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput figures (see docs/benchmarks.md)."""
    install_host(session, *APP_PLUGINS, "tests/plugins/notebook")
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def scale(session: nox.Session) -> None:
    """The scale demo (docs/benchmarks.md): an embedded PostgreSQL, the Clio and Smokeball
    sandboxes, 100 firms, `serve --no-worker` and workers, a burst of 20,000 events, a
    worker SIGKILLed midway; a table at the end. Not part of `tests`; about 6 minutes on
    two cores (goal: under 10)."""
    install_host(session, *APP_PLUGINS)
    session.run("python", "benchmarks/scale.py", *session.posargs)


def _vulnerability_data_reachable() -> bool:
    """Whether PyPI's JSON API answers (pip-audit reads each library's advisories from it)."""
    import urllib.request

    try:
        # pip-audit asks for each release: /pypi/NAME/VERSION/json.
        with urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=10) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@nox.session
def audit(session: nox.Session) -> None:
    """Known vulnerabilities in every locked library (pip-audit; needs the network)."""
    if not _vulnerability_data_reachable():
        session.skip("PyPI's vulnerability data cannot be reached from here (no network, or "
                     "only a package mirror): nothing was audited")
    session.install("--require-hashes", "-r", DEV_LOCK)  # pip-audit itself is locked
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        # --strict: a library that could not be audited fails the session.
        session.run("pip-audit", "--strict", "--disable-pip", "--require-hashes",
                    "--progress-spinner=off", "-r", lock)
