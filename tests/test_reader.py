"""The ingest reader: every line read on its own, split on line feeds only, a bad line
refused with its number and reasons, kept byte for byte."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from callbridge.reader import Accepted, Rejected, RejectsFile, read_events, split_lines


def sms(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                            "external": {"number": "+12125550142"},
                            "sent_at": "2026-03-02T10:00:00Z", "body": "hello"}
    base.update(over)
    return base


def good(i: int) -> bytes:
    return json.dumps(sms(id=f"s-{i}")).encode()


HOSTILE = [
    b"[" * 100_000 + b"]" * 100_000,                       # RecursionError in json
    json.dumps(sms(id="big", sequence=0)).replace('"sequence": 0', '"sequence": ' + "9" * 5000)
    .encode(),                                             # a 5,000-digit integer
    good(0)[:-2] + b'\xff"}',                              # a byte that is not UTF-8
    json.dumps(sms(id="m", **{"[/yellow]": 1})).encode(),  # a key that is markup
]


def read(data: bytes, **kw: Any) -> list[Accepted | Rejected]:
    return list(read_events(io.BytesIO(data), **kw))


def test_a_bad_line_never_loses_the_lines_around_it() -> None:
    lines = [good(1), *HOSTILE, good(2)]
    items = read(b"\n".join(lines) + b"\n")
    assert [type(i).__name__ for i in items] == ["Accepted", *["Rejected"] * 4, "Accepted"]
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert [r.number for r in rejected] == [2, 3, 4, 5]
    reasons = [r.reason for r in rejected]
    assert "nested too deeply" in reasons[0]
    assert "more than 20 digits" in reasons[1]
    assert "not UTF-8 text" in reasons[2]
    assert reasons[3] == "(unknown field): is not a field of this object"
    assert all(r.raw == line for r, line in zip(rejected, HOSTILE, strict=True))


def test_unicode_line_breaks_inside_a_string_do_not_split_the_line() -> None:
    body = "first\u2028second\x85third\u2029fourth"
    line = json.dumps(sms(body=body), ensure_ascii=False).encode()
    items = read(line + b"\r\n" + good(2))
    assert [type(i).__name__ for i in items] == ["Accepted", "Accepted"]
    first = items[0]
    assert isinstance(first, Accepted) and first.event.body == body  # type: ignore[union-attr]


def test_blank_lines_are_skipped_and_numbers_stay_true() -> None:
    items = read(b"\n   \n" + good(1) + b"\n\n{oops")
    assert [(type(i).__name__, i.number) for i in items] == [("Accepted", 3), ("Rejected", 5)]


def test_an_overlong_line_is_refused_and_the_next_is_read() -> None:
    data = b"x" * 5000 + b"\n" + good(1)
    assert [(n, t) for n, _, _, t in split_lines(io.BytesIO(data), max_bytes=1000)] == [
        (1, True), (2, False)]
    items = list(read_events(io.BytesIO(data), max_bytes=1000))
    first = items[0]
    assert isinstance(first, Rejected) and first.truncated and first.size == 5001
    assert len(first.raw) == 1000 and isinstance(items[1], Accepted)


def test_the_tenant_is_known_only_when_configured() -> None:
    regions = {"acme": "US"}
    items = read(json.dumps(sms(direction="x")).encode() + b"\n"
                 + json.dumps(sms(tenant="other")).encode(), region_for=regions.__getitem__)
    assert [i.tenant for i in items if isinstance(i, Rejected)] == ["acme", None]


def test_the_rejects_files_hold_the_bytes_and_are_rewritten_per_run(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl.rejected"
    rejected = [i for i in read(b"\n".join(HOSTILE)) if isinstance(i, Rejected)]
    with RejectsFile(target) as kept:
        for r in rejected:
            kept.add(r)
    assert target.read_bytes() == b"\n".join(HOSTILE) + b"\n"
    reasons = [json.loads(x) for x in kept.reasons_path.read_text().splitlines()]
    assert [r["line"] for r in reasons] == [1, 2, 3, 4]
    assert reasons[3]["problems"] == [{"field": "(unknown field)",
                                       "problem": "is not a field of this object"}]
    with RejectsFile(target) as again:
        again.add(rejected[0])
    assert target.read_bytes() == HOSTILE[0] + b"\n"  # rewritten, not appended
    with RejectsFile(target):
        pass
    assert not target.exists() and not kept.reasons_path.exists()


def test_a_rejects_file_that_cannot_be_written_is_an_error_not_a_half_file(tmp_path: Path) -> None:
    import pytest

    target = tmp_path / "events.jsonl.rejected"
    (tmp_path / "events.jsonl.rejected.reasons").mkdir()  # the companion cannot be opened
    rejected = [i for i in read(b"{oops") if isinstance(i, Rejected)]
    with pytest.raises(OSError), RejectsFile(target) as kept:
        kept.add(rejected[0])
