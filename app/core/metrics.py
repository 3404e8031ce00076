"""Prometheus metrics at /metrics: HTTP traffic per route and status, and business counters."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from app.core import multiprocess

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METRICS_PATH = "/metrics"
UNMATCHED = "none"

PURCHASES = "purchases_captured"
CUSTOMERS_CREATED = "customers_created"
CUSTOMERS_UPDATED = "customers_updated"

# What the current request's transaction stored, counted only once it has committed (app.core.db).
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
    """The service's metrics, one set per app so that several apps (tests) never share or clash.

    In one process they live in this app's registry, with the library's process collector. With
    several workers (PROMETHEUS_MULTIPROC_DIR set, see app.core.multiprocess) each worker writes
    them to its files, and /metrics sums every worker's files instead: counters and histograms of
    all workers, dead ones included, the pool gauge of the live ones, and each live worker's
    process metrics labelled by pid.
    """

    def __init__(self) -> None:
        # The `_created` series (one per counter and histogram child) only repeat the process's
        # start time, which process_start_time_seconds gives; multiprocess mode has none anyway.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.multiprocess_dir = multiprocess.directory()
        self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            self.exposed = self.registry
            ProcessCollector(registry=self.registry)
        else:
            # A pid reused from a worker that died unmarked would inherit its live gauges.
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
            self.exposed.register(multiprocess.WorkerProcessCollector(self.multiprocess_dir))
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
            multiprocess_mode="livesum",  # every running worker's pool, none of the dead ones'
        )

        labels = ("handler", "method", "status")
        self.http_requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            labels,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests in seconds",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # One pair of children per series: `.labels()` validates and locks on every call.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def close(self) -> None:
        """On a worker's shutdown: its live gauges leave the sums (its counters stay)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)

    def expose(self, app: FastAPI) -> None:
        """GET /metrics: this app's registry as Prometheus text, left out of the API spec."""

        async def metrics() -> Response:
            return Response(generate_latest(self.exposed), media_type=CONTENT_TYPE_LATEST)

        app.get(METRICS_PATH, include_in_schema=False)(metrics)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request by route template, method and exact status."""
        if handler == METRICS_PATH:
            return  # scrapes would otherwise dominate the traffic they report
        key = (handler, method, status)
        series = self._series.get(key)
        if series is None:
            labels = (handler, method, str(status))
            series = self._series[key] = (
                self.http_requests.labels(*labels),
                self.http_duration.labels(*labels),
            )
        series[0].inc()
        series[1].observe(seconds)

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Counts checkouts and checkins as they happen: a value computed at scrape time (a
        gauge function) would be the answering worker's alone in multiprocess mode."""
        pool = engine.sync_engine.pool
        event.listen(pool, "checkout", lambda *_: self.pool_in_use.inc())
        event.listen(pool, "checkin", lambda *_: self.pool_in_use.dec())

    def record_committed(self, counts: Mapping[str, object]) -> None:
        for key, counter in self._counters.items():
            value = counts.get(key, 0)
            if isinstance(value, int) and value:
                counter.inc(value)


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that served the request (`/api/v1/customers/{customer_id}`),
    never the path itself, so a client cannot add a time series per URL.

    FastAPI leaves its matched route in the scope, which the outer middleware shares; plain
    Starlette routes and mounts (/openapi.json, /static) do not, nor do requests answered before
    routing (a body declared too large): those are matched here as the router would, against
    the scope as it arrived (`root_path`). Anything else, trailing-slash redirects included, is
    "none".
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    routes = getattr(scope.get("app"), "routes", None)
    if routes:
        matched = _match_template({**scope, "root_path": root_path}, routes)
        if matched is not None:
            return matched
    return UNMATCHED


def _match_template(scope: Scope, routes: Iterable[BaseRoute]) -> str | None:
    """A full match wins; else the first partial one (right path, other method: a 405)."""
    partial = None
    for route in _flatten(routes):
        match, child_scope = route.matches(scope)
        if match is Match.NONE:
            continue
        name: str | None
        if isinstance(route, Mount) and route.routes:
            child = _match_template({**scope, **child_scope}, route.routes)
            name = None if child is None else route.path + child
        else:
            name = getattr(route, "path", None)
        if name is None:
            continue
        if match is Match.FULL:
            return name
        partial = partial or name
    return partial


def _flatten(routes: Iterable[BaseRoute]) -> list[Any]:
    """FastAPI's included routers hold their routes as contexts carrying the full path."""
    flat: list[Any] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            flat.extend(getattr(c, "starlette_route", None) or c for c in contexts())
        else:
            flat.append(route)
    return flat
