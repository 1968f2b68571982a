"""Prometheus metrics of the service (prometheus-client), correct under several gunicorn workers.

Under gunicorn, `service/gunicorn_conf.py` sets `PROMETHEUS_MULTIPROC_DIR` before anything
imports prometheus_client: every process (workers and the master, which counts refused
policies) writes its samples there, and a scrape of any worker sums them all. Outside
gunicorn (tests, `flask run`) the process's own registry is served.

What comes from the store (data_version, replica age) is read when scraped, so it is never
older than the scrape.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from authz.decisions import Decision
from authz.errors import AuthzError
from authz.runtime import Runtime
from authz.state import read_freshness

DECISIONS = Counter(
    "authz_decisions_total",
    "Decisions answered, by endpoint, action and result",
    ["endpoint", "action", "allowed"],
)
LATENCY = Histogram(
    "authz_request_duration_seconds",
    "Time from request to answer inside the worker, by route",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
POLICY_REFUSALS = Counter(
    "authz_policy_refusals_total",
    "Policy versions refused at start or on SIGHUP: they did not load or failed a fixture",
)
LOG_BACKLOG = Gauge(
    "authz_decision_log_backlog",
    "Decisions answered but not yet written to the decision log (the most that waited in "
    "each worker's last write cycle), summed over live workers",
    multiprocess_mode="livesum",
)
LOG_WRITE_FAILURES = Counter(
    "authz_decision_log_write_failures_total",
    "Bulk writes of the decision log that failed (the entries were kept and retried)",
)


def count(endpoint: str, decisions: Sequence[Decision]) -> None:
    """Count decisions by action and answer: one increment per distinct pair, not per
    decision (a batch of 100 paid 0.9 ms in label lookups and sample-file writes)."""
    if len(decisions) == 1:
        d = decisions[0]
        _decisions(endpoint, d.request.action, d.allowed).inc()
        return
    pairs = collections.Counter((d.request.action, d.allowed) for d in decisions)
    for (action, allowed), n in pairs.items():
        _decisions(endpoint, action, allowed).inc(n)


def observe_latency(route: str, seconds: float) -> None:
    _latency(route).observe(seconds)


# The labelled children, looked up once each: `labels` checks and joins the label values and
# takes a lock on every call. Their number is bounded by the routes, endpoints and actions.
@functools.cache
def _decisions(endpoint: str, action: str, allowed: bool) -> Counter:
    return DECISIONS.labels(endpoint, action, "true" if allowed else "false")


@functools.cache
def _latency(route: str) -> Histogram:
    return LATENCY.labels(route)


class LogMetrics:
    """The decision log's backlog and failed writes, as this worker's samples."""

    def backlog(self, entries: int) -> None:
        LOG_BACKLOG.set(entries)

    def write_failed(self) -> None:
        LOG_WRITE_FAILURES.inc()


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: the data version and the replica's age."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.rt.db.read() as session:
                freshness = read_freshness(session)
        except AuthzError:
            up = GaugeMetricFamily("authz_store_up", "1 when the store answered this scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("authz_store_up", "1 when the store answered this scrape")
        up.add_metric([], 1)
        yield up
        version = GaugeMetricFamily(
            "authz_data_version", "The store's data version (grows with every change)"
        )
        version.add_metric([], freshness.data_version)
        yield version
        age = freshness.age_seconds(datetime.now(UTC))
        if age is not None:
            sync = GaugeMetricFamily(
                "authz_replica_age_seconds",
                "Now minus extracted_at of the newest applied ASPIRE batch",
            )
            sync.add_metric([], age)
            yield sync
        info = GaugeMetricFamily(
            "authz_policy_info", "The policy version this worker serves", labels=["version"]
        )
        info.add_metric([self.rt.policy.version], 1)
        yield info


def exposition(rt: Runtime) -> bytes:
    """The text exposition: every process's samples, then the store's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    store = CollectorRegistry()
    store.register(StoreCollector(rt))
    return generate_latest(registry) + generate_latest(store)
