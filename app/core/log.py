"""One structlog pipeline for the app's own events and for stdlib loggers (uvicorn, SQLAlchemy).

The app's own events take structlog's native path: a filtering bound logger runs the processors
and writes the rendered line itself. Going through the standard library instead (a LogRecord, a
handler, ProcessorFormatter) cost several percent of a request's CPU for the access line alone.
Records of stdlib loggers still go through ProcessorFormatter with the same processors and
renderer, and both paths write whole lines to stdout under one lock, so lines never interleave.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from asgi_correlation_id import correlation_id
from structlog.typing import FilteringBoundLogger

from app.core import tracing
from app.core.settings import Settings

SECRET_KEYS = ("token", "authorization", "password", "secret")


def mask_email(email: str) -> str:
    """`tim@example.com` -> `t***@example.com`: enough to tell customers apart in a log."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = correlation_id.get()
    if request_id and "request_id" not in event:
        event["request_id"] = request_id
    return event


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ids = tracing.current_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


@functools.lru_cache(maxsize=4096)
def _sensitivity(key: str) -> str | None:
    """What a field holds ("secret", "email" or None), judged by its name. Names come from code,
    so they are few: cached, redaction costs a lookup per field on every line."""
    lowered = key.lower()
    if any(word in lowered for word in SECRET_KEYS):
        return "secret"
    return "email" if "email" in lowered else None


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        kind = _sensitivity(key)
        if kind == "secret":
            event[key] = "***"
        elif kind == "email" and isinstance(value, str):
            event[key] = mask_email(value)
    return event


def _json_dumps(event: Any, **kwargs: Any) -> str:
    """orjson is about ten times faster than json.dumps; json.dumps still takes what it refuses
    (integers over 64 bits), so a log call never fails on a value."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS, **kwargs).decode()
    except TypeError:
        return json.dumps(event, **kwargs)


# Reentrant, as logging's own locks are: a signal handler that logs mid-write must not deadlock.
_write_lock = threading.RLock()


def _write_line(line: str) -> None:
    """Writes the line whole and flushed, so lines from both paths (and from worker processes
    sharing the stream) never interleave.

    sys.stdout is looked up per line, as print() does: output redirected later (pytest's
    capture, say) still receives the lines.
    """
    stream = sys.stdout
    if stream is None:  # interpreter shutdown
        return
    with _write_lock:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            # A closed or broken stdout must not turn the request being logged into a 500;
            # the stdlib handler swallowed these too.
            pass


class _LineLogger:
    """The logger structlog's native path writes through: `name` feeds the `logger` field."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        _write_line(line)

    debug = info = warning = warn = error = critical = fatal = exception = msg


def _line_logger(*args: Any) -> _LineLogger:
    """`structlog.get_logger(__name__)` passes the module name here, as it did to stdlib."""
    return _LineLogger(str(args[0]) if args else "app")


class _LineHandler(logging.Handler):
    """The stdlib records' way out: formatted by ProcessorFormatter, written like the rest."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(settings: Settings, *, trace_ids: bool = False) -> None:
    """Console lines for people in development, JSON lines for machines in production; with
    `trace_ids` (tracing on), each line written inside a span names it. Off, not even the
    lookup of the current span is paid."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        *([_add_trace_ids] if trace_ids else []),
        _redact,
    ]
    renderer: Any
    if settings.log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(settings.log_level),
        logger_factory=_line_logger,
        context_class=dict,
        # Not cached: a module-level logger then follows the latest configuration (tests build
        # apps with different settings). The per-request logger is bound once per app instead
        # (see `access_logger`), which is where caching would pay.
        cache_logger_on_first_use=False,
    )
    handler = _LineHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # The access middleware writes one line per request; uvicorn's own would be a second. With
    # no handler in reach (hasHandlers() False), uvicorn does not even format its arguments.
    access = logging.getLogger("uvicorn.access")
    access.disabled = True
    access.propagate = False


def access_logger() -> FilteringBoundLogger:
    """A logger assembled now from the current configuration, for the line every request writes:
    calling a lazy `get_logger` proxy would assemble one per call."""
    logger: FilteringBoundLogger = structlog.get_logger("app.access").bind()
    return logger
