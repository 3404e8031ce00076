"""Fixtures in the order a request meets them: database -> settings -> app -> client.

Every behaviour test runs three times: on a fresh SQLite file, on a fresh PostgreSQL database,
and on that database through a PgBouncer in transaction pooling with APP_DATABASE_POOLER=pgbouncer
(APP_TEST_DATABASE_URL names the server; set APP_REQUIRE_POSTGRES=1 to fail instead of skip).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.engine import Base, pooler_connect_args
from app.core.settings import Settings
from app.imports import models as import_models  # noqa: F401  (the ledger's table)
from app.main import create_app
from tests.pgbouncer import PgBouncer, pgbouncer_binary

ADMIN_TOKEN = "test-admin-token-0123456789"
POSTGRES_ENV = "APP_TEST_DATABASE_URL"
REDIS_ENV = "APP_TEST_REDIS_URL"


def postgres_required() -> bool:
    return os.environ.get("APP_REQUIRE_POSTGRES", "") not in ("", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test's markers go into the JUnit report, where CI counts its groups by them
    (tests/junit_counts.py): `postgres` marks a module's tests and a parameter alike."""
    for item in items:
        markers = sorted({mark.name for mark in item.iter_markers()})
        item.user_properties.append(("markers", " ".join(markers)))


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A database created for this run on the server in APP_TEST_DATABASE_URL, dropped after."""
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        if postgres_required():
            pytest.fail(f"{POSTGRES_ENV} is not set but APP_REQUIRE_POSTGRES=1")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    url = make_url(server_url)
    name = f"purchases_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = await asyncpg.connect(admin_dsn)
    except (OSError, asyncpg.PostgresError) as error:
        if postgres_required():
            pytest.fail(f"cannot reach PostgreSQL at {POSTGRES_ENV}: {error}")
        pytest.skip(f"cannot reach PostgreSQL at {POSTGRES_ENV}: {error}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """The Redis in APP_TEST_REDIS_URL, checked to answer (APP_REQUIRE_REDIS=1: fail, else skip,
    when it does not). Tests share it: each uses keys or client addresses of its own."""
    url = os.environ.get(REDIS_ENV, "")
    required = os.environ.get("APP_REQUIRE_REDIS", "") not in ("", "0")
    reason = f"{REDIS_ENV} is not set"
    if url:
        client = Redis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
            return url
        except (RedisError, OSError) as error:
            reason = f"cannot reach Redis at {REDIS_ENV}: {error}"
        finally:
            await client.aclose()
    if required:
        pytest.fail(f"{reason} (APP_REQUIRE_REDIS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def postgres_schema(postgres_url: str) -> str:
    engine = create_async_engine(postgres_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await engine.dispose()
    return postgres_url


@pytest.fixture(scope="session")
async def pooled_schema(postgres_url: str) -> AsyncIterator[str]:
    """The PgBouncer target's own database, with the schema. PgBouncer keeps idle server
    connections on what it serves: they must not be among the backends that the PostgreSQL-only
    tests count or terminate on theirs."""
    url = make_url(postgres_url)
    name = f"{url.database}_pgb"
    server = make_url(os.environ[POSTGRES_ENV])  # not the run's database: no backend left on it
    admin = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pooled = url.set(database=name).render_as_string(hide_password=False)
        engine = create_async_engine(pooled)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        await engine.dispose()
        yield pooled
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """This run's PgBouncer, in transaction pooling in front of the test PostgreSQL server
    (any database on it: the hardening tests' fresh ones too)."""
    server_url = os.environ.get(POSTGRES_ENV)
    binary = pgbouncer_binary()
    reason = (
        f"{POSTGRES_ENV} is not set"
        if not server_url
        else "pgbouncer is not installed (make test installs Debian's package)"
    )
    if not server_url or binary is None:
        if postgres_required():
            pytest.fail(f"{reason} but APP_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    bouncer = PgBouncer(binary, server_url)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.destroy()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("pgbouncer", marks=[pytest.mark.postgres, pytest.mark.pgbouncer]),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's data lives: a fresh SQLite file, this run's PostgreSQL database, or
    that database through this run's PgBouncer."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    if request.param == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        return bouncer.url_for(request.getfixturevalue("pooled_schema"))
    url: str = request.getfixturevalue("postgres_schema")
    return url


@pytest.fixture
def database_pooler(request: pytest.FixtureRequest) -> str:
    """`pgbouncer` when `database_url` goes through PgBouncer, else `none`.

    Read from the test's parameters rather than from a fixture of its own, so a module that
    overrides `database_url` with one database is not run once per target all the same.
    """
    callspec = getattr(request.node, "callspec", None)
    target = callspec.params.get("database_url") if callspec else None
    return "pgbouncer" if target == "pgbouncer" else "none"


@pytest.fixture
async def empty_database(database_url: str, database_pooler: str) -> str:
    """The schema with no rows in it."""
    connect_args = {} if database_url.startswith("sqlite") else pooler_connect_args(database_pooler)
    engine = create_async_engine(database_url, connect_args=connect_args)
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            await connection.run_sync(Base.metadata.create_all)
        else:
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    return database_url


@pytest.fixture
def direct_database_url(
    empty_database: str, database_pooler: str, request: pytest.FixtureRequest
) -> str:
    """The test's database itself: through PgBouncer, the same database without the pooler, so
    what a test reads back or does behind the API's back does not go through the part under
    test."""
    if database_pooler == "none":
        return empty_database
    url: str = request.getfixturevalue("pooled_schema")
    return url


@pytest.fixture
async def db_engine(direct_database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's database, to read back what the API stored (and to age rows), around it."""
    engine = create_async_engine(direct_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def admin(direct_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """PostgreSQL only: a connection of the test's own to the service's database, around it."""
    dsn = make_url(direct_database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    yield connection
    await connection.close()


@pytest.fixture
def settings(empty_database: str, database_pooler: str) -> Settings:
    return Settings(
        environment="test",
        database_url=empty_database,
        database_pooler=database_pooler,
        admin_token=ADMIN_TOKEN,
        log_format="json",
        log_level="INFO",
        # Tests move purchases in time behind the API's back (the API stamps them): a fold in
        # between would keep them where they were. Tests of the stats fold it themselves.
        stats_fold_interval_s=0,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
