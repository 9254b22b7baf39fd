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

The intake's own (``events_received``, ``requests_refused``, ``ack_seconds``) are counted
on every request, always on the event loop's thread: they are plain dictionaries and
lists without a lock (:class:`Tally`, :class:`LoopHistogram`, reached directly with
:meth:`Metrics.tally` and :meth:`Metrics.histogram`), rendered at each scrape.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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

#: Counted on the event loop's thread only (by the intake): kept without a lock.
LOOP_ONLY = frozenset({"events_received", "requests_refused", "ack_seconds"})


class Tally:
    """A counter by label values, added to on one thread only (no lock)."""

    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.counts: dict[tuple[str, ...], float] = {}

    def add(self, values: tuple[str, ...], amount: float = 1) -> None:
        """Add ``amount`` for the label values ``values`` (in :attr:`labels`' order)."""
        counts = self.counts
        counts[values] = counts.get(values, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for values, count in list(self.counts.items()):
            family.add_metric(values, count)
        return family


class LoopHistogram:
    """A histogram without labels, observed on one thread only (no lock)."""

    def __init__(self, name: str, doc: str, buckets: Sequence[float] = BUCKETS) -> None:
        self.name, self.doc, self.bounds = name, doc, tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> Metric:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        family = HistogramMetricFamily(self.name, self.doc)
        family.add_metric((), buckets=buckets, sum_value=self.sum)
        return family


class _LoopMetrics(Collector):
    def __init__(self) -> None:
        self.metrics: list[Tally | LoopHistogram] = []

    def collect(self) -> Iterable[Metric]:
        for metric in self.metrics:
            yield metric.family()


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
        self._loop = _LoopMetrics()
        self.registry.register(self._loop)
        for name, (kind, doc, labels) in _DECLARED.items():
            self._declare(name, kind, doc, labels)

    def _declare(self, name: str, kind: str, doc: str, labels: Sequence[str]) -> Any:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a Prometheus name (a-z, 0-9, _)")
        if name in LOOP_ONLY:
            metric: Any = (Tally(PREFIX + name, doc, labels) if kind == "counter"
                           else LoopHistogram(PREFIX + name, doc))
            self._loop.metrics.append(metric)
        elif kind == "counter":
            metric = Counter(PREFIX + name, doc, tuple(labels), registry=self.registry)
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
        if isinstance(metric, Tally | LoopHistogram):
            return metric
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to the counter ``callbridge_<name>_total``."""
        metric = self._get(name, "counter", labels)
        if isinstance(metric, Tally):
            metric.add(tuple(labels[label] for label in metric.labels), amount)
        else:
            metric.inc(amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one value in the histogram ``callbridge_<name>``."""
        self._get(name, "histogram", labels).observe(value)

    def tally(self, name: str) -> Tally:
        """A counter kept on the event loop's thread (one of :data:`LOOP_ONLY`)."""
        metric = self._metrics[name]
        assert isinstance(metric, Tally)
        return metric

    def histogram(self, name: str) -> LoopHistogram:
        """A histogram kept on the event loop's thread (one of :data:`LOOP_ONLY`)."""
        metric = self._metrics[name]
        assert isinstance(metric, LoopHistogram)
        return metric

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
