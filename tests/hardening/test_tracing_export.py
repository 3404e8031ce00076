"""Issue 16: a real `python -m app` with OTEL_EXPORTER_OTLP_ENDPOINT sends its traces over
OTLP/HTTP to a receiver this test runs on loopback, which decodes them with the OTLP protobuf
messages: one trace from the request down to the capture statement, under the configured
service name, and the request's log lines name that trace.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .conftest import Serve
from .test_metrics import purchase

pytestmark = pytest.mark.postgres


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every export request posted to /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    export = ExportTraceServiceRequest()
                    export.ParseFromString(body)
                    receiver.requests.append(export)
                    receiver.content_types.append(self.headers["Content-Type"])
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[str, Span]]:
        """(service name, span) for every span received so far."""
        found = []
        for export in self.requests:
            for resource_spans in export.resource_spans:
                attributes = resource_spans.resource.attributes
                [name] = [a.value.string_value for a in attributes if a.key == "service.name"]
                for scope_spans in resource_spans.scope_spans:
                    found += [(name, span) for span in scope_spans.spans]
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_traces_are_exported_over_otlp_http_to_the_configured_endpoint(
    database: str, serve: Serve, receiver: Receiver
) -> None:
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "capture-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: export soon, not every 5 s
    }
    server = serve(database, env=otel)
    response = httpx.post(
        server.base_url + "/api/v1/purchases", json=purchase("traced@example.com"), timeout=10
    )
    assert response.status_code == 201

    deadline = time.monotonic() + 20
    while not [s for _, s in receiver.spans() if s.kind == Span.SPAN_KIND_SERVER]:
        assert time.monotonic() < deadline, f"no server span arrived:\n{server.log_tail()}"
        time.sleep(0.1)
    time.sleep(0.5)  # the statement spans ended before the server span: same or earlier batch

    assert set(receiver.content_types) == {"application/x-protobuf"}
    spans = receiver.spans()
    assert {service for service, _ in spans} == {"capture-under-test"}
    [request] = [s for _, s in spans if s.name == "POST /api/v1/purchases"]
    assert request.kind == Span.SPAN_KIND_SERVER
    assert not request.parent_span_id
    [capture] = [
        s
        for _, s in spans
        if s.kind == Span.SPAN_KIND_CLIENT and s.trace_id == request.trace_id
        and any("INSERT INTO customer" in a.value.string_value for a in s.attributes)
    ]  # fmt: skip
    assert capture.parent_span_id == request.span_id

    [access] = [
        line
        for line in map(json.loads, _json_lines(server.log_text()))
        if line.get("event") == "request" and line.get("path") == "/api/v1/purchases"
    ]
    assert access["request_id"] == response.headers["x-request-id"]
    assert access["trace_id"] == request.trace_id.hex()
    assert access["span_id"] == request.span_id.hex()


def _json_lines(log: str) -> list[str]:
    """The app's lines (uvicorn's supervisor writes plain ones before the app's logging runs)."""
    return [line for line in log.splitlines() if line.startswith("{")]
