"""The scale demo's report (scale.py): the sandboxes' requests counted, the table at the end."""

from __future__ import annotations

import collections
import os
import re
import signal
import time
from typing import Any

#: A record's marker: Clio keeps it in an external property, Smokeball in the text.
MARKER = {"clio": re.compile(r'"value": "(cb[12]-[A-Za-z0-9_-]+)"'),
          "smokeball": re.compile(r"callbridge ref: (cb[12]-[A-Za-z0-9_-]+)")}


class Counted:
    """An ASGI app's requests: (monotonic time, credential, status, method and path)."""

    def __init__(self, app: Any, credential: bytes) -> None:
        self.app, self.credential, self.log = app, credential, []  # type: ignore[var-annotated]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = dict(scope["headers"]).get(self.credential, b"")
        status: list[int] = []

        async def sent(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, sent)
        self.log.append((time.monotonic(), who, status[0] if status else 0,
                         f"{scope['method']} {re.sub(r'/[0-9]+', '/N', scope['path'])}"))

def peak_fraction(times: list[float], window: float, allowed: float) -> float:
    """Requests in the busiest window of ``window`` seconds / what the limit allows in it."""
    if not times:
        return 0.0
    counts = collections.Counter(int(t // window) for t in times)
    return max(counts.values()) / allowed

def report(events: int, tenants: int, workers: int, scale: int, records: dict[str, list[str]],
           counts: dict[tuple[str, str], int], lives: list[Any], clio: Counted,
           smokeball: Counted, post_seconds: float, finished: float, killed: list[float],
           budget: float, cpu: list[dict[str, Any]], warmed: int | None) -> dict[str, Any]:
    clio_events = sum(1 for i in range(events) if (i % tenants) % 2 == 0)
    per_app = {"clio": clio_events, "smokeball": events - clio_events}
    apps: dict[str, Any] = {}
    for app, texts in records.items():
        markers = collections.Counter(found.group(1) for text in texts
                                      if (found := MARKER[app].search(text)))
        expected = per_app[app]
        # Still being worked when the budget ran out: not lost, not done (the table says so).
        still_open = sum(n for (a, status), n in counts.items()
                         if a == app and status in ("pending", "waiting", "accepted"))
        apps[app] = {"expected": expected, "records": len(texts), "distinct": len(markers),
                     "duplicates": sum(n - 1 for n in markers.values()),
                     "unmarked": len(texts) - sum(markers.values()), "open": still_open,
                     # an event with no record once nothing is open (open ones: not settled)
                     "lost": max(0, expected - len(markers) - still_open)}
    clio_by_token: dict[bytes, list[float]] = collections.defaultdict(list)
    for at, who, *_ in clio.log:
        if who.startswith(b"Bearer"):
            clio_by_token[who].append(at)
    clio_fractions = sorted(peak_fraction(times, 60.0, 50.0 * scale)
                            for times in clio_by_token.values())
    sb_times = [at for at, who, *_ in smokeball.log if who]
    lives_out = []
    for proc, path in lives:
        stamps = [float(x) for x in path.read_text().split()] if path.exists() else []
        span = (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        lives_out.append({"pid": proc.pid, "killed": proc.returncode == -signal.SIGKILL,
                          "deliveries": len(stamps),
                          "per_second": round(len(stamps) / span, 1) if span else None})
    return {
        "events": events, "tenants": tenants, "workers": workers, "scale": scale,
        "cores": os.cpu_count(), "post_seconds": round(post_seconds, 1),
        "posted_per_second": round(events / post_seconds, 1),
        "seconds_to_done": round(finished, 1), "budget": budget,
        "burst_began_s": round(killed[0], 1), "killed_at_s": [round(k, 1) for k in killed[1:]],
        "outcomes": {f"{a}:{s}": n for (a, s), n in sorted(counts.items())},
        "apps": apps, "http_429": {"clio": sum(1 for _, _, s, _ in clio.log if s == 429),
                                   "smokeball": sum(1 for _, _, s, _ in smokeball.log if s == 429)},
        "requests": {"clio": len(clio.log), "smokeball": len(smokeball.log)},
        "requests_by_path": {app: dict(collections.Counter(p for *_, p in c.log).most_common(8))
                             for app, c in (("clio", clio), ("smokeball", smokeball))},
        "worker_lives": lives_out,
        "rate_limit_used": {
            "clio_per_token_busiest_minute": {
                "median": round(clio_fractions[len(clio_fractions) // 2], 3) if clio_fractions else 0,
                "max": round(clio_fractions[-1], 3) if clio_fractions else 0},
            "smokeball_partner_busiest_10s": round(peak_fraction(sb_times, 10.0, 50.0 * scale), 3)},
        "cpu": cpu, "indexes_warmed": warmed,
    }

def table(r: dict[str, Any]) -> str:
    rows = [("events posted", f"{r['events']} over {r['tenants']} firms "
             f"({r['posted_per_second']}/s acknowledged)"),
            ("done after", f"{r['seconds_to_done']} s from the start (budget {r['budget']:.0f} s); "
             f"the burst began at {r['burst_began_s']} s, a worker killed at {r['killed_at_s']} s"),
            ("every event written", f"{r.get('written_s')} s from the start (then the accepted "
             "writes' confirmation checks)")]
    for app, a in r["apps"].items():
        rows += [(f"{app}: records", f"{a['records']} of {a['expected']}"
                  + (f" ({a['open']} still being worked at the budget's end)" if a["open"] else "")),
                 (f"{app}: duplicates", str(a["duplicates"])), (f"{app}: lost", str(a["lost"])),
                 (f"{app}: 429s", str(r["http_429"][app]))]
    for n, life in enumerate(r["worker_lives"]):
        rows.append((f"worker life {n}", f"{life['deliveries']} deliveries, "
                     f"{life['per_second']}/s{' (SIGKILLed)' if life['killed'] else ''}"))
    used = r["rate_limit_used"]
    rows += [("clio limit used (busiest minute)",
              f"median {used['clio_per_token_busiest_minute']['median']:.1%}, "
              f"max {used['clio_per_token_busiest_minute']['max']:.1%} per token"),
             ("smokeball limit used (busiest 10 s)", f"{used['smokeball_partner_busiest_10s']:.1%}"),
             ("scale", f"sandbox and host limits x{r['scale']}; {r['cores']} cores"),
             ("phone indexes", "synced before the burst" if r["indexes_warmed"] is not None
              else "cold at the burst (every lookup live until a sync)")]
    rows.append(("attempts (app:status:reason)",
                 ", ".join(f"{k} {n}" for k, n in r.get("attempts", {}).items())))
    rows += [(f"cpu: {c['process']}", f"{c['cpu_seconds']} s, {c['ms_per_event']} ms/event"
              + (f" ({c['until_written']} s until every event was written)"
                 if "until_written" in c else "")) for c in r["cpu"]]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
