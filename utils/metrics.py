"""The collector's own figures, read from one snapshot: Prometheus, the status line, InfluxDB.

The pipeline describes its state as a list of `Sample`s (`snapshot()`); the Prometheus endpoint
renders them at scrape time, and the same list becomes `pipeline_health` points and the status
log line, so the three never disagree. Names follow `hyperflux_<thing>_<unit>`, with `_total`
for counters; labels only for bounded sets.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Sample:
    name: str  # without the hyperflux_ prefix; counters end in _total
    kind: Kind
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


Snapshot = Callable[[], list[Sample]]


class SnapshotCollector(Collector):
    """Renders a snapshot as Prometheus metric families at scrape time."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        try:
            samples = self.snapshot()
        except Exception:
            log.exception("metrics snapshot failed")
            return
        for sample in samples:
            name = f"hyperflux_{sample.name}"
            family = families.get(name)
            if family is None:
                labels = sorted(sample.labels)
                if sample.kind == "counter":
                    family = CounterMetricFamily(
                        name.removesuffix("_total"), sample.help, labels=labels
                    )
                else:
                    family = GaugeMetricFamily(name, sample.help, labels=labels)
                families[name] = family
            family.add_metric([sample.labels[k] for k in sorted(sample.labels)], sample.value)
        yield from families.values()


class MetricsServer:
    """`/metrics` on 127.0.0.1:port (port 0: disabled), in a daemon thread."""

    def __init__(self, snapshot: Snapshot, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.registry = CollectorRegistry()
        self.registry.register(SnapshotCollector(snapshot))
        self._server: object | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.port == 0:
            return
        try:
            self._server, self._thread = start_http_server(
                self.port, addr=self.host, registry=self.registry
            )
        except OSError as exc:
            log.error(
                "metrics not served: port %d on %s is not free (%s); set HYPERFLUX_METRICS_PORT "
                "to another port, or 0 to disable",
                self.port,
                self.host,
                exc.strerror,
            )
            return
        log.info("metrics at http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._server = None


def status_line(samples: list[Sample], names: tuple[str, ...]) -> str:
    """`name=value` for the named unlabelled samples, in the given order."""
    by_name = {s.name: s.value for s in samples if not s.labels}
    return " ".join(
        f"{n.removesuffix('_total')}={_number(by_name[n])}" for n in names if n in by_name
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"
