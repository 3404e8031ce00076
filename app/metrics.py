"""Prometheus metrics at /metrics: HTTP traffic per route and status, and business counters."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics
from sqlalchemy.ext.asyncio import AsyncEngine

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

PURCHASES = "purchases_captured"
CUSTOMERS_CREATED = "customers_created"
CUSTOMERS_UPDATED = "customers_updated"

# What the current request's transaction stored, counted only once it has committed (app.db).
_pending: ContextVar[dict[str, int] | None] = ContextVar("pending_counts", default=None)


def start_tally() -> dict[str, int]:
    counts: dict[str, int] = {}
    _pending.set(counts)
    return counts


def tally(*, purchases: int, created: int, updated: int) -> None:
    """Note what the current transaction stored."""
    counts = _pending.get()
    if counts is None:
        return
    stored = {PURCHASES: purchases, CUSTOMERS_CREATED: created, CUSTOMERS_UPDATED: updated}
    for key, n in stored.items():
        counts[key] = counts.get(key, 0) + n


class Metrics:
    """One registry per app, so several apps (tests, workers) never share or clash."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters = {
            PURCHASES: Counter(PURCHASES, "Purchases stored", registry=self.registry),
            CUSTOMERS_CREATED: Counter(
                CUSTOMERS_CREATED, "Customers added by a purchase", registry=self.registry
            ),
            CUSTOMERS_UPDATED: Counter(
                CUSTOMERS_UPDATED, "Known customers updated by a purchase", registry=self.registry
            ),
        }
        self.pool_in_use = Gauge(
            "db_pool_connections_in_use",
            "Database connections checked out of the pool",
            registry=self.registry,
        )

    def instrument(self, app: FastAPI) -> None:
        """Count and time every request by route template, method and exact status."""
        Instrumentator(
            should_group_status_codes=False,
            excluded_handlers=["/metrics"],
            registry=self.registry,
        ).add(
            http_metrics.requests(registry=self.registry),
            http_metrics.latency(registry=self.registry, buckets=LATENCY_BUCKETS),
        ).instrument(app).expose(app, include_in_schema=False)

    def watch_pool(self, engine: AsyncEngine) -> None:
        pool = engine.pool
        self.pool_in_use.set_function(lambda: float(getattr(pool, "checkedout", lambda: 0)()))

    def record_committed(self, counts: Mapping[str, object]) -> None:
        for key, counter in self._counters.items():
            value = counts.get(key, 0)
            if isinstance(value, int) and value:
                counter.inc(value)
