"""The quarantine: refused input kept encrypted, bounded in size, purged with retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from callbridge.ledger import Ledger
from callbridge.phones import search_forms
from callbridge.quarantine import Quarantine, Refused
from callbridge.settings import QuarantineSettings

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CANARY = b'{"tenant": "acme", "external": {"number": "+12125550163"}, "direction": "x"}'


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=Ledger.generate_key())
    led.migrate()
    yield led
    led.close()


def test_entries_are_listed_without_contents_and_read_back_byte_for_byte(ledger: Ledger) -> None:
    q = Quarantine(ledger)
    raw = b"\xff\x00[/yellow]" + CANARY
    q.keep([Refused(raw=raw, reason="(json): not UTF-8 text", line=7, tenant="acme")], now=NOW)
    (entry,) = q.entries()
    assert (entry.line, entry.tenant, entry.size, entry.origin) == (7, "acme", len(raw), "ingest")
    assert q.content(entry.id) == raw


def test_contents_are_encrypted_on_disk(ledger: Ledger, tmp_path: Path) -> None:
    Quarantine(ledger).keep([Refused(raw=CANARY, reason="direction: bad")], now=NOW)
    ledger.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    assert b"2125550163" not in on_disk and b"direction: bad" in on_disk


def test_an_entry_is_cut_and_the_whole_is_bounded(ledger: Ledger) -> None:
    q = Quarantine(ledger, QuarantineSettings(max_entry_bytes=1024, max_total_bytes=1024 * 1024))
    q.keep([Refused(raw=b"x" * 5000, reason="r")], now=NOW)
    (first,) = q.entries()
    assert first.size == 5000 and first.kept == 1024 and q.content(first.id) == b"x" * 1024
    q.keep([Refused(raw=bytes([i % 256]) * 1024, reason="r", line=i) for i in range(1100)], now=NOW)
    kept = q.entries(limit=10_000)
    assert sum(e.kept for e in kept) <= 1024 * 1024
    assert first.id not in {e.id for e in kept} and kept[0].line == 1099  # the oldest went first


def test_purge_uses_the_tenants_retention_else_the_quarantines(ledger: Ledger) -> None:
    q = Quarantine(ledger, QuarantineSettings(retention_days=30))
    old = NOW - timedelta(days=40)
    q.keep([Refused(raw=b"a", reason="r", tenant="acme"),
            Refused(raw=b"b", reason="r", tenant=None),
            Refused(raw=b"c", reason="r", tenant="gone")], now=old)
    q.keep([Refused(raw=b"d", reason="r", tenant="acme")], now=NOW - timedelta(days=5))
    assert q.purge({"acme": 60}, now=NOW) == 2  # unknown and unconfigured tenants: 30 days
    assert sorted(e.tenant or "" for e in q.entries()) == ["acme", "acme"]
    assert q.purge({"acme": 1}, now=NOW) == 2 and q.entries() == []


def test_a_persons_erasure_reaches_the_quarantine(ledger: Ledger) -> None:
    q = Quarantine(ledger)
    q.keep([Refused(raw=CANARY, reason="r", tenant="acme"),
            Refused(raw=CANARY, reason="r", tenant=None),
            Refused(raw=CANARY, reason="r", tenant="other"),
            Refused(raw=b'{"number": "+12125550100"}', reason="r", tenant="acme")], now=NOW)
    assert q.erase_number("acme", search_forms("+12125550163")) == 2
    assert sorted(e.tenant or "" for e in q.entries()) == ["acme", "other"]
