"""The contract-test kit for plugin authors (see docs/writing-a-plugin.md).

One line in a plugin's tests gives the whole standard suite::

    from callbridge.testing import Scenarios, contract_suite

    TestMyApp = contract_suite(plugin=callbridge_myapp, settings={...},
                               cassettes=Path(__file__).parent / "cassettes",
                               scenarios=Scenarios(...), sandbox=seeded_sandbox)

Names are imported on first use, so the ``pytest11`` entry point that loads
this package in every pytest run imports neither vcrpy nor the host's HTTP layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.testing.cassettes import CassetteMiss, CassetteTransport, record_mode
    from callbridge.testing.checker import CassetteProblem, check_cassette, check_cassettes
    from callbridge.testing.context import MemoryCache, MemoryDelivery, MemoryLocks, make_context
    from callbridge.testing.fictional import fictional_email, fictional_number, is_fictional
    from callbridge.testing.scenarios import AppEventSamples
    from callbridge.testing.scrub import Scrubber, scrub_text
    from callbridge.testing.suite import ContractSuite, Row, Scenarios, contract_suite

_WHERE = {
    "CassetteMiss": "cassettes",
    "CassetteTransport": "cassettes",
    "record_mode": "cassettes",
    "CassetteProblem": "checker",
    "check_cassette": "checker",
    "check_cassettes": "checker",
    "MemoryCache": "context",
    "MemoryDelivery": "context",
    "MemoryLocks": "context",
    "make_context": "context",
    "fictional_email": "fictional",
    "fictional_number": "fictional",
    "is_fictional": "fictional",
    "AppEventSamples": "scenarios",
    "Scrubber": "scrub",
    "scrub_text": "scrub",
    "ContractSuite": "suite",
    "Row": "suite",
    "Scenarios": "suite",
    "contract_suite": "suite",
}

__all__ = [
    "AppEventSamples",
    "CassetteMiss",
    "CassetteProblem",
    "CassetteTransport",
    "ContractSuite",
    "MemoryCache",
    "MemoryDelivery",
    "MemoryLocks",
    "Row",
    "Scenarios",
    "Scrubber",
    "check_cassette",
    "check_cassettes",
    "contract_suite",
    "fictional_email",
    "fictional_number",
    "is_fictional",
    "make_context",
    "record_mode",
    "scrub_text",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'callbridge.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"callbridge.testing.{module}"), name)
