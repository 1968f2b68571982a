"""Prometheus metrics of the service (prometheus-client)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from authz.decisions import Decision

DECISIONS = Counter(
    "authz_decisions_total",
    "Decisions answered, by endpoint, action and result",
    ["endpoint", "action", "allowed"],
)


def count(endpoint: str, decisions: Iterable[Decision]) -> None:
    for d in decisions:
        DECISIONS.labels(endpoint, d.request.action, str(d.allowed).lower()).inc()
