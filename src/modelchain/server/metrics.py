"""Prometheus metrics of one node: appends, latency, queue depth, checkpoint
age; for a cluster node also its final size, divergence and applied order."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..ledger.ledger import Ledger
from ..node.node import Ack, Node

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """A registry per application, so that two servers in one process (tests)
    do not share counters."""

    def __init__(self, ledger: Ledger) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.appends = Counter(
            "modelchain_appends",
            "Entries appended through this server, by outcome",
            ["result"],
            registry=r,
        )
        self.append_seconds = Histogram(
            "modelchain_append_seconds",
            "Time from receiving a submission to its durable acknowledgement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "modelchain_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "modelchain_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        size = Gauge("modelchain_log_size", "Entries in the log", registry=r)
        size.set_function(lambda: ledger.size)
        depth = Gauge(
            "modelchain_queue_depth",
            "Admitted transactions waiting to be written",
            registry=r,
        )
        depth.set_function(lambda: ledger.node.backlog)
        age = Gauge(
            "modelchain_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (0 when it covers the whole log)",
            registry=r,
        )
        age.set_function(lambda: _checkpoint_age(ledger))
        checkpoint_size = Gauge(
            "modelchain_checkpoint_size", "Size of the latest signed checkpoint", registry=r
        )
        checkpoint_size.set_function(lambda: ledger.node.checkpoint_size)
        failures = Gauge(
            "modelchain_checkpoint_failures",
            "Checkpoints that could not be stored since the node started (each is retried)",
            registry=r,
        )
        failures.set_function(lambda: ledger.node.checkpoint_failures)
        stopped = Gauge(
            "modelchain_writes_stopped",
            "1 once the writer met a fault it cannot go on from (writes answer 503)",
            registry=r,
        )
        stopped.set_function(lambda: ledger.node.fault is not None)
        if ledger.node.cluster_status() is not None:
            self._cluster_gauges(ledger)

    def _cluster_gauges(self, ledger: Ledger) -> None:
        """A cluster node's: how far checkpoints are final, whether it
        diverged, how much of the order it applied."""
        node = ledger.node
        final = Gauge(
            "modelchain_cluster_final_size",
            "Size of the latest checkpoint a quorum of the cluster's nodes cosigned",
            registry=self.registry,
        )
        final.set_function(lambda: node.final_size)
        diverged = Gauge(
            "modelchain_cluster_diverged",
            "1 once this node found a quorum of the others on another root (it stopped)",
            registry=self.registry,
        )
        diverged.set_function(lambda: node.divergence is not None)
        revision = Gauge(
            "modelchain_cluster_applied_revision",
            "The etcd revision of the last ordered batch this node applied",
            registry=self.registry,
        )
        revision.set_function(lambda: _applied_revision(node))

    def appended(self, acks: Sequence[Ack], seconds: float) -> None:
        for ack in acks:
            self.appends.labels("accepted" if ack.outcome.accepted else "rejected").inc()
        if acks:
            self.append_seconds.observe(seconds)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _checkpoint_age(ledger: Ledger) -> float:
    node = ledger.node
    if node.checkpoint_size >= ledger.size:
        return 0.0
    return max(0.0, time.time() - node.checkpoint_time)


def _applied_revision(node: Node) -> float:
    status = node.cluster_status()
    revision = None if status is None else status["applied_revision"]
    return float(revision) if isinstance(revision, int) else 0.0
