"""Application factory: `create_app(settings)` builds everything; nothing is built at import
except `app`, the instance uvicorn serves (`app.main:app`)."""

from __future__ import annotations

import asyncio
import functools
import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.audit import service as audit_service
from app.audit.api import router as audit_router
from app.core import tracing
from app.core.db import Database
from app.core.engine import create_engine
from app.core.errors import install_error_handlers
from app.core.log import configure_logging
from app.core.metrics import Metrics
from app.core.middleware import BodyLimitMiddleware, EdgeMiddleware, is_sane_request_id
from app.core.ratelimit import (
    Buckets,
    CaptureLimiter,
    MemoryBuckets,
    RateLimitMiddleware,
    RedisBuckets,
)
from app.core.settings import InvalidSettings, Settings, describe_invalid, get_settings
from app.keys.api import keys
from app.keys.service import Authenticator
from app.sales.api import capture, corrections, ops, reads
from app.sales.idempotency import purge_periodically
from app.stats.api import router as stats_router
from app.stats.rollup import fold_periodically

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger(__name__)

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The app; traced with `tracer_provider` if given, else as the OTEL_* variables say."""
    settings = settings or get_settings()
    provider = tracer_provider or tracing.provider_from_environment()
    configure_logging(settings, trace_ids=provider is not None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        statements = None if provider is None else tracing.StatementTracing(engine, provider)
        app.state.database = Database(engine, metrics)
        metrics.watch_pool(engine)
        if settings.admin_token is None:
            log.info("APP_ADMIN_TOKEN is not set: only API keys are accepted")
        log.info(
            "started",
            environment=settings.environment.value,
            database=engine.url.render_as_string(hide_password=True),
        )
        settle_garbage_collector()
        purger = asyncio.create_task(
            purge_periodically(
                app.state.database,
                ttl=settings.idempotency_key_ttl,
                every=settings.idempotency_purge_interval_s,
            )
        )
        background = [purger]
        if settings.stats_fold_interval_s:
            every = settings.stats_fold_interval_s
            background.append(asyncio.create_task(fold_periodically(engine, every=every)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if limiter is not None:
                await limiter.buckets.close()
            await engine.dispose()
            metrics.close()
            if statements is not None:
                statements.close()
            if provider is not None:
                provider.force_flush()  # a stopping worker's last spans are not lost

    # FastAPIOffline serves Swagger UI's assets itself: /docs works with no CDN reachable.
    app = FastAPIOffline(
        title="Purchase capture service",
        version="1.0.0",
        summary="Records purchases and creates or updates the buying customer.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.state.authenticator = Authenticator(
        bootstrap_token=settings.admin_token.get_secret_value() if settings.admin_token else None,
        cache_seconds=settings.key_cache_seconds,
    )
    install_error_handlers(app)
    app.include_router(capture)
    app.include_router(reads)
    app.include_router(corrections)
    app.include_router(stats_router)
    app.include_router(audit_router)
    app.include_router(keys)
    app.state.capture_limiter = limiter = _capture_limiter(settings)
    app.include_router(ops)
    # Corrections and erasures are written to the audit trail in their own transaction.
    app.state.record_change = audit_service.record
    _serve_page(app, settings)
    metrics.expose(app)

    # Added last runs first: the request id exists before anything logs, and the edge layer
    # (security headers, access line, HTTP metrics) wraps everything else, CORS answers and the
    # last-resort 500 it writes itself included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=[
                "X-Request-ID",
                "Idempotent-Replayed",
                "Retry-After",
                "ETag",
                "RateLimit",
                "RateLimit-Policy",
            ],
        )
    if settings.trusted_proxies:
        # uvicorn's own implementation: the client address becomes the rightmost address in
        # X-Forwarded-For that is not a trusted proxy (python -m app turns uvicorn's server-level
        # copy off, so APP_TRUSTED_PROXIES is the one switch).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name="X-Request-ID",
        validator=is_sane_request_id,
        update_request_header=True,
        # The same 32 hex digits as the default uuid4().hex, for a third of its CPU.
        generator=lambda: secrets.token_hex(16),
    )
    if provider is not None:
        tracing.trace_requests(app, provider)
    return app


def _capture_limiter(settings: Settings) -> CaptureLimiter | None:
    rate = settings.capture_rate
    if rate is None:
        return None
    buckets: Buckets = (
        MemoryBuckets(rate)
        if settings.rate_limit_store == "memory"
        else RedisBuckets(rate, settings.rate_limit_store)
    )
    return CaptureLimiter(rate, buckets)


# Young objects are collected after this many allocations (CPython's default: 700). A request
# allocates a few thousand, nearly all freed by reference counting; collecting every 700 cost
# several percent of a capture's CPU for almost nothing found.
GC_YOUNG_THRESHOLD = 10_000


@functools.cache
def settle_garbage_collector() -> None:
    """Take what startup built out of the collector's view, and collect the young less often.

    Modules, routes, schemas and SQLAlchemy's caches live as long as the process, yet every full
    collection walked them all: a pause in some request and CPU in all of them. `gc.freeze()`
    moves them to a generation that is never collected. Once per process (cached): a process
    that builds many apps, as the tests do, must not freeze the garbage of the earlier ones.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _serve_page(app: FastAPI, settings: Settings) -> None:
    """The purchase page at `/`, its assets under `/static/`."""
    static_dir = settings.static_dir
    app.mount("/static", StaticFiles(directory=static_dir, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            static_dir / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/admin", include_in_schema=False)
    async def admin() -> FileResponse:
        """The owner's dashboard; it reads the API with the token the owner types in."""
        return FileResponse(
            static_dir / "admin" / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )


class _LazyApp:
    """`app.main:app` for uvicorn: built on first use, so importing this module builds nothing.

    A configuration error (prod without a token, say) is reported as a failed lifespan startup,
    which makes uvicorn exit instead of serving 500s.
    """

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            try:
                self._app = create_app()
            except InvalidSettings as error:
                if scope["type"] != "lifespan":
                    raise
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.failed", "message": describe_invalid(error)})
                return
        await self._app(scope, receive, send)


app = _LazyApp()
