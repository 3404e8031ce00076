"""Pure-ASGI middleware: the edge every response passes (headers, access line, HTTP metrics,
last-resort 500), and the request body limit."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import internal_error_response, problem_response
from app.core.log import access_logger
from app.core.metrics import Metrics, route_template

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def is_sane_request_id(value: str) -> bool:
    """A caller's X-Request-ID is kept only if it cannot forge log lines or bloat them."""
    return bool(_SANE_REQUEST_ID.match(value))


class EdgeMiddleware:
    """The one wrapper around every HTTP response, inside the request-id middleware only.

    Per request it refuses a method no route could serve, adds the security headers, writes
    one access line and counts and times the request in the HTTP metrics. An exception nothing
    else handled becomes a problem+json 500 here, which therefore still carries X-Request-ID
    and the security headers. One layer and one `send` wrapper instead of four: each layer cost
    a coroutine and a closure per request, and the metrics one matched the routes again.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = access_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        method = scope["method"]
        known_method = method in KNOWN_METHODS
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = _with_security_headers(message.get("headers", ()))
            await send(message)

        try:
            if known_method:
                await self.app(scope, receive, send_with_headers)
            else:
                await _unknown_method()(scope, receive, send_with_headers)
        except Exception:
            self.log.exception("unhandled error", path=scope["path"])
            status = 500
            if not response_started:
                await internal_error_response()(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            if known_method:
                handler = route_template(scope, root_path)
                self.metrics.observe_request(handler, method, status, seconds)
            self.log.info(
                "request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def _with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A copy of the response's headers plus each hardening header it did not set itself."""
    headers = list(headers)
    present = {name.lower() for name, _ in headers}
    headers.extend(header for header in SECURITY_HEADERS if header[0] not in present)
    return headers


# The methods HTTP defines (RFC 9110, 5789) and QUERY; any other is refused before metrics see
# it, so a client cannot add a label value (a time series) per made-up method.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)


def _unknown_method() -> ASGIApp:
    """405 problem+json for a method no route could ever serve."""
    return problem_response(405, "Method Not Allowed", headers={"Allow": "GET, POST"})


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with a 413 problem while they stream in.

    A declared Content-Length over the limit is refused before the app runs; a body without
    one is counted chunk by chunk, so an oversized upload is never held in memory whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"The request body exceeds the limit of {self.max_bytes} bytes."

    def _too_large(self) -> ASGIApp:
        return problem_response(413, self._detail(), headers={"Connection": "close"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
