"""Fixtures for the hardening tests: real uvicorn processes on real PostgreSQL databases.

Each test gets a fresh database on the server named by APP_TEST_DATABASE_URL, migrated with
Alembic; `serve` starts app processes on it, and `pg_cluster` gives a test a PostgreSQL server
of its own to stop and start. Without PostgreSQL these tests skip, unless APP_REQUIRE_POSTGRES=1
(CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import POSTGRES_ENV, postgres_required
from tests.servers import UvicornServer, app_env

from .postgres import PgCluster, asyncpg_dsn, create_database, drop_database, postgres_bindir


def _unavailable(reason: str) -> None:
    if postgres_required():
        pytest.fail(f"{reason} (APP_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def postgres_server() -> str:
    """The server URL from APP_TEST_DATABASE_URL, checked to answer."""
    server_url = os.environ.get(POSTGRES_ENV, "")
    if not server_url:
        _unavailable(f"{POSTGRES_ENV} is not set")
    try:
        connection = await asyncpg.connect(asyncpg_dsn(server_url), timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        _unavailable(f"cannot reach PostgreSQL at {POSTGRES_ENV}: {error}")
    await connection.close()
    return server_url


@pytest.fixture
async def database(postgres_server: str) -> AsyncIterator[str]:
    """A fresh database migrated to head; its SQLAlchemy URL. Dropped after the test."""
    url = await create_database(postgres_server)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, to look at the rows behind the API."""
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        yield connection
    finally:
        await connection.close()


Serve = Callable[..., UvicornServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts app processes: `serve(database_url, workers=2, extra_args=[...], env={...},
    **APP_settings)` (`env`: other variables, not settings).

    Each waits until /readyz answers 200 (or `ready_path`); all are stopped after the test, and
    a failed test shows the tail of their logs.
    """
    servers: list[UvicornServer] = []

    def start(
        database_url: str,
        *,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        ready_path: str = "/readyz",
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> UvicornServer:
        environment = app_env(database_url, **{key: str(value) for key, value in settings.items()})
        server = UvicornServer(
            {**environment, **(env or {})},
            tmp_path,
            name=name or f"app{len(servers)}",
            workers=workers,
            extra_args=extra_args,
        )
        servers.append(server)
        server.start(ready_path=ready_path)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
async def module_database(postgres_server: str) -> AsyncIterator[str]:
    """A fresh migrated database shared by one module's tests."""
    url = await create_database(postgres_server)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="module")
def module_server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UvicornServer]:
    """One app process with the default settings, shared by one module's tests."""
    server = UvicornServer(app_env(module_database), tmp_path_factory.mktemp("server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A running PostgreSQL server of the test's own, removed with its data afterwards."""
    bindir = postgres_bindir()
    if bindir is None:
        _unavailable("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
