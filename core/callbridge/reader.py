"""Reading a file of events, one JSON object a line, where any line may be hostile.

Lines are split on the line feed byte (``b"\\n"``) only: U+2028, U+0085 and the
other Unicode line breaks are legal inside JSON strings and stay in their line.
Each line is decoded and parsed on its own, so nothing wrong with one line (bytes
that are not UTF-8, JSON nested 100,000 deep, a 5,000-digit integer, a key that
looks like markup) touches another: it becomes a :class:`Rejected` line with its
number and its problems, never an exception.

:class:`RejectsFile` keeps the refused lines byte for byte in ``FILE.rejected``,
with their line numbers and reasons in ``FILE.rejected.reasons``; both are
rewritten on each run.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from callbridge.errors import EventValidationError, FieldProblem
from callbridge.events import TENANT_PATTERN, AnyEvent, parse_event
from callbridge.eventtext import loads

__all__ = ["LINE_MAX_BYTES", "Accepted", "Rejected", "RejectsFile", "read_events", "read_line"]

#: The longest line read. A fax document inline (10 MiB, base64) and the rest of
#: its event fit; a longer line is refused, and only its first bytes are kept.
LINE_MAX_BYTES = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Accepted:
    """A line that holds a valid event."""

    number: int
    event: AnyEvent
    size: int


@dataclass(frozen=True)
class Rejected:
    """A refused line: its number, its bytes (line feed excluded) and what is wrong.

    ``tenant`` is set when the line names a configured tenant (for the quarantine's
    retention); ``truncated`` when the line was longer than the reader keeps.
    """

    number: int
    raw: bytes
    problems: tuple[FieldProblem, ...]
    size: int
    tenant: str | None = None
    truncated: bool = False

    @property
    def reason(self) -> str:
        """Every problem on one line: ``field: problem; field: problem``."""
        return "; ".join(str(p) for p in self.problems)


def split_lines(stream: IO[bytes], *, max_bytes: int = LINE_MAX_BYTES,
                ) -> Iterator[tuple[int, bytes, int, bool]]:
    """``(number, bytes without the line feed, bytes consumed, truncated)`` per line.

    A line longer than ``max_bytes`` is read to its end in chunks, keeping the first
    ``max_bytes`` only.
    """
    number = 0
    while True:
        data = stream.readline(max_bytes + 1)
        if not data:
            return
        number += 1
        size = len(data)
        truncated = False
        if len(data) > max_bytes and not data.endswith(b"\n"):
            truncated = True
            data = data[:max_bytes]
            while True:  # skip the rest of the line without holding it
                rest = stream.readline(_CHUNK)
                size += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
        yield number, data.removesuffix(b"\n"), size, truncated


def read_line(number: int, raw: bytes, *, size: int | None = None, truncated: bool = False,
              region: str | None = None,
              region_for: Callable[[str], str] | None = None) -> Accepted | Rejected:
    """One line to an :class:`Accepted` event or a :class:`Rejected` line; never raises."""
    size = len(raw) if size is None else size
    if truncated:
        return Rejected(number, raw, (FieldProblem(
            "(line)", f"longer than {LINE_MAX_BYTES // (1024 * 1024)} MiB"),), size,
            truncated=True)
    tenant: str | None = None
    try:
        payload = loads(raw)
        tenant = _tenant(payload, region_for)
        event = parse_event(payload, region=region, region_for=region_for)
    except EventValidationError as exc:
        return Rejected(number, raw, tuple(exc.problems), size, tenant)
    except Exception as exc:
        return Rejected(number, raw, (FieldProblem(
            "(event)", f"cannot be read ({type(exc).__name__})"),), size, tenant)
    return Accepted(number, event, size)


def _tenant(payload: Any, region_for: Callable[[str], str] | None) -> str | None:
    """The tenant a line names, if it is a configured one (else None)."""
    if not isinstance(payload, Mapping):
        return None
    tenant = payload.get("tenant")
    if not isinstance(tenant, str) or len(tenant) > 100 or not re.match(TENANT_PATTERN, tenant):
        return None
    if region_for is not None:
        try:
            region_for(tenant)
        except KeyError:
            return None
    return tenant


def read_events(stream: IO[bytes], *, region: str | None = None,
                region_for: Callable[[str], str] | None = None,
                max_bytes: int = LINE_MAX_BYTES) -> Iterator[Accepted | Rejected]:
    """Every non-blank line of ``stream``, read on its own. Blank lines are skipped."""
    for number, raw, size, truncated in split_lines(stream, max_bytes=max_bytes):
        if not truncated and not raw.strip():
            continue
        yield read_line(number, raw, size=size, truncated=truncated, region=region,
                        region_for=region_for)


class RejectsFile:
    """``PATH`` (the refused lines, byte for byte, each ended by a line feed) and
    ``PATH.reasons`` (one JSON object a line: the line's number in the input, its
    number in ``PATH``, and its problems). Opened on the first refused line and
    rewritten, not appended to; a run without one removes both files, which would
    otherwise describe an earlier run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reasons_path = path.with_name(path.name + ".reasons")
        self.count = 0
        self._lines: IO[bytes] | None = None
        self._reasons: IO[str] | None = None

    def add(self, rejected: Rejected) -> None:
        if self._lines is None or self._reasons is None:
            lines = self.path.open("wb")
            try:
                self._reasons = self.reasons_path.open("w", encoding="utf-8")
            except OSError:
                lines.close()
                raise
            self._lines = lines
        self.count += 1
        self._lines.write(rejected.raw + b"\n")
        self._reasons.write(json.dumps({
            "line": rejected.number, "rejected_line": self.count, "truncated": rejected.truncated,
            "problems": [{"field": p.location, "problem": p.problem} for p in rejected.problems],
        }) + "\n")

    def close(self) -> None:
        if self._lines is None or self._reasons is None:
            for stale in (self.path, self.reasons_path):
                with contextlib.suppress(OSError):  # not ours to fight over
                    stale.unlink(missing_ok=True)
            return
        self._lines.close()
        self._reasons.close()

    def __enter__(self) -> RejectsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
