"""Erasure that erases: after `erase` or `purge`, no erased content can be decrypted
from the SQLite file or its WAL, whatever SQLite's compiled default for secure_delete."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from cryptography.fernet import Fernet, InvalidToken

KEY = Ledger.generate_key()
CANARY = "canary-7f3a91c2 the hearing moved to Friday"


def sms(i: int, number: str) -> object:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": number}, "sent_at": "2026-03-02T10:00:00Z",
                        "body": f"{CANARY} #{i}"})


def decryptable_canaries(path: Path) -> int:
    """Fernet tokens anywhere in the file and its WAL that decrypt to a canary."""
    fernet = Fernet(KEY.encode())
    found = 0
    for part in (path, path.with_name(path.name + "-wal")):
        if not part.exists():
            continue
        for token in re.findall(rb"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}", part.read_bytes()):
            try:
                if CANARY.encode() in fernet.decrypt(token):
                    found += 1
            except InvalidToken:
                continue
    return found


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def test_a_persons_erased_contents_cannot_be_decrypted_from_the_file(path: Path) -> None:
    ledger = Ledger(f"sqlite:///{path}", secret_key=KEY)
    ledger.migrate()
    # Another connection, with secure_delete off, open the whole time.
    other = sqlite3.connect(path)
    other.execute("PRAGMA secure_delete=OFF")
    other.execute("SELECT count(*) FROM events").fetchall()
    for i in range(20):
        ledger.store_event(sms(i, "+12125550163"), apps=["crm"])  # type: ignore[arg-type]
    assert decryptable_canaries(path) > 0  # the test can see them before
    assert ledger.erase_person("acme", "+12125550163") == 20
    assert decryptable_canaries(path) == 0
    other.close()
    ledger.close()


def test_purged_contents_cannot_be_decrypted_from_the_file(path: Path) -> None:
    ledger = Ledger(f"sqlite:///{path}", secret_key=KEY)
    ledger.migrate()
    for i in range(20):
        ledger.store_event(sms(i, "+12125550164"), apps=["crm"])  # type: ignore[arg-type]
    assert ledger.purge({"acme": 1}) == 20
    assert decryptable_canaries(path) == 0
    ledger.close()


def test_quarantined_lines_erased_for_a_person_are_gone_from_the_file(path: Path) -> None:
    from callbridge.phones import search_forms
    from callbridge.quarantine import Quarantine, Refused

    ledger = Ledger(f"sqlite:///{path}", secret_key=KEY)
    ledger.migrate()
    q = Quarantine(ledger)
    line = f'{{"external": {{"number": "+12125550165"}}, "body": "{CANARY}"}}'.encode()
    q.keep([Refused(raw=line, reason="direction: missing", tenant="acme") for _ in range(5)])
    fernet = Fernet(KEY.encode())
    assert any(b"2125550165" in _b64(fernet.decrypt(tok)) for tok in _tokens(path))
    assert q.erase_number("acme", search_forms("+12125550165")) == 5
    assert not any(b"2125550165" in _b64(fernet.decrypt(tok)) for tok in _tokens(path))
    ledger.close()


def _tokens(path: Path) -> list[bytes]:
    data = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"))
                    if p.exists())
    fernet = Fernet(KEY.encode())
    out = []
    for token in re.findall(rb"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}", data):
        try:
            fernet.decrypt(token)
        except InvalidToken:
            continue
        out.append(token)
    return out


def _b64(text: bytes) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return text
