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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "callbridge_contract: a test of the callbridge contract kit")


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = os.environ.get("CALLBRIDGE_RECORD_MODE")
    return f"callbridge cassettes: record mode {mode}" if mode else None
