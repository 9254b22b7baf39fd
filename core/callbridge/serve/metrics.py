"""The server's metrics, in the Prometheus text format (``GET /metrics``), kept with
prometheus_client.

What is counted (every name begins ``callbridge_``):

* ``events_received_total{tenant,source,kind,result}`` — events stored by the intake
  (``result``: new, duplicate, revision);
* ``requests_refused_total{status,reason}`` — requests refused at the edge (and kept
  in the quarantine);
* ``ack_seconds`` — time from a request's arrival to its acknowledgement;
* ``hook_seconds{app,hook,result}`` — each hook call's latency (``result``: ok, error);
* ``app_429_total{plugin,bucket}`` — answers 429 (too many requests) from an app;
* ``outcomes_total{app,status,reason}`` — outcomes this process recorded;
* ``deliveries{app,status,reason}`` — every delivery in the ledger by its current state
  (read from the ledger when scraped).

Route modules add their own with :meth:`Metrics.inc` and :meth:`Metrics.observe`: a
name used the first time is declared then, with the label names of that call (given
with or without the ``callbridge_`` prefix and a counter's ``_total`` suffix).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callbridge.hookspecs import hookimpl

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.ledger import Claim
    from callbridge.models import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "callbridge_"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
#: Latency buckets (seconds), from a fast acknowledgement to a slow app.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_DECLARED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "events_received": ("counter", "Events stored by the intake.",
                        ("tenant", "source", "kind", "result")),
    "requests_refused": ("counter", "Requests refused at the edge (kept in the quarantine).",
                         ("status", "reason")),
    "ack_seconds": ("histogram", "Time from a request's arrival to its acknowledgement.", ()),
    "hook_seconds": ("histogram", "Latency of each hook call.", ("app", "hook", "result")),
    "app_429": ("counter", "Answers 429 (too many requests) from an app.", ("plugin", "bucket")),
    "outcomes": ("counter", "Outcomes recorded by this process.", ("app", "status", "reason")),
}


class _Deliveries(Collector):
    """Deliveries by state, as last read from the ledger (:meth:`Metrics.set_deliveries`)."""

    def __init__(self) -> None:
        self.rows: Sequence[tuple[str, str, str, int]] = ()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(PREFIX + "deliveries", "Deliveries in the ledger by state.",
                                   labels=("app", "status", "reason"))
        for app, status, reason, count in self.rows:
            family.add_metric((app, status, reason), count)
        yield family


class Metrics:
    """Counters and histograms of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._deliveries = _Deliveries()
        self.registry.register(self._deliveries)
        for name, (kind, doc, labels) in _DECLARED.items():
            self._declare(name, kind, doc, labels)

    def _declare(self, name: str, kind: str, doc: str, labels: Sequence[str]) -> Any:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a Prometheus name (a-z, 0-9, _)")
        if kind == "counter":
            metric: Any = Counter(PREFIX + name, doc, tuple(labels), registry=self.registry)
        else:
            metric = Histogram(PREFIX + name, doc, tuple(labels), registry=self.registry,
                               buckets=BUCKETS)
        self._metrics[name] = metric
        return metric

    def _get(self, name: str, kind: str, labels: dict[str, str]) -> Any:
        name = name.removeprefix(PREFIX).removesuffix("_total")  # either spelling is taken
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = self._declare(name, kind, name.replace("_", " "), sorted(labels))
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to the counter ``callbridge_<name>_total``."""
        self._get(name, "counter", labels).inc(amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one value in the histogram ``callbridge_<name>``."""
        self._get(name, "histogram", labels).observe(value)

    def set_deliveries(self, rows: Iterable[tuple[str, str, str | None, int]]) -> None:
        self._deliveries.rows = [(app, status, reason or "", int(n)) for app, status, reason, n in rows]

    def render(self) -> bytes:
        """Everything, in the Prometheus text format."""
        return generate_latest(self.registry)

    # --- wiring to the engine -------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Count the engine's hook calls, 429s and outcomes."""
        engine.registry.manager.register(_HookTimer(self), name=f"callbridge-serve-metrics-{id(self)}")
        engine.limiters.observers.append(self._on_status)
        engine.worker.finished.append(self._on_outcome)

    def _on_status(self, plugin: str, bucket: str, status: int) -> None:
        if status == 429:
            self.inc("app_429", plugin=plugin, bucket=bucket)

    def _on_outcome(self, claim: Claim, outcome: Outcome) -> None:
        self.inc("outcomes", app=claim.app, status=str(outcome.status),
                 reason=outcome.reason or "")


class _HookTimer:
    """An observer of every hook call (the ``hook_called`` hook)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @hookimpl
    def hook_called(self, tenant: str, app: str, hook: str, seconds: float,
                    error: str | None) -> None:
        self.metrics.observe("hook_seconds", seconds, app=app, hook=hook,
                             result="error" if error else "ok")


def lines(text: bytes) -> Iterator[str]:
    """The samples of a rendered scrape (comments left out): for tests and tools."""
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            yield line
