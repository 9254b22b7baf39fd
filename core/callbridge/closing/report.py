"""What one run of the closed-matter sync did, for ``callbridge sync-closed`` and logs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: A matter's fate in a run: sent, skipped (with why), held by a configuration
#: error, or the state its send is left in (waiting, parked, failed, dead).
Fate = str


@dataclass
class Line:
    """One closed matter in one run (ids only: no client's name, email or number)."""

    matter: str
    name: str | None
    closed_on: str
    fate: Fate
    reason: str | None = None
    why: str = ""
    record: str | None = None


@dataclass
class FirmReport:
    """One firm's run."""

    tenant: str
    source: str
    destination: str
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    pages: int = 0
    held: int = 0
    lines: list[Line] = field(default_factory=list)

    def line(self, matter: str) -> Line | None:
        return next((x for x in self.lines if x.matter == matter), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for x in self.lines:
            out[x.fate] = out.get(x.fate, 0) + 1
        if self.held:
            out["held"] = out.get("held", 0) + self.held
        return out

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts()}


def text(reports: list[FirmReport]) -> list[str]:
    """The lines ``sync-closed`` prints."""
    out = []
    for r in reports:
        counts = ", ".join(f"{n} {fate}" for fate, n in sorted(r.counts().items())) or "nothing new"
        out.append(f"{r.tenant}: {r.source} -> {r.destination}: {counts}")
        for problem in r.problems:
            out.append(f"  configuration error: {problem}; every send of this firm is held "
                       "until it is fixed")
        if r.error:
            out.append(f"  the source could not be read: {r.error}")
        for x in r.lines:
            what = f"matter {x.name or x.matter} (closed {x.closed_on})"
            detail = x.why or (f"record {x.record}" if x.record else "")
            out.append(f"  {x.fate:<8} {what}" + (f": {detail}" if detail else ""))
    return out
