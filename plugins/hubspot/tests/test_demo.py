"""`callbridge demo hubspot` runs offline and shows the portal's rows; fed again, nothing changes."""

from __future__ import annotations

import io

from callbridge_hubspot.demo import run
from rich.console import Console


async def test_the_demo_logs_a_day_into_the_sandbox_and_changes_nothing_when_fed_again() -> None:
    out = io.StringIO()
    assert await run(Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert "HubSpot portal (sandbox): what was logged" in text
    assert "fed again: nothing changed (5 calls, 1 SMS, 1 notes, 3 contacts)" in text
    assert "note" in text and "communication" in text
