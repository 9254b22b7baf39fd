"""The kit's pytest entry point (``pytest11``).

Kept thin: it loads in every pytest run where callbridge is installed, so it
imports nothing heavy (vcrpy and the HTTP layer load only when a test module
calls :func:`callbridge.testing.contract_suite`), and it never takes over
collection: the suite is a plain test class. The record mode is read from
``CALLBRIDGE_RECORD_MODE`` only; this plugin adds no option that shared
configuration could set.
"""

from __future__ import annotations

import os

import pytest

#: pytest-asyncio (which ``callbridge[testing]`` installs) warns on every run until this is
#: set; the kit's tests need no event-loop fixtures, so the plain default is right.
ASYNCIO_SCOPE = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "callbridge_contract: a test of the callbridge contract kit")
    # Only a default: a value in the project's own configuration wins. pytest has no public
    # way to default another plugin's option; its ini cache is the narrowest one.
    if config.pluginmanager.hasplugin("asyncio") and config.getini(ASYNCIO_SCOPE) is None:
        config._inicache[ASYNCIO_SCOPE] = "function"


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = os.environ.get("CALLBRIDGE_RECORD_MODE")
    return f"callbridge cassettes: record mode {mode}" if mode else None
