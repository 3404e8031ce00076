"""Every error path ends here, as one RFC 9457 `application/problem+json` body."""

from __future__ import annotations

import sqlite3
from http import HTTPStatus
from typing import Any

import structlog
from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.core.messages import friendly_message


class FieldError(BaseModel):
    field: str
    loc: list[str | int]
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


PROBLEM_JSON = "application/problem+json"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
RETRY_AFTER_SECONDS = "5"

log = structlog.get_logger(__name__)


class AppError(Exception):
    """A failure the client can act on; subclasses fix the status, title and problem type."""

    status: int = 400
    title: str = "Bad request"
    type: str = "about:blank"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class NotFound(AppError):
    status = 404
    title = "Not found"


class Unauthorized(AppError):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class UnsupportedMediaType(AppError):
    status = 415
    title = "Unsupported media type"


class IdempotencyKeyReused(AppError):
    status = 422
    title = "Idempotency key reused"


class InvalidCursor(AppError):
    status = 422
    title = "Invalid cursor"


class Conflict(AppError):
    status = 409
    title = "Conflict"


class Gone(AppError):
    status = 410
    title = "Gone"


class PreconditionFailed(AppError):
    status = 412
    title = "Precondition failed"


class InvalidRange(AppError):
    status = 422
    title = "Invalid range"


class DatabaseUnavailable(AppError):
    status = 503
    title = "Database unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The database cannot be reached right now; nothing was stored. Retry later.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


# A tag URI (RFC 9457 section 3.1.1): a stable name for clients to compare, not a page to fetch.
OUTCOME_UNKNOWN_TYPE = "tag:purchase-capture,2026:problems/outcome-unknown"


class OutcomeUnknown(AppError):
    """The connection was lost, or timed out, after a write may have committed: unlike
    `DatabaseUnavailable` nothing can be promised, so a client must not retry without the same
    Idempotency-Key."""

    status = 503
    title = "Outcome unknown"
    type = OUTCOME_UNKNOWN_TYPE

    def __init__(self) -> None:
        super().__init__(
            "The database did not confirm the write (its connection was lost or timed out "
            "while committing): it may or may not have been stored. Retry with the same "
            "Idempotency-Key, which stores it at most once; a retry without one may store it "
            "twice.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


def problem_response(
    status: int,
    detail: str,
    *,
    problem_type: str = "about:blank",
    title: str | None = None,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    problem = Problem(
        type=problem_type,
        title=title or phrase,
        status=status,
        detail=detail,
        instance=instance,
        request_id=correlation_id.get(),
        errors=errors,
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry of a route that may answer these problem statuses."""
    return {status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in statuses}


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
        inside = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
        message = friendly_message(error)
        errors.append(
            FieldError(
                field=".".join(str(part) for part in inside) or str(loc[0] if loc else "body"),
                loc=loc,
                message=message,
                type=str(error.get("type", "value_error")),
            )
        )
    return errors


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if not _declares_json(request) and any(
        error.get("loc", ("",))[0] == "body" for error in exc.errors()
    ):
        # FastAPI reads only JSON bodies, so any other is refused here, on the error path,
        # rather than by a dependency every request would pay for.
        return await _on_app_error(
            request,
            UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'."),
        )
    if any(error.get("type") == "json_invalid" for error in exc.errors()):
        return problem_response(
            400,
            "The request body is not valid JSON.",
            title="Malformed JSON",
            instance=request.url.path,
        )
    errors = _field_errors(exc)
    summary = "; ".join(f"{error.field}: {error.message}" for error in errors[:5])
    return problem_response(
        422, summary, title="Validation failed", instance=request.url.path, errors=errors
    )


def _declares_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _on_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(
        exc.status,
        exc.detail,
        problem_type=exc.type,
        title=exc.title,
        instance=request.url.path,
        headers=exc.headers,
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if _is_transient(exc):
        log.warning("database unavailable", error=type(exc.orig).__name__)
        return await _on_app_error(request, DatabaseUnavailable())
    log.exception("database error")
    return internal_error_response()


# SQLite's primary result codes of a lock held by another connection; every other error (a
# read-only file, a missing table, an integer overflow) stays as it is however often one retries.
SQLITE_TRANSIENT_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _is_transient(exc: DBAPIError) -> bool:
    """Whether the same request may succeed if retried later, so a 503 is the honest answer."""
    if isinstance(exc.orig, sqlite3.Error):
        # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry the primary one in their low byte.
        code = getattr(exc.orig, "sqlite_errorcode", -1) & 0xFF
        return code in SQLITE_TRANSIENT_CODES
    return (
        isinstance(exc, OperationalError)
        or exc.connection_invalidated
        or _is_unreachable(exc)
        or _sqlstate(exc) in TRANSIENT_SQLSTATES
    )


async def _on_connection_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unreachable", error=type(exc).__name__)
    return await _on_app_error(request, DatabaseUnavailable())


# The statement was rolled back whole and a retry is safe: deadlock and serialisation failures,
# and a wait cut short by statement_timeout (57014) or lock_timeout (55P03) (app.core.db).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "57014", "55P03"})
# SQLSTATEs of a server that is not there right now (rather than of a wrong statement):
# class 08 connection exceptions, 53300 too many connections, and 57P01-57P05: shutting down,
# crashed, starting up ("the database system is not yet accepting connections"), dropped.
UNAVAILABLE_SQLSTATES = ("08", "53300", "57P0")


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def _is_unreachable(exc: DBAPIError) -> bool:
    return (
        isinstance(exc.orig, OSError | ConnectionError)
        or "connection" in type(exc.orig).__name__.lower()
        or (_sqlstate(exc) or "").startswith(UNAVAILABLE_SQLSTATES)
    )


def internal_error_response() -> JSONResponse:
    """What a client sees of a bug: an apology and the id to quote, never the traceback."""
    return problem_response(
        500,
        "An unexpected error occurred; it has been logged. Quote the request id when reporting it.",
    )


def install_error_handlers(app: FastAPI) -> None:
    handlers: dict[Any, Any] = {
        RequestValidationError: _on_validation_error,
        HTTPException: _on_http_exception,
        AppError: _on_app_error,
        DBAPIError: _on_database_error,
        ConnectionError: _on_connection_error,
        TimeoutError: _on_connection_error,
        PoolTimeout: _on_connection_error,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
