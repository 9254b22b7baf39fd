"""Property tests over the event schema and the ingest reader: bytes in, never an
exception out; every refused line names its number and a field; no value echoed."""

from __future__ import annotations

import io
import json
from typing import Any

from callbridge.reader import Accepted, Rejected, read_events, read_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: Written into every generated key and text value, so an echo is easy to see.
CANARY = "QZXW"
CANARY_INT = 987_654_321_012

VALID: list[dict[str, Any]] = [
    {"kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
     "external": {"number": "+12125550142", "name": "Dana"},
     "started_at": "2026-03-02T10:00:00Z", "ended_at": "2026-03-02T10:04:00Z",
     "outcome": "completed", "notes": "hello"},
    {"kind": "call", "id": "c-2", "tenant": "acme", "direction": "outbound", "state": "ringing",
     "sequence": 3, "external": {"number": "+12125550142"}, "started_at": "2026-03-02T10:00:00Z"},
    {"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound", "status": "sent",
     "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T10:00:00Z", "body": "hi"},
    {"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound", "page_count": 1,
     "external": {"number": "+12125550142"}, "sent_at": "2026-03-02T10:00:00Z",
     "document": {"content": "JVBERi0xLjQ=", "filename": "a.pdf"}},
]

canary_text = st.text(max_size=30).map(lambda s: CANARY + s)
json_leaf = st.one_of(st.none(), st.booleans(), st.just(CANARY_INT), st.just(-CANARY_INT),
                      st.floats(allow_nan=False), canary_text)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(canary_text, inner, max_size=4)),
    max_leaves=12)


def _paths(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in obj.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with some fields replaced by any JSON, and some keys added."""
    event = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    paths = _paths(event)
    for path in draw(st.lists(st.sampled_from(paths), max_size=3, unique=True)):
        target = event
        for part in path[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = draw(json_value)
    if draw(st.booleans()):
        event[draw(canary_text)] = draw(json_value)
    return event


def _check(item: Accepted | Rejected, number: int) -> None:
    assert item.number == number
    if isinstance(item, Rejected):
        assert item.problems, "a rejection without a reason"
        for problem in item.problems:
            assert problem.location and problem.problem
        assert CANARY not in item.reason and str(CANARY_INT) not in item.reason


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(mutated_events())
def test_any_json_shaped_like_an_event_is_accepted_or_refused_cleanly(event: dict[str, Any]) -> None:
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    _check(read_line(7, raw), 7)


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_are_refused_with_a_reason(raw: bytes) -> None:
    item = read_line(3, raw)
    assert isinstance(item, Rejected)
    _check(item, 3)


@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=80),
                          mutated_events().map(lambda e: json.dumps(e).encode())),
                max_size=8))
def test_a_file_of_any_lines_is_read_line_by_line(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    items = list(read_events(io.BytesIO(data)))
    expected = [n for n, line in enumerate(data.split(b"\n"), 1) if line.strip()]
    assert [i.number for i in items] == expected
    for item in items:
        _check(item, item.number)
        if isinstance(item, Rejected):
            assert item.raw == data.split(b"\n")[item.number - 1]
