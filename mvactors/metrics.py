"""``mvactors.metrics``: a runtime's ``stats()`` as Prometheus metrics (``pip install "mvactors[metrics]"``).

>>> from prometheus_client import start_http_server
>>> from mvactors.metrics import RuntimeCollector
>>> RuntimeCollector(rt).register()        # the default registry; one scrape reads rt.stats() once
>>> start_http_server(9100)                # then scrape http://host:9100/metrics

Counters (``mvactors_turns_total``, ``mvactors_gas_used_total``, ...) only grow while the
runtime lives; gauges (``mvactors_actors``, ``mvactors_mailbox_depth``, ...) are the current
state; ``mvactors_turn_latency_seconds{quantile="0.5"|"0.99"}`` covers recent turns.  Numeric
``stats()`` entries this module does not know yet are exported as gauges under their own name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # an extra: say which one
    raise ImportError('mvactors.metrics needs prometheus-client: pip install "mvactors[metrics]"') from exc

from .actors import Runtime

COUNTERS = {
    "turns": "Turns run (messages, async completions and timers)",
    "pauses": "Times an actor paused (gas exhausted, quota empty)",
    "gas_used": "Instructions executed by metered turns",
    "hibernations": "Times an idle actor was snapshotted and its VM released",
    "rehydrations": "Times a hibernated actor was restored to serve a message",
    "failed_turns": "Turns that raised (whether or not a caller received the error)",
    "unawaited_failures": "Failures no caller received (failed send()s, rejected promises nobody awaits)",
}
GAUGES = {
    "actors": "Actors in the runtime",
    "resident": "Actors with a live VM",
    "hibernated": "Actors held as a snapshot",
    "paused": "Actors paused until resumed",
    "failed": "Actors that failed and stopped",
    "mailbox_depth": "Messages waiting across all mailboxes",
    "host_calls_in_flight": "Asynchronous host calls running",
    "timers": "Guest sleeps waiting for their due time",
}
LATENCY_QUANTILES = {"turn_latency_p50_us": "0.5", "turn_latency_p99_us": "0.99"}
# Derived from counters by the scraper (rate()), so not exported twice.
SKIPPED = {"turns_per_second"}


class RuntimeCollector(Collector):
    """A Prometheus collector reading ``runtime.stats()`` at each scrape.

    ``labels`` (for example ``{"runtime": "fleet"}``) tell several runtimes of one process apart.
    """

    def __init__(self, runtime: Runtime, *, namespace: str = "mvactors", labels: Mapping[str, str] | None = None):
        self.runtime = runtime
        self.namespace = namespace
        self.labels = dict(labels or {})

    def register(self, registry: CollectorRegistry = REGISTRY) -> RuntimeCollector:
        """Add this collector to ``registry`` (the default one unless given); returns self."""
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        stats = self.runtime.stats()
        names = list(self.labels)
        values = list(self.labels.values())
        for key, doc in COUNTERS.items():
            if key in stats:
                counter = CounterMetricFamily(f"{self.namespace}_{key}", doc, labels=names)
                counter.add_metric(values, float(stats[key]))
                yield counter
        for key, doc in GAUGES.items():
            if key in stats:
                yield self._gauge(key, doc, stats[key])
        latency = GaugeMetricFamily(
            f"{self.namespace}_turn_latency_seconds", "Turn latency over recent turns", labels=[*names, "quantile"]
        )
        for key, quantile in LATENCY_QUANTILES.items():
            seconds = float(stats.get(key, math.nan)) / 1e6
            latency.add_metric([*values, quantile], seconds)
        yield latency
        known = COUNTERS.keys() | GAUGES.keys() | LATENCY_QUANTILES.keys() | SKIPPED
        for key, value in stats.items():
            if key not in known and isinstance(value, int | float) and not isinstance(value, bool):
                yield self._gauge(key, f"Runtime.stats()[{key!r}]", value)

    def _gauge(self, key: str, doc: str, value: Any) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(f"{self.namespace}_{key}", doc, labels=list(self.labels))
        gauge.add_metric(list(self.labels.values()), float(value))
        return gauge
