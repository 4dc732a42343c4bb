"""Prometheus metrics, one registry per server instance (no globals).

Counters count what this process served. The fleet's gauges and the step-duration histogram are
read from the store at scrape time (FleetCollector), so every `serve` on one database reports the
same fleet and nothing is lost on a restart. docs/prometheus/ has alert rules and a Grafana
dashboard built on these names."""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

# seconds: a step of a rebuild takes from under a second (capture) to an hour and more (installing)
STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200)
REBUILD_BUCKETS = (300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800)
HISTORY_DAYS = 30  # the step-duration histogram covers the steps of the last 30 days


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter("provision_http_requests_total", "HTTP requests by endpoint and status",
                                     ["endpoint", "status"], registry=self.registry)
        self.renders = Counter("provision_renders_total", "Configs rendered for nodes, by kind", ["kind"],
                               registry=self.registry)
        self.ks_denied = Counter("provision_kickstart_denied_total", "Kickstart fetches refused, by reason",
                                 ["reason"], registry=self.registry)
        self.tftp_requests = Counter("provision_tftp_requests_total", "TFTP requests by outcome", ["outcome"],
                                     registry=self.registry)

    def watch(self, store, cfg) -> None:
        """Report the fleet in `store` on every scrape."""
        self.registry.register(FleetCollector(store, cfg))


class FleetCollector:
    """Node states, rebuild runs, each node's time in its step against the step's timeout, and the
    durations of finished steps and rebuilds. The histogram reads the event log and is kept for
    `cache_seconds`; the gauges are read on every scrape (one query each)."""

    def __init__(self, store, cfg, cache_seconds: float = 60.0) -> None:
        self.store, self.cfg, self.cache_seconds = store, cfg, cache_seconds
        self._lock = threading.Lock()
        self._steps: tuple[float, dict[str, list[float]]] | None = None

    def describe(self):
        return []  # collected only on a scrape, never at registration

    def collect(self):
        from .store import utcnow
        from .workflow import states as S

        now = utcnow()
        rows = self.store.fleet()
        nodes = GaugeMetricFamily("provision_nodes", "Nodes by state and cluster", labels=["state", "cluster"])
        for (state, cluster), n in sorted(Tally((r.state, r.cluster) for r in rows).items()):
            nodes.add_metric([state, cluster], n)
        yield nodes
        failed = GaugeMetricFamily("provision_node_failed", "1 for each node whose rebuild failed",
                                   labels=["node", "cluster", "step"])
        in_step = GaugeMetricFamily("provision_node_step_seconds", "Seconds the node has been in its current step",
                                    labels=["node", "cluster", "step"])
        for r in rows:
            if r.state == S.FAILED:
                failed.add_metric([r.name, r.cluster, r.failed_step or ""], 1)
            elif r.state in S.ACTIVE and r.step_started_at is not None:
                in_step.add_metric([r.name, r.cluster, r.state], (now - r.step_started_at).total_seconds())
        yield failed
        yield in_step
        timeouts = GaugeMetricFamily("provision_step_timeout_seconds", "Seconds a step may take before the node "
                                     "is failed ([defaults] step_timeouts)", labels=["step"])
        for step, seconds in sorted(self.cfg.defaults.step_timeouts.items()):
            timeouts.add_metric([step], seconds)
        yield timeouts
        runs = GaugeMetricFamily("provision_rebuild_runs", "Rebuild runs by status", labels=["status"])
        for status, n in sorted(Tally(r.status for r in self.store.rebuilds()).items()):
            runs.add_metric([status], n)
        yield runs
        yield _histogram("provision_rebuild_duration_seconds", "Each node's last completed rebuild, start to done",
                         {"": [r.last_rebuild_seconds for r in rows if r.last_rebuild_seconds]}, REBUILD_BUCKETS, None)
        yield _histogram("provision_step_duration_seconds",
                         f"Durations of the steps that finished well in the last {HISTORY_DAYS} days",
                         self._step_durations(rows), STEP_BUCKETS, "step")

    def _step_durations(self, rows) -> dict[str, list[float]]:
        from .store import utcnow
        from .workflow.timeline import spans

        with self._lock:
            if self._steps is None or time.monotonic() - self._steps[0] > self.cache_seconds:
                moves = self.store.transitions([r.name for r in rows], since=utcnow() - timedelta(days=HISTORY_DAYS))
                by_step: dict[str, list[float]] = {}
                for name, mv in moves.items():
                    for sp in spans(name, mv):
                        if sp.outcome == "ok" and sp.end is not None:
                            by_step.setdefault(sp.step, []).append(sp.seconds(sp.end))
                self._steps = (time.monotonic(), by_step)
            return self._steps[1]


def _histogram(name: str, doc: str, samples: dict[str, list[float]], buckets, label: str | None):
    h = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, values in sorted(samples.items()):
        counts = [(str(float(b)), sum(1 for v in values if v <= b)) for b in buckets]
        counts.append(("+Inf", len(values)))
        h.add_metric([key] if label else [], counts, sum_value=sum(values))
    return h
