"""The standard contract suite, built for one plugin by :func:`contract_suite`.

One line in a plugin's tests gives the whole suite::

    TestNotebook = contract_suite(plugin=notebook, settings={...},
                                  cassettes=Path(__file__).parent / "cassettes",
                                  scenarios=Scenarios(...), sandbox=seeded_sandbox)

Tests follow the declaration: a declared capability's tests must pass, an
undeclared one's are skipped (naming the capability), and skipping a declared
one needs a written reason in ``skip``. The cases added in hook API 2.0 (the
retries after a lost answer, users, the activity code, changed contacts,
batches, confirmations, closed matters) run for plugins that declare 2.0 or later,
and the app-event cases (subscribe, renew, verify, parse) for those that declare
2.1 and ``app_events``. Each hook
is called directly through the host's facade (not through the pipeline, which
would turn a cassette miss into a failed outcome).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from callbridge.settings import TenantSettings
from callbridge.testing.appcases import AppEventCases
from callbridge.testing.cases import ReadCases
from callbridge.testing.checker import FIX
from callbridge.testing.closing import ClosingCases
from callbridge.testing.kit import STANDARD_CASES, Kit
from callbridge.testing.scenarios import AppEventSamples, Row, Scenarios, default_tenant
from callbridge.testing.writes import WriteCases

__all__ = ["AppEventSamples", "ContractSuite", "Row", "Scenarios", "contract_suite",
           "kit_cases"]


class ContractSuite(ReadCases, WriteCases, ClosingCases, AppEventCases):
    """The standard tests. Do not subclass by hand: use :func:`contract_suite`."""


def kit_cases(suite: type = ContractSuite) -> dict[str, list[str]]:
    """Hook → the standard tests that exercise it (marked with ``covers``)."""
    out: dict[str, list[str]] = {}
    for name in sorted(dir(suite)):
        for hook in getattr(getattr(suite, name), "__callbridge_covers__", ()):
            out.setdefault(hook, []).append(name)
    return out


def contract_suite(*, plugin: object, settings: Mapping[str, Any], cassettes: Path | str,
                   scenarios: Scenarios, skip: Mapping[str, str] | None = None,
                   extra_rows: Sequence[Row] = (),
                   sandbox: Callable[..., Any] | None = None,
                   tenant: TenantSettings | None = None) -> type[ContractSuite]:
    """The standard contract suite for ``plugin``, as a test class.

    Args:
        plugin: the plugin module (or object) with its ``@hookimpl`` functions.
        settings: example options, validated against the declared settings model
            and given to the hooks as ``ctx.options``.
        cassettes: the folder of this plugin's cassettes (one file per case).
        scenarios: the inputs of the standard cases.
        skip: ``{case, hook or capability: reason}``; a declared capability's test
            is skipped only with a non-empty reason.
        extra_rows: the author's own cases, run beside the standard ones.
        sandbox: a function returning the seeded ASGI app to record against
            (``CALLBRIDGE_RECORD_MODE=once``); it may take a ``clock`` argument
            (the kit's fake clock). The kit wraps it in the host's fault
            injector to record the 401, 429 and 5xx answers; give the app a
            ``fault_bodies`` attribute (``{status: JSON bytes}``) so those
            answers have your app's shape. Do not wrap it yourself.
        tenant: the firm the hooks work for (``ctx.tenant``); by default one
            with the firm number +1 212 555 0100 and extension 101 for
            staff@firm.example, in ``scenarios.region``.

    Assign the result to a name starting with ``Test`` in a test module.
    """
    kit = Kit(plugin=plugin, settings=settings, cassettes=Path(cassettes), scenarios=scenarios,
              skip=skip or {}, sandbox=sandbox, tenant=tenant or default_tenant(scenarios.region))
    attrs: dict[str, Any] = {"kit": kit, "__test__": True,
                             "__doc__": f"callbridge's contract suite for {kit.distribution}."}
    if extra_rows:
        ids = [row.id for row in extra_rows]
        if len(set(ids)) != len(ids):
            raise ValueError("extra_rows have duplicate ids")

        @pytest.mark.parametrize("row", list(extra_rows), ids=ids)
        def test_row(self: ContractSuite, row: Row) -> None:
            self._row(row)

        attrs["test_row"] = test_row
    declaration = kit.declaration()
    name = f"Contract_{declaration.name if declaration else 'plugin'}"
    return type(name, (ContractSuite,), attrs)


#: Kept for checkers that want the standard fix text.
CASSETTE_FIX = FIX
#: The standard cases' names (kept for older imports).
_CASES = STANDARD_CASES
