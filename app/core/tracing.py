"""OpenTelemetry traces, from the request down to each SQL statement; off unless asked for.

Switched on by the standard variables: an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.
The SDK then reads the rest itself (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS ...) and exports OTLP over HTTP.

Off, nothing of OpenTelemetry is imported, and no instrumentation is installed: a request runs
exactly the code it runs without this module (`make bench` measures that).

On, each app gets:
- the FastAPI instrumentation: a server span per request, outermost, so that every log line of
  the request (the access line included) carries its `trace_id` and `span_id` (app.core.log);
- per statement one client span, child of the request's: asyncpg's instrumentation on
  PostgreSQL, which also sees the one-statement capture the service sends to asyncpg directly
  (app.core.db), and SQLAlchemy's on SQLite. Not both on PostgreSQL: every statement SQLAlchemy runs
  there reaches asyncpg too, and would be reported twice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = "purchase-capture"
# Liveness probes and scrapes, every few seconds, would bury the traces worth reading. Not the
# readiness probe: its statement would then be a trace of its own, with no request above it.
EXCLUDED_URLS = "/metrics,/healthz"
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


@functools.cache
def provider_from_environment() -> TracerProvider | None:
    """The process's provider exporting OTLP/HTTP in batches, if `enabled()`; made once, as
    OpenTelemetry's global provider can be set only once."""
    if not enabled():
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service; attributes given here would override it.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    """A server span around every request (outside every middleware of the app)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],  # one span per ASGI message is noise, and costly
    )


class StatementTracing:
    """A span per SQL statement while an app runs: installed when its engine is built, removed
    when it is disposed. The instrumentations patch libraries for the whole process, as there
    is one app per process outside the tests."""

    def __init__(self, engine: AsyncEngine, provider: TracerProvider) -> None:
        self._instrumentor: Any
        if engine.dialect.driver == "asyncpg":
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            self._instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
            self._instrumentor.instrument(tracer_provider=provider)
        else:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            self._instrumentor = SQLAlchemyInstrumentor()
            # It declares SQLAlchemy < 2.1 and otherwise installs nothing; it only listens to
            # the engine's events, which 2.1 keeps as they were (tests/test_tracing.py).
            self._instrumentor.instrument(
                engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
            )

    def close(self) -> None:
        self._instrumentor.uninstrument()


def current_ids() -> tuple[str, str] | None:
    """The current span's trace and span id, as hex (as OTLP backends show them)."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
