"""`callbridge demo smokeball` runs offline and writes what SPEC §3 (Smokeball) says."""

from __future__ import annotations

import io

import pytest
from callbridge.ledger import Ledger
from callbridge_smokeball import demo
from rich.console import Console


async def test_the_demo_writes_a_day_and_changes_nothing_when_fed_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo sets these for itself; set here first, they are put back after the test.
    for name in ("CALLBRIDGE_PLUGINS", "CALLBRIDGE_SECRET_KEY", "STONE_SMOKEBALL_CLIENT_ID",
                 "STONE_SMOKEBALL_CLIENT_SECRET", "STONE_SMOKEBALL_API_KEY"):
        monkeypatch.setenv(name, "placeholder")
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    out = io.StringIO()
    assert await demo.run(Console(file=out, width=200)) == 0
    text = out.getvalue()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "Fee 6 min (CB-CALL)" in rows["call-01"] and "Fee 0 min" in rows["call-02"]
    assert "Task for Bob Stone" in rows["call-03"] and "Task for Ann Lee" in rows["call-04"]
    assert "new contact, Task" in rows["call-05"] and "Memo" in rows["sms-01"]
    assert "uploaded" in rows["fax-01"] and "no_matter" in rows["fax-02"]
    assert "no_contact" in rows["fax-03"] and "nothing changed" in text
