"""Traces: one trace from the request down to each SQL statement, on SQLite and PostgreSQL.

Spans are captured in memory by the SDK's own exporter; the app is traced as it is with the
OTEL_* variables set, with that provider in place of the OTLP one. Off, nothing is installed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
import wrapt
from httpx import ASGITransport, AsyncClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.core import tracing
from app.core.settings import Settings
from app.main import create_app
from tests.helpers import purchase


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(settings: Settings, exporter: InMemorySpanExporter) -> AsyncIterator[AsyncClient]:
    """A client of an app traced into `exporter`."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    provider.shutdown()


def server_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    [server] = [span for span in spans if span.kind is SpanKind.SERVER]
    return server


def statements(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is SpanKind.CLIENT]


def statement_text(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def capture(
    traced: AsyncClient, exporter: InMemorySpanExporter
) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """Posts one purchase; the request's server span and the statement spans recorded."""
    response = await traced.post("/api/v1/purchases", json=purchase())
    assert response.status_code == 201
    spans = exporter.get_finished_spans()
    return server_span(spans), statements(spans)


async def test_a_capture_is_one_trace_from_the_request_to_each_statement(
    traced: AsyncClient, exporter: InMemorySpanExporter
) -> None:
    server, sql = await capture(traced, exporter)

    assert server.name == "POST /api/v1/purchases"
    assert (server.attributes or {}).get("http.route") == "/api/v1/purchases"
    assert sql, "no statement spans"
    assert server.context is not None
    for span in sql:
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == server.context.trace_id
        assert span.parent.span_id == server.context.span_id, span.name
    assert any("INSERT INTO customer" in statement_text(span) for span in sql), [
        statement_text(span) for span in sql
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_capture_sent_straight_to_asyncpg_is_one_span_of_the_request(
    traced: AsyncClient, exporter: InMemorySpanExporter
) -> None:
    server, sql = await capture(traced, exporter)

    [one] = [span for span in sql if "INSERT INTO customer" in statement_text(span)]
    assert "INSERT INTO purchase" in statement_text(one)  # both rows in the one statement
    assert (one.attributes or {}).get("db.system") == "postgresql"
    assert one.parent is not None
    assert server.context is not None
    assert one.parent.span_id == server.context.span_id


async def test_every_log_line_of_a_traced_request_names_its_trace_and_span(
    traced: AsyncClient, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await traced.post("/api/v1/purchases", json=purchase())

    server = server_span(exporter.get_finished_spans())
    assert server.context is not None
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    # The test's own client (httpx) logs in the request's context too, after its span.
    request_lines = [n for n in lines if "request_id" in n and n["logger"] != "httpx"]
    assert [line["event"] for line in request_lines if line["event"] == "request"] == ["request"]
    for line in request_lines:
        assert line["request_id"] == response.headers["x-request-id"]
        assert line["trace_id"] == format(server.context.trace_id, "032x")
        assert line["span_id"] == format(server.context.span_id, "016x")


async def test_liveness_probes_and_scrapes_are_not_traced(
    traced: AsyncClient, exporter: InMemorySpanExporter
) -> None:
    for path in ("/healthz", "/metrics"):
        assert (await traced.get(path)).status_code == 200

    assert exporter.get_finished_spans() == ()


async def test_without_otel_variables_nothing_is_instrumented(
    client: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tracing.provider_from_environment() is None
    capsys.readouterr()
    assert (await client.post("/api/v1/purchases", json=purchase())).status_code == 201

    assert not isinstance(asyncpg.Connection.fetchrow, wrapt.ObjectProxy)
    assert all("trace_id" not in line for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),
    ],
)
def test_tracing_is_on_only_when_an_otlp_endpoint_is_configured(
    environ: dict[str, str], on: bool
) -> None:
    assert tracing.enabled(environ) is on
